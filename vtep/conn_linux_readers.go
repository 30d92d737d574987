//go:build linux

package vtep

// This file holds the receive half of the Linux UDP endpoint: ReadBatch on
// each receive socket, and the binding of several receive sockets to the
// conn's address as one SO_REUSEPORT group.
//
// Design notes: the kernel hands each datagram to one socket of a
// SO_REUSEPORT group, picked by a hash of its source and destination
// addresses and ports, so one outer flow always reaches one socket and
// stays in order, and each socket is read by its own goroutine with its own
// recvmmsg storage (a connReader). The hash only spreads if the outer source
// ports vary, which is what the senders' source-port pools are for.
//
// SO_REUSEPORT weakens the port's ownership: a bind with SO_REUSEPORT by
// the same user joins a group instead of failing with EADDRINUSE. So that
// "port in use" keeps its meaning (the daemon reports a kernel vxlan device
// or another ovlsw on the port by it), bindGroup first binds a probe socket
// without SO_REUSEPORT, which fails if any socket holds the port, reuseport
// or not; then it closes the probe and binds the group to the same port.
// While the group holds the port, any bind to it without SO_REUSEPORT fails
// (another ovlsw's plain socket or probe, a kernel vxlan device), and so
// does one with SO_REUSEPORT by another user (the kernel compares uids).
//
// What is left is a race: a socket with SO_REUSEPORT of our own user that
// binds the port between the probe's close and the group's bind makes a
// group that ours then joins, and takes a share of our traffic; one that
// binds later joins our group the same way. Neither is refused. Only a
// process of our own uid can do either, and such a process can already
// signal or otherwise interfere with ovlsw. Closing that hole needs a BPF
// steering program (SO_ATTACH_REUSEPORT_CBPF) or a socket the group can be
// checked against, neither of which is done here.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// groupAttempts is how many times Listen tries to bind a SO_REUSEPORT group
// to a port of the kernel's choosing: another socket may take the port
// between the probe and the group's bind, and a new pick then fixes it. A
// port asked for by number is tried once.
const groupAttempts = 4

// connReader is one receive socket of a conn, read by one goroutine at a
// time with its own preallocated storage.
type connReader struct {
	c  *linuxConn
	f  *os.File
	rc syscall.RawConn
	rd *mmsgs

	group netip.Addr  // the group it receives, if a group's socket (group_linux.go)
	left  atomic.Bool // set when LeaveGroup closes it
}

var _ BatchReader = (*connReader)(nil)

// ReadBatch implements Conn. It reads the first receive socket, as
// Readers()[0] does.
func (c *linuxConn) ReadBatch(msgs []Message) (int, error) {
	return c.rx[0].ReadBatch(msgs)
}

// Readers implements Conn: the conn itself, then one BatchReader per other
// receive socket of the SO_REUSEPORT group (ConnConfig.Readers).
func (c *linuxConn) Readers() []BatchReader { return slices.Clone(c.readers) }

// ReadBatch implements BatchReader. It fills at most BatchSize messages
// with one recvmmsg call, parking in the netpoller until a datagram
// arrives. Each Addr is the sender's address with IPv4-mapped addresses
// unmapped and no IPv6 zone. With GRO on, Segment is set for coalesced
// datagrams (see Message.Segment), and 0 otherwise. A receive error (rare
// on an unconnected socket) returns 0 and the error; the caller may keep
// reading. After Close it returns an error that errors.Is net.ErrClosed.
func (r *connReader) ReadBatch(msgs []Message) (int, error) {
	c := r.c
	n := min(len(msgs), c.batch)
	if n == 0 {
		return 0, nil
	}
	if c.closed.Load() || r.left.Load() {
		return 0, c.errClosed
	}
	rd := r.rd
	for i := range n {
		rd.setBuf(i, msgs[i].Buf)
		rd.resetRecv(i)
	}
	rd.off, rd.n = 0, n
	err := r.rc.Read(rd.fn)
	rd.release(n)
	switch {
	case err != nil:
		if c.closed.Load() || r.left.Load() {
			return 0, c.errClosed
		}
		return 0, fmt.Errorf("vtep: read udp %v: %w", c.local, err)
	case rd.errno != 0:
		return 0, fmt.Errorf("vtep: read udp %v: %w", c.local, os.NewSyscallError("recvmmsg", rd.errno))
	}
	for i := range rd.got {
		// Without MSG_TRUNC the kernel reports the bytes copied, so a
		// truncated datagram has N == len(Buf).
		m := &msgs[i]
		m.N = rd.datagramLen(i)
		m.Addr = rd.addr(i)
		// A datagram no longer than its segment size is one datagram,
		// whatever the kernel says.
		if m.Segment = rd.segment(i); m.Segment >= m.N {
			m.Segment = 0
		}
	}
	return rd.got, nil
}

// bindGroup binds n receive sockets with SO_REUSEPORT to port, or to a
// port of the kernel's choosing if port is 0, after probe has checked that
// no other socket holds it (see the design notes). probe binds a socket
// without SO_REUSEPORT to a port and closes it again, returning the port
// bound; member opens one socket of the group on a port, and reports
// whether it takes GSO. bindGroup returns the sockets, the port, and
// whether all take GSO. On failure it has closed what it opened.
func bindGroup(n int, port uint16, probe func(port uint16) (uint16, error),
	member func(port uint16) (*connReader, bool, error)) (_ []*connReader, bound uint16, gso bool, err error) {
	for attempt := 1; ; attempt++ {
		bound, err = probe(port)
		if err != nil {
			return nil, 0, false, err
		}
		rx := make([]*connReader, 0, n)
		gso = true
		for range n {
			r, rgso, merr := member(bound)
			if merr != nil {
				err = merr
				break
			}
			rx = append(rx, r)
			gso = gso && rgso
		}
		if err == nil {
			return rx, bound, gso, nil
		}
		for _, r := range rx {
			r.f.Close()
		}
		if port != 0 || attempt == groupAttempts || !errors.Is(err, unix.EADDRINUSE) {
			return nil, 0, false, err
		}
	}
}

// probePort binds a socket without SO_REUSEPORT to sa, with the options
// and so the address conflicts a conn's sockets have (udpSocket), and
// closes it again. It returns the port bound, the kernel's pick if sa's
// port is 0; the bind fails with EADDRINUSE if any socket holds the port.
// On failure it returns the operation that failed and the errno.
func probePort(sa unix.Sockaddr, v6, dualStack bool) (_ uint16, op string, err error) {
	fd, op, err := udpSocket(sa, v6, dualStack, 0, 0, false)
	if err != nil {
		return 0, op, err
	}
	defer unix.Close(fd)
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return 0, "getsockname", err
	}
	return boundPort(bound), "", nil
}

// enableGROAll turns UDP GRO on for every receive socket, if on, and
// reports whether it is on for all of them. If a socket refuses it, it is
// turned off again on those that took it, so that every reader reports
// segments alike and Offloads().GRO holds for all.
func enableGROAll(on bool, rx []*connReader) (bool, error) {
	if !on {
		return false, nil
	}
	took := 0
	for _, r := range rx {
		ok := false
		if err := r.rc.Control(func(fd uintptr) { ok = enableGRO(int(fd)) }); err != nil {
			return false, err
		}
		if !ok {
			break
		}
		took++
	}
	if took == len(rx) {
		return true, nil
	}
	for _, r := range rx[:took] {
		r.rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 0) })
	}
	return false, nil
}
