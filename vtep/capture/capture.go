// Package capture copies frames off the data path for `ovlsw capture`: a
// Session is a bounded ring of preallocated slots that the switch's
// goroutines fill and one reader drains. A producer never waits and takes
// no lock: when the ring is full the frame is not captured and the lost
// count says so. A slow reader therefore loses
// captured frames, never forwarding time.
//
// A frame is captured in two steps so that a verdict reached after the
// copy (the drop reason) can be attached: Reserve copies the frame into a
// slot the reader does not see yet, Commit publishes it with its verdict.
// The reader takes slots in order and waits for a reserved one to be
// committed; every Reserve must be followed by a Commit, soon.
package capture

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Dir is a frame's direction at its capture point.
type Dir uint8

// Directions, as pcapng's epb_flags counts them.
const (
	In  Dir = 1 // into the switch: read from a port, received from a peer
	Out Dir = 2 // out of the switch: written to a port, sent to a peer
)

func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "?"
}

// Filter says which frames a session captures: those at port Port (an ID
// of the switch), of VNI VNI, or exchanged with the VTEP at Peer. Exactly
// one is set.
type Filter struct {
	Port int
	VNI  uint32
	Peer netip.Addr
}

// Record is one captured frame as the reader gets it.
type Record struct {
	Time time.Time
	Dir  Dir
	Port int            // the port it was read from or written to; 0 at a peer
	VNI  uint32         // 0 where unknown (a datagram too short to say)
	Peer netip.AddrPort // the VTEP it came from or went to; invalid at a port
	Drop string         // why the switch dropped it; empty if it did not
	Len  int            // the frame's length (Data holds at most the snap length)
	Data []byte
}

// slot is one place in the ring. Its seq follows the bounded MPMC queue of
// D. Vyukov: a free slot for position pos holds pos, a committed one
// pos+1; the reader frees it for the next lap with pos+len.
type slot struct {
	seq  atomic.Uint64
	rec  Record // Data is the slot's buffer, of cap snap
	drop string // set by Commit before seq
}

// Session is one capture: its filter and its ring. Producers (the
// switch's goroutines) claim positions with a compare-and-swap on tail
// and never take a lock; the one reader advances head.
type Session struct {
	filter Filter
	snap   int
	slots  []slot
	tail   atomic.Uint64 // the next position to claim
	head   uint64        // the next position to read; the reader's own
	spare  []byte
	closed atomic.Bool

	captured, lost atomic.Uint64
	wake           chan struct{} // a commit or Close, for Next
	onClose        func()
	closeOnce      sync.Once
}

// Defaults for New.
const (
	DefaultSlots = 256   // ~a quarter second of a busy port's batches: a reader that keeps up never loses one
	DefaultSnap  = 65535 // a whole TSO super-frame; 256 slots of it are 16 MB, only while a capture runs
)

// claimTries bounds how often a producer retries a claim another producer
// won at the same instant before it gives the frame up as lost.
const claimTries = 4

// New returns a session with room for slots frames of up to snap bytes
// each (0: the defaults). onClose, if set, runs once on Close: the switch
// forgets the session there.
func New(f Filter, slots, snap int, onClose func()) *Session {
	if slots <= 0 {
		slots = DefaultSlots
	}
	if snap <= 0 {
		snap = DefaultSnap
	}
	s := &Session{filter: f, snap: snap, slots: make([]slot, slots), spare: make([]byte, snap),
		wake: make(chan struct{}, 1), onClose: onClose}
	for i := range s.slots {
		s.slots[i].seq.Store(uint64(i))
		s.slots[i].rec.Data = make([]byte, snap)
	}
	return s
}

// Filter returns the session's filter.
func (s *Session) Filter() Filter { return s.filter }

// MatchPort reports whether frames at port id of vni are captured.
func (s *Session) MatchPort(id int, vni uint32) bool {
	return (s.filter.Port != 0 && s.filter.Port == id) || (s.filter.VNI != 0 && s.filter.VNI == vni)
}

// MatchPeer reports whether frames of vni exchanged with peer are
// captured.
func (s *Session) MatchPeer(peer netip.Addr, vni uint32) bool {
	return (s.filter.Peer.IsValid() && s.filter.Peer == peer) || (s.filter.VNI != 0 && s.filter.VNI == vni)
}

// Reserve copies frame into a free slot, with where and how it was seen,
// and returns the slot for Commit; -1 if the frame was not captured (ring
// full or closed), which Lost counts. It never blocks.
func (s *Session) Reserve(dir Dir, port int, vni uint32, peer netip.AddrPort, frame []byte) int {
	if s.closed.Load() {
		s.lost.Add(1)
		return -1
	}
	n := uint64(len(s.slots))
	for range claimTries {
		pos := s.tail.Load()
		sl := &s.slots[pos%n]
		switch seq := sl.seq.Load(); {
		case seq == pos:
			if !s.tail.CompareAndSwap(pos, pos+1) {
				continue // another producer took it
			}
			r := &sl.rec
			r.Time, r.Dir, r.Port, r.VNI, r.Peer, r.Len = time.Now(), dir, port, vni, peer, len(frame)
			r.Data = r.Data[:copy(r.Data[:cap(r.Data)], frame)]
			return int(pos % n)
		case seq < pos:
			s.lost.Add(1) // full: the reader has not freed this slot of the last lap
			return -1
		}
		// seq > pos: tail moved on under us; look again.
	}
	s.lost.Add(1)
	return -1
}

// Commit publishes slot i (from Reserve) with the drop reason, "" if the
// frame was not dropped. A negative i is ignored.
func (s *Session) Commit(i int, drop string) {
	if i < 0 {
		return
	}
	sl := &s.slots[i]
	sl.drop = drop
	sl.seq.Add(1) // pos -> pos+1: committed
	s.captured.Add(1)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Capture is Reserve and Commit at once, for a frame whose verdict is
// known.
func (s *Session) Capture(dir Dir, port int, vni uint32, peer netip.AddrPort, frame []byte, drop string) {
	s.Commit(s.Reserve(dir, port, vni, peer, frame), drop)
}

// ErrClosed is returned by Next once the session is closed and drained.
var ErrClosed = errors.New("capture: session closed")

// Next waits for the oldest captured frame and moves it into r, whose Data
// buffer it takes in exchange for the slot's (so nothing is copied twice
// or allocated). It returns ErrClosed after Close, once what was captured
// is read, or ctx's error. One goroutine reads a session.
func (s *Session) Next(ctx context.Context, r *Record) error {
	n := uint64(len(s.slots))
	for {
		pos := s.head
		sl := &s.slots[pos%n]
		if sl.seq.Load() == pos+1 {
			buf := r.Data
			if cap(buf) < s.snap {
				buf, s.spare = s.spare, nil
				if buf == nil {
					buf = make([]byte, s.snap)
				}
			}
			*r = sl.rec
			r.Drop = sl.drop
			sl.rec.Data = buf[:0]
			sl.seq.Store(pos + n) // free for the next lap
			s.head++
			return nil
		}
		if s.closed.Load() && s.tail.Load() == pos {
			return ErrClosed
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // a Commit whose wake-up another took
		}
	}
}

// Stats returns the frames captured and lost so far.
func (s *Session) Stats() (captured, lost uint64) { return s.captured.Load(), s.lost.Load() }

// Close stops capturing. Frames already captured can still be read. It is
// idempotent.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.onClose != nil {
			s.onClose()
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
}
