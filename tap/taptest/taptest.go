// Package taptest provides a channel-backed tap.Device for tests that need
// no root and no kernel TAP.
//
// A test plays the kernel's part: frames it puts on In (or passes to
// Inject) are what the code under test Reads, and every frame the code
// Writes arrives on Out as a copy. Like a real TAP, Write never blocks on a
// slow reader: a frame that finds Out full is dropped and counted.
package taptest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/tap"
)

const (
	// BatchSize is the largest batch Read returns, as for a real TAP.
	BatchSize = tap.DefaultBatchSize

	// QueueLen is the capacity of In and Out: four batches, about what a
	// TAP's transmit queue holds before the kernel drops.
	QueueLen = 4 * BatchSize
)

// Device is a fake tap.Device. Its methods are safe for concurrent use,
// with Read called from one goroutine at a time as tap.Device asks.
type Device struct {
	// In holds the frames Read returns, oldest first; a test sends on it
	// directly or with Inject. Read copies each frame, so the test may
	// reuse it once Read has taken it. Do not close In: Close the Device.
	In chan []byte

	// Out receives a copy of every frame written, in order. It is never
	// closed. A frame that finds Out full is dropped (see Dropped).
	Out chan []byte

	name     string
	mtu      int
	offloads tap.Offloads

	dropped   atomic.Uint64
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

var _ tap.Device = (*Device)(nil)

// New returns an open Device with the given name and MTU, and In and Out
// of capacity QueueLen.
func New(name string, mtu int) *Device {
	return &Device{
		In:     make(chan []byte, QueueLen),
		Out:    make(chan []byte, QueueLen),
		name:   name,
		mtu:    mtu,
		closed: make(chan struct{}),
	}
}

// NewWithOffloads returns a Device like New whose Offloads reports o, so
// that code under test takes its virtio-net header path. The Device still
// passes bytes through unchanged: with o.VnetHdr the test puts a header in
// front of every frame it injects, and finds one in front of every frame
// written, just as the kernel would; nothing checks or interprets them.
func NewWithOffloads(name string, mtu int, o tap.Offloads) *Device {
	d := New(name, mtu)
	d.offloads = o
	return d
}

// Inject queues frame for Read, as if the kernel had sent it into the
// port (with Offloads().VnetHdr, a virtio-net header first). It copies frame, and blocks while In is full; it returns false,
// queueing nothing, if the Device is or gets closed.
func (d *Device) Inject(frame []byte) bool {
	f := append([]byte(nil), frame...)
	select {
	case <-d.closed:
		return false
	default:
	}
	select {
	case d.In <- f:
		return true
	case <-d.closed:
		return false
	}
}

// Read implements tap.Device. It blocks until a frame is on In, then takes
// every frame already queued, up to BatchSize and len(bufs). Frame i is
// copied to bufs[i][offset:] and truncated to fit, as the kernel does.
// After Close it returns tap.ErrClosed, even with frames still queued.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(sizes), BatchSize)
	if n == 0 {
		return 0, nil
	}
	select {
	case <-d.closed:
		return 0, tap.ErrClosed
	default:
	}
	var f []byte
	select {
	case f = <-d.In:
	case <-d.closed:
		return 0, tap.ErrClosed
	}
	sizes[0] = copy(bufs[0][offset:], f)
	got := 1
	for got < n {
		select {
		case f = <-d.In:
			sizes[got] = copy(bufs[got][offset:], f)
			got++
		default:
			return got, nil
		}
	}
	return got, nil
}

// Write implements tap.Device. It sends a copy of each bufs[i][offset:] to
// Out without blocking; a frame that finds Out full is dropped and counted
// in Dropped, as a real TAP drops what its reader does not take in time.
// Dropped frames still count as written. After Close it returns
// tap.ErrClosed.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-d.closed:
		return 0, tap.ErrClosed
	default:
	}
	for _, b := range bufs {
		f := append([]byte(nil), b[offset:]...)
		select {
		case d.Out <- f:
		default:
			d.dropped.Add(1)
		}
	}
	return len(bufs), nil
}

// Dropped returns how many written frames found Out full.
func (d *Device) Dropped() uint64 { return d.dropped.Load() }

// Recv waits up to timeout for the next frame written and reports whether
// one came.
func (d *Device) Recv(timeout time.Duration) ([]byte, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-d.Out:
		return f, true
	case <-t.C:
		return nil, false
	}
}

// Expect returns the next frame written, failing tb if none comes within
// timeout.
func (d *Device) Expect(tb testing.TB, timeout time.Duration) []byte {
	tb.Helper()
	f, ok := d.Recv(timeout)
	if !ok {
		tb.Fatalf("taptest %s: no frame written within %v", d.name, timeout)
	}
	return f
}

// BatchSize implements tap.Device.
func (d *Device) BatchSize() int { return BatchSize }

// Name implements tap.Device.
func (d *Device) Name() string { return d.name }

// Offloads implements tap.Device: the zero Offloads for a Device from New,
// what NewWithOffloads was given otherwise.
func (d *Device) Offloads() tap.Offloads { return d.offloads }

// MTU implements tap.Device.
func (d *Device) MTU() int { return d.mtu }

// Close implements tap.Device. A pending Read returns tap.ErrClosed. Later
// calls do nothing. In and Out stay open, so a test can still drain Out.
func (d *Device) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

// Closed reports whether Close has been called.
func (d *Device) Closed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}
