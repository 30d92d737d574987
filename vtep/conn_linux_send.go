//go:build linux

package vtep

// This file holds the send half of the Linux UDP endpoint: WriteBatch fills
// sendmmsg storage from a batch, one socket of the source-port pool at a
// time, hands segmented messages to the kernel whole (UDP GSO) or cut into
// datagrams, and falls back from GSO to cutting when the kernel refuses it.
//
// Design notes: a segmented message needs up to MaxSegments mmsghdrs when
// it is cut, more than a small BatchSize holds, so the fill loop keeps a
// cursor (a message and a byte offset into it) and may end a sendmmsg call
// in the middle of a message. A GSO message that fails with EIO or EINVAL
// was not sent, and sendmmsg sent nothing after it, so the fallback moves
// the cursor back to it and fills again, now cutting.

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// WriteBatch implements Conn. It sends msgs with as few sendmmsg calls as
// the kernel allows (at most BatchSize datagrams or GSO messages each) and
// returns how many messages were sent. A message with Segment > 0 goes as
// one GSO message while Offloads().GSO holds, else as its datagrams in
// order; it counts as sent if any of them was. With a source-port pool,
// message i leaves from socket msgs[i].Flow % SourcePorts; messages are
// sent one socket at a time, each socket's in order, so messages of one
// flow keep their order but those of different flows may not.
//
// A message that cannot be sent is skipped and the rest still go: an
// invalid destination or port 0 (EINVAL), an IPv6 destination on an IPv4
// socket (EAFNOSUPPORT), N outside Buf or a negative Segment (EINVAL), more
// than MaxSegments segments or MaxSegmentedPayload bytes (EMSGSIZE), or any
// error the kernel returns for it, such as EMSGSIZE for a datagram over the
// path MTU or ENETUNREACH. So n need not be a prefix of msgs: len(msgs)-n
// messages were dropped. err is nil whenever n > 0; when nothing could be
// sent, n is 0 and err describes the first failure and wraps its errno (or
// net.ErrClosed after Close). An empty batch returns 0, nil. Safe for
// concurrent use.
func (c *linuxConn) WriteBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	for i := range msgs {
		msgs[i].Sent = false
	}
	if c.closed.Load() {
		return 0, c.errClosed
	}
	var w *mmsgs
	select {
	case w = <-c.wfree:
	default:
		w = newMmsgs(c.batch, true, true)
	}
	sent, err := c.writeBatch(w, msgs)
	select {
	case c.wfree <- w:
	default:
	}
	return sent, err
}

// writeState is what one WriteBatch has sent so far and its first failure.
type writeState struct {
	sent      int
	failErrno unix.Errno
	failAddr  netip.AddrPort
	closed    bool // the conn is closing
}

func (st *writeState) fail(e unix.Errno, to netip.AddrPort) {
	if st.failErrno == 0 {
		st.failErrno, st.failAddr = e, to
	}
}

func (c *linuxConn) writeBatch(w *mmsgs, msgs []Message) (int, error) {
	var st writeState
	if len(c.tx) == 1 {
		c.writeSocket(w, &st, msgs, -1)
	} else {
		// One pass per socket in use, lowest first; each pass finds
		// the next.
		s := len(c.tx)
		for i := range msgs {
			s = min(s, c.socketOf(&msgs[i]))
		}
		for s >= 0 && !st.closed {
			s = c.writeSocket(w, &st, msgs, s)
		}
	}
	switch {
	case st.sent > 0:
		return st.sent, nil
	case st.closed || c.closed.Load():
		return 0, c.errClosed
	default:
		return 0, fmt.Errorf("vtep: write udp %v to %v: %w", c.local, st.failAddr, os.NewSyscallError("sendmmsg", st.failErrno))
	}
}

// socketOf returns the index in c.tx of the socket m leaves from.
func (c *linuxConn) socketOf(m *Message) int {
	return int(m.Flow % uint32(len(c.tx)))
}

// checkMessage returns the errno to skip m with, or 0 if it can be sent.
func checkMessage(m *Message) unix.Errno {
	switch {
	case m.N < 0 || m.N > len(m.Buf) || m.Segment < 0:
		return unix.EINVAL
	case m.Segment > 0 && m.N > m.Segment &&
		(m.N > MaxSegmentedPayload || (m.N+m.Segment-1)/m.Segment > MaxSegments):
		return unix.EMSGSIZE
	}
	return 0
}

// writeSocket sends the messages of msgs that leave through socket s (all
// of them through c.tx[0] if s < 0), in order. It returns the lowest socket
// above s that other messages use, or -1 if there is none.
func (c *linuxConn) writeSocket(w *mmsgs, st *writeState, msgs []Message, s int) (next int) {
	rc := c.tx[max(s, 0)]
	next = -1
	counted := -1  // the last message counted in st.sent
	i, seg := 0, 0 // fill from message i, at byte seg of it if it is being cut
	for !st.closed {
		// Fill the storage, skipping what cannot be sent at all.
		gso := c.gso.Load()
		k := 0
		for i < len(msgs) && k < len(w.hdrs) {
			m := &msgs[i]
			if s >= 0 {
				if ms := c.socketOf(m); ms != s {
					if ms > s && (next < 0 || ms < next) {
						next = ms
					}
					i++
					continue
				}
			}
			if seg == 0 {
				if e := checkMessage(m); e != 0 {
					st.fail(e, m.Addr)
					i++
					continue
				}
			}
			if e := w.setAddr(k, m.Addr, c.v6, c.scope); e != 0 {
				st.fail(e, m.Addr)
				i++
				continue
			}
			w.owner[k] = int32(i)
			switch {
			case m.Segment == 0 || m.N <= m.Segment:
				w.setBuf(k, m.Buf[:m.N])
				w.clearSegment(k)
				i++
			case gso:
				w.setBuf(k, m.Buf[:m.N])
				w.setSegment(k, m.Segment)
				i++
			default: // cut: one datagram per mmsghdr
				end := min(seg+m.Segment, m.N)
				w.setBuf(k, m.Buf[seg:end])
				w.clearSegment(k)
				if seg = end; seg == m.N {
					i, seg = i+1, 0
				}
			}
			k++
		}
		if k == 0 {
			return next
		}
		// Send hdrs[:k]. sendmmsg stops at the first message it cannot
		// send and reports only what went before it, so the call after a
		// short count fails on that message: skip it and go on.
		retried := false
	send:
		for off := 0; off < k; {
			w.off, w.n = off, k-off
			if err := rc.Write(w.fn); err != nil {
				st.closed = true // the fd is closing
				break
			}
			switch e := w.errno; {
			case e == 0 && w.got > 0:
				for _, o := range w.owner[off : off+w.got] {
					if int(o) != counted {
						counted = int(o)
						st.sent++
						msgs[o].Sent = true
					}
				}
				off += w.got
				retried = false
			case e == unix.ECONNREFUSED && !retried:
				// A port-unreachable left on the socket by an earlier
				// datagram, reported now; it is not this message's fault.
				retried = true
			case (e == unix.EIO || e == unix.EINVAL) && w.isSegmented(off):
				// The kernel cannot do GSO here (see ConnConfig.GSO):
				// stop using it and fill again from this message,
				// which is then cut.
				c.gso.Store(false)
				i, seg = int(w.owner[off]), 0
				break send
			default:
				if e == 0 {
					e = unix.EIO // sendmmsg sent nothing and said nothing
				}
				st.fail(e, rawToAddrPort(&w.names[off]))
				off++
				retried = false
			}
		}
		w.release(k)
	}
	return next
}
