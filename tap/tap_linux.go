//go:build linux

package tap

// This file holds the Linux TAP device: Read and Write move batches of
// frames on its fd, SetPersist and Close manage its life. open_linux.go
// makes one (Create, Adopt).
//
// Design notes: the fd is opened non-blocking and wrapped in an os.File, so
// goroutines park in the runtime netpoller (RawConn.Read/Write) rather than
// in a blocking syscall, and Close wakes a parked Read. A TAP has no
// recvmmsg: Read calls read(2) once per frame until EAGAIN or the batch is
// full, which saves poller wake-ups and lets the caller send the batch with
// one sendmmsg. The RawConn callbacks are method values made once, and their
// state lives in the device, so neither Read nor Write allocates. Writers
// share one write state under a mutex: os.File serialises RawConn writers
// anyway (its fd write lock), so this costs no parallelism. read(2) and
// write(2) are raw syscalls (rawIO): on a non-blocking fd they never wait,
// and a write that runs the receiving stack in it must not get its P
// taken by sysmon (see vtep's mmsgs.call).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linuxTAP is a Device on a Linux TAP (or, in tests, any fd that keeps
// message boundaries).
type linuxTAP struct {
	// Set by newFromFD (mtu by Create), then read-only.
	f        *os.File
	rc       syscall.RawConn
	name     string
	mtu      int
	batch    int
	offloads Offloads
	// lazy, once EnableTSO has run, holds the offloads it got.
	lazy atomic.Pointer[Offloads]
	// queues are all the queues of a multi-queue TAP, the first (which
	// Create or Adopt returned, and whose Close closes them all) first;
	// nil for a single queue.
	queues []*linuxTAP

	// Read side: used only by the one goroutine in Read at a time.
	rd reader

	// Write side: wmu guards wr for the whole of one Write.
	wmu sync.Mutex
	wr  writer

	closed atomic.Bool // set first thing in Close
}

var (
	_ Device     = (*linuxTAP)(nil)
	_ Persister  = (*linuxTAP)(nil)
	_ MultiQueue = (*linuxTAP)(nil)
)

// reader is the state of one Read, shared with its RawConn callback.
type reader struct {
	bufs    [][]byte
	sizes   []int
	off     int
	n       int                   // frames read so far
	err     error                 // the read(2) error that ended the batch
	pending error                 // an error met after some frames, for the next Read
	fn      func(fd uintptr) bool // read as a method value, made once
}

// read fills bufs until read(2) says EAGAIN or the batch is full. It
// returns false, so the poller waits, only if nothing was read yet.
func (r *reader) read(fd uintptr) bool {
	for r.n < len(r.bufs) {
		n, err := rawIO(unix.SYS_READ, fd, r.bufs[r.n][r.off:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return r.n > 0
		case err != nil:
			r.err = os.NewSyscallError("read", err)
			return true
		case n == 0:
			// A TAP never returns 0 for a non-empty buffer; a socket
			// does when its peer has gone.
			r.err = io.EOF
			return true
		}
		r.sizes[r.n] = n
		r.n++
	}
	return true
}

// rawIO runs read(2) or write(2) (trap) of p on fd as a raw syscall,
// without the runtime's syscall bookkeeping, which only pays for calls
// that may block: fd is non-blocking. A write of a 64 KB frame runs the
// container's TCP receive before it returns, long enough (tens of
// microseconds) for sysmon to hand the P to another thread it would wake
// for nothing. The error is a syscall.Errno (no allocation: errno values
// are small).
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// writer is the state of one Write, shared with its RawConn callback.
type writer struct {
	bufs  [][]byte
	off   int
	next  int                   // the frame to write next
	n     int                   // frames written
	err   error                 // the first frame the kernel rejected
	errAt int                   // its index
	fn    func(fd uintptr) bool // write as a method value, made once
}

// write writes the frames from next on, one write(2) each, skipping a frame
// the kernel rejects. It returns false, so the poller waits, on EAGAIN.
func (w *writer) write(fd uintptr) bool {
	for w.next < len(w.bufs) {
		_, err := rawIO(unix.SYS_WRITE, fd, w.bufs[w.next][w.off:])
		switch {
		case err == nil:
			w.n++
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case w.err == nil:
			w.err, w.errAt = err, w.next
		}
		w.next++
	}
	return true
}

// newFromFD makes a device of fd, which must keep message boundaries (a
// TAP, or a SOCK_SEQPACKET socket in tests). It takes fd over, also on
// error, and makes it non-blocking.
func newFromFD(fd int, name string, mtu int) (*linuxTAP, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	// The fd is non-blocking, so NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "tap:"+name)
	if f == nil {
		return nil, fmt.Errorf("invalid fd %d", fd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	t := &linuxTAP{f: f, rc: rc, name: name, mtu: mtu, batch: DefaultBatchSize}
	t.rd.fn = t.rd.read
	t.wr.fn = t.wr.write
	return t, nil
}

// Read implements Device. It blocks until a frame arrives, then reads every
// frame already queued, up to BatchSize and len(bufs). An error met after
// some frames were read is returned by the next call, so the frames are not
// lost. After Close it returns ErrClosed.
func (t *linuxTAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.closed.Load() {
		return 0, ErrClosed
	}
	r := &t.rd
	if err := r.pending; err != nil {
		r.pending = nil
		return 0, err
	}
	n := min(len(bufs), len(sizes), t.batch)
	if n == 0 {
		return 0, nil
	}
	r.bufs, r.sizes, r.off, r.n, r.err = bufs[:n], sizes, offset, 0, nil
	err := t.rc.Read(r.fn)
	got, rerr := r.n, r.err
	r.bufs, r.sizes, r.err = nil, nil, nil // do not keep the caller's buffers
	switch {
	case err != nil: // the callback returned false: nothing was read
		if t.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("tap: read %s: %w", t.name, err)
	case rerr != nil:
		rerr = fmt.Errorf("tap: read %s: %w", t.name, rerr)
		if got > 0 {
			r.pending = rerr
			return got, nil
		}
		return 0, rerr
	}
	return got, nil
}

// Write implements Device. Each frame is one write(2), so it arrives
// whole. A frame the kernel rejects (shorter than an Ethernet header:
// EINVAL; the link is down: EIO) is skipped and the rest still go: n counts
// the frames written, and err, if not nil, describes the first frame
// rejected. After Close, Write stops and returns ErrClosed. Safe for
// concurrent use; concurrent Writes are serialised.
func (t *linuxTAP) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if t.closed.Load() {
		return 0, ErrClosed
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	w := &t.wr
	w.bufs, w.off, w.next, w.n, w.err = bufs, offset, 0, 0, nil
	err := t.rc.Write(w.fn)
	n, werr, at := w.n, w.err, w.errAt
	w.bufs, w.err = nil, nil
	switch {
	case err != nil:
		return n, ErrClosed // the fd is closing; nothing else fails RawWrite
	case werr != nil:
		return n, fmt.Errorf("tap: write %s: frame %d of %d: %w", t.name, at, len(bufs), os.NewSyscallError("write", werr))
	}
	return n, nil
}

// BatchSize implements Device.
func (t *linuxTAP) BatchSize() int { return t.batch }

// Name implements Device.
func (t *linuxTAP) Name() string { return t.name }

// MTU implements Device.
func (t *linuxTAP) MTU() int { return t.mtu }

// Offloads implements Device.
func (t *linuxTAP) Offloads() Offloads {
	if o := t.lazy.Load(); o != nil {
		return *o
	}
	return t.offloads
}

// EnableTSO implements TSOEnabler. Without virtio-net headers it changes
// nothing; on a multi-queue TAP it refuses (every queue's reader would need
// super-frame buffers first).
func (t *linuxTAP) EnableTSO() (Offloads, error) {
	cur := t.Offloads()
	if !cur.VnetHdr || cur.TSO4 || cur.TSO6 {
		return cur, nil
	}
	if len(t.queues) > 1 {
		return cur, fmt.Errorf("tap: %s: EnableTSO on a multi-queue TAP", t.name)
	}
	o, err := t.setOffloads(true, true)
	if err != nil {
		return cur, err
	}
	t.lazy.Store(&o)
	return o, nil
}

// SetPersist implements Persister with ioctl TUNSETPERSIST on the fd.
func (t *linuxTAP) SetPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	return t.ioctl("TUNSETPERSIST", unix.TUNSETPERSIST, v)
}

// ioctl calls ioctl(2) on the fd with an integer argument (name is req's
// name, for the error). After Close it returns ErrClosed.
func (t *linuxTAP) ioctl(name string, req uint, arg int) error {
	if t.closed.Load() {
		return ErrClosed
	}
	var ierr error
	if err := t.rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetInt(int(fd), req, arg)
	}); err != nil {
		return ErrClosed // the fd is closing; nothing else fails Control
	}
	if ierr != nil {
		return kernelErr(t.name, fmt.Sprintf("ioctl %s %#x", name, arg), os.NewSyscallError("ioctl", ierr))
	}
	return nil
}

// Queues implements MultiQueue.
func (t *linuxTAP) Queues() []Device {
	if t.queues == nil {
		return []Device{t}
	}
	qs := make([]Device, len(t.queues))
	for i, q := range t.queues {
		qs[i] = q
	}
	return qs
}

// Close implements Device. It closes the fd, and on the first queue of a
// multi-queue TAP every other queue's too. The TAP leaves the kernel with
// its last fd, unless it is persistent. A pending Read or Write returns
// ErrClosed first. Later calls do nothing and return nil.
func (t *linuxTAP) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	var errs []error
	if len(t.queues) > 0 && t.queues[0] == t {
		for _, q := range t.queues[1:] {
			errs = append(errs, q.Close())
		}
	}
	if err := t.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tap: close %s: %w", t.name, err))
	}
	return errors.Join(errs...)
}
