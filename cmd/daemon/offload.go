package daemon

import "runtime"

// maxQueues bounds the queues of a multi-queue TAP: each queue is a file
// descriptor and a reader goroutine with its own buffers (~64 KB with
// TSO), for every endpoint.
const maxQueues = 4

// tapQueues is how many queues each TAP gets: with offloads on, one per
// core (fast-path.md section 6: the kernel spreads a port's flows over the
// queues, and each queue has its own reader), at most maxQueues; with
// offloads off, one.
func (d *Daemon) tapQueues() int {
	if !d.cfg.Offload {
		return 1
	}
	return min(runtime.NumCPU(), maxQueues)
}
