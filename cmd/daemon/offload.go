package daemon

import "runtime"

// maxQueues bounds the queues of a multi-queue TAP: each queue is a file
// descriptor and a reader goroutine with its own buffers (~64 KB with
// TSO), for every endpoint.
const maxQueues = 4

// tapQueues is how many queues the host TAP gets: with offloads on, one
// per core (fast-path.md section 6: the kernel spreads a port's flows over
// the queues, and each queue has its own reader), at most maxQueues; with
// offloads off, one.
//
// Endpoint TAPs (endpointTAP) have one queue and lazy TSO instead: a TSO
// super-frame needs a 64 KB read buffer per queue, which at 1000 mostly idle
// containers is the difference between ~180 and ~370 KB per endpoint
// (measured with make scale). They start with checksum offload only and
// small buffers, and turn TSO on when a read fills a batch of 8 frames, so
// a busy container gets 64 KB at a time and an idle one costs what it did
// before offloads.
func (d *Daemon) tapQueues() int {
	if !d.cfg.Offload {
		return 1
	}
	return min(runtime.NumCPU(), maxQueues)
}
