//go:build linux

package vtep

// This file holds the Linux UDP endpoint: Listen opens and tunes the socket,
// ReadBatch receives with one recvmmsg, WriteBatch sends with sendmmsg.
//
// Design notes: the socket is a raw non-blocking fd wrapped in an os.File,
// so goroutines park in the runtime netpoller through RawConn.Read/Write
// rather than in a blocking syscall. x/net's ipv4.PacketConn.ReadBatch
// allocates a net.Addr per message; here the mmsghdr, iovec and sockaddr
// storage is preallocated (conn_linux_unsafe.go) and the RawConn callbacks
// are method values made once, so neither call allocates. The read storage
// belongs to the conn (ReadBatch has one caller at a time); WriteBatch is
// concurrent, so each call borrows storage from a small free list. The free
// list is a buffered channel rather than a sync.Pool, which the garbage
// collector empties (and the race detector drops from at random), so that
// steady state allocates nothing, deterministically.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxBatch is the kernel's limit on messages per recvmmsg/sendmmsg call
// (UIO_MAXIOV).
const maxBatch = 1024

// writeScratch is how many idle write storages a conn keeps: one per
// concurrent writer (a sender goroutine per TAP port, plus the receive path
// flooding) on a machine of modest size. More writers than this still work
// but allocate.
const writeScratch = 16

// linuxConn is a Conn on a Linux UDP socket.
type linuxConn struct {
	// Set by Listen, then read-only.
	f         *os.File
	rc        syscall.RawConn
	local     netip.AddrPort
	v6        bool   // AF_INET6 socket
	scope     uint32 // scope of IPv6 link-local destinations (the bound zone)
	batch     int
	errClosed error // returned after Close, made once so it costs nothing

	// Read side: used only by the single ReadBatch caller.
	rd *mmsgs

	// Write side: each WriteBatch borrows a *mmsgs of batch messages from
	// wfree, or makes one if it is empty, and returns it unless it is full.
	wfree chan *mmsgs

	closed atomic.Bool // set first thing in Close
}

var _ Conn = (*linuxConn)(nil)

// Listen opens a UDP endpoint bound to cfg.Addr. The socket never
// fragments (IP_MTU_DISCOVER=IP_PMTUDISC_DO, as RFC 7348 section 4.3 asks
// of VTEPs): a datagram larger than the path MTU fails with EMSGSIZE. Errors
// wrap the errno, so errors.Is(err, syscall.EADDRINUSE) and
// errors.Is(err, syscall.EADDRNOTAVAIL) work.
func Listen(cfg ConnConfig) (_ Conn, reterr error) {
	fail := func(op string, err error) error {
		if op != "" {
			err = os.NewSyscallError(op, err)
		}
		return fmt.Errorf("vtep: listen udp %v: %w", cfg.Addr, err)
	}
	switch {
	case !cfg.Addr.IsValid():
		return nil, fail("", errors.New("invalid address"))
	case cfg.BatchSize < 0 || cfg.BatchSize > maxBatch:
		return nil, fail("", fmt.Errorf("batch size %d out of range [0, %d]", cfg.BatchSize, maxBatch))
	case cfg.SocketBuffer < 0:
		return nil, fail("", fmt.Errorf("negative socket buffer %d", cfg.SocketBuffer))
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultConnConfig().BatchSize
	}
	addr := cfg.Addr.Addr().Unmap()
	var scope uint32
	if z := addr.Zone(); z != "" {
		s, err := zoneIndex(z)
		if err != nil {
			return nil, fail("", err)
		}
		scope = s
	}

	family, v6 := unix.AF_INET, addr.Is6()
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fail("socket", err)
	}
	defer func() {
		if fd >= 0 && reterr != nil {
			unix.Close(fd)
		}
	}()

	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
			return nil, fail("setsockopt IPV6_MTU_DISCOVER", err)
		}
		if addr.IsUnspecified() {
			// Dual stack: also carry IPv4, whatever net.ipv6.bindv6only says.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return nil, fail("setsockopt IPV6_V6ONLY", err)
			}
		}
	}
	// On an AF_INET6 socket this covers IPv4 traffic; it is allowed there.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil && !v6 {
		return nil, fail("setsockopt IP_MTU_DISCOVER", err)
	}
	if cfg.SocketBuffer > 0 {
		if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, cfg.SocketBuffer); err != nil {
			return nil, fail("setsockopt SO_RCVBUF", err)
		}
		if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.SocketBuffer); err != nil {
			return nil, fail("setsockopt SO_SNDBUF", err)
		}
	}

	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Port: int(cfg.Addr.Port()), ZoneId: scope, Addr: addr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(cfg.Addr.Port()), Addr: addr.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fail("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fail("getsockname", err)
	}
	local := netip.AddrPortFrom(addr, cfg.Addr.Port())
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(addr, uint16(b.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(addr, uint16(b.Port))
	}

	// The os.File owns the fd from here on; the fd is non-blocking, so
	// NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "udp:"+local.String())
	fd = -1
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fail("", err)
	}
	c := &linuxConn{
		f:         f,
		rc:        rc,
		local:     local,
		v6:        v6,
		scope:     scope,
		batch:     cfg.BatchSize,
		errClosed: fmt.Errorf("vtep: udp %v: %w", local, net.ErrClosed),
		rd:        newMmsgs(cfg.BatchSize, false),
		wfree:     make(chan *mmsgs, writeScratch),
	}
	return c, nil
}

// setBuffer sets a socket buffer size, forced past the sysctl limit if the
// process may (CAP_NET_ADMIN), capped at the limit if not.
func setBuffer(fd, force, plain, size int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size)
	if errors.Is(err, unix.EPERM) {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
	}
	return err
}

// zoneIndex resolves an IPv6 zone (an interface name or index) to an
// interface index.
func zoneIndex(zone string) (uint32, error) {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

// ReadBatch implements Conn. It fills at most BatchSize messages with one
// recvmmsg call, parking in the netpoller until a datagram arrives. Each
// Addr is the sender's address with IPv4-mapped addresses unmapped and no
// IPv6 zone. A receive error (rare on an unconnected socket) returns 0 and
// the error; the caller may keep reading.
func (c *linuxConn) ReadBatch(msgs []Message) (int, error) {
	n := min(len(msgs), c.batch)
	if n == 0 {
		return 0, nil
	}
	if c.closed.Load() {
		return 0, c.errClosed
	}
	r := c.rd
	for i := range n {
		r.setBuf(i, msgs[i].Buf)
		r.resetRecv(i)
	}
	r.off, r.n = 0, n
	err := c.rc.Read(r.fn)
	r.release(n)
	switch {
	case err != nil:
		if c.closed.Load() {
			return 0, c.errClosed
		}
		return 0, fmt.Errorf("vtep: read udp %v: %w", c.local, err)
	case r.errno != 0:
		return 0, fmt.Errorf("vtep: read udp %v: %w", c.local, os.NewSyscallError("recvmmsg", r.errno))
	}
	for i := range r.got {
		// Without MSG_TRUNC the kernel reports the bytes copied, so a
		// truncated datagram has N == len(Buf).
		msgs[i].N = r.datagramLen(i)
		msgs[i].Addr = r.addr(i)
	}
	return r.got, nil
}

// WriteBatch implements Conn. It sends msgs in order with as few sendmmsg
// calls as the kernel allows (at most BatchSize messages each) and returns
// how many were sent.
//
// A message that cannot be sent is skipped and the rest still go: an
// invalid destination or port 0 (EINVAL), an IPv6 destination on an IPv4
// socket (EAFNOSUPPORT), N outside Buf (EINVAL), or any error the kernel
// returns for it, such as EMSGSIZE for a datagram over the path MTU or
// ENETUNREACH. So n need not be a prefix of msgs: len(msgs)-n messages were
// dropped. err is nil whenever n > 0; when nothing could be sent, n is 0 and
// err describes the first failure and wraps its errno (or net.ErrClosed
// after Close). An empty batch returns 0, nil. Safe for concurrent use.
func (c *linuxConn) WriteBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if c.closed.Load() {
		return 0, c.errClosed
	}
	var w *mmsgs
	select {
	case w = <-c.wfree:
	default:
		w = newMmsgs(c.batch, true)
	}
	sent, err := c.writeBatch(w, msgs)
	select {
	case c.wfree <- w:
	default:
	}
	return sent, err
}

func (c *linuxConn) writeBatch(w *mmsgs, msgs []Message) (sent int, err error) {
	var (
		failErrno unix.Errno // first failure
		failAddr  netip.AddrPort
		closed    bool
	)
	fail := func(e unix.Errno, to netip.AddrPort) {
		if failErrno == 0 {
			failErrno, failAddr = e, to
		}
	}
	for len(msgs) > 0 && !closed {
		// Fill the storage, skipping what cannot be sent at all.
		k := 0
		for len(msgs) > 0 && k < len(w.hdrs) {
			m := &msgs[0]
			msgs = msgs[1:]
			if m.N < 0 || m.N > len(m.Buf) {
				fail(unix.EINVAL, m.Addr)
				continue
			}
			if e := w.setAddr(k, m.Addr, c.v6, c.scope); e != 0 {
				fail(e, m.Addr)
				continue
			}
			w.setBuf(k, m.Buf[:m.N])
			k++
		}
		// Send hdrs[:k]. sendmmsg stops at the first message it cannot
		// send and reports only what went before it, so the call after a
		// short count fails on that message: skip it and go on.
		retried := false
		for off := 0; off < k; {
			w.off, w.n = off, k-off
			if err := c.rc.Write(w.fn); err != nil {
				closed = true // the fd is closing
				break
			}
			switch {
			case w.errno == 0 && w.got > 0:
				sent += w.got
				off += w.got
				retried = false
			case w.errno == unix.ECONNREFUSED && !retried:
				// A port-unreachable left on the socket by an earlier
				// datagram, reported now; it is not this message's fault.
				retried = true
			default:
				e := w.errno
				if e == 0 {
					e = unix.EIO // sendmmsg sent nothing and said nothing
				}
				fail(e, rawToAddrPort(&w.names[off]))
				off++
				retried = false
			}
		}
		w.release(k)
	}
	switch {
	case sent > 0:
		return sent, nil
	case closed || c.closed.Load():
		return 0, c.errClosed
	default:
		return 0, fmt.Errorf("vtep: write udp %v to %v: %w", c.local, failAddr, os.NewSyscallError("sendmmsg", failErrno))
	}
}

// LocalAddr implements Conn: the bound address, with the port the kernel
// picked if ConnConfig.Addr had port 0.
func (c *linuxConn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize implements Conn.
func (c *linuxConn) BatchSize() int { return c.batch }

// Close implements Conn. It closes the socket; a pending ReadBatch returns
// an error that errors.Is net.ErrClosed. Later calls do nothing and return
// nil.
func (c *linuxConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if err := c.f.Close(); err != nil {
		return fmt.Errorf("vtep: close udp %v: %w", c.local, err)
	}
	return nil
}
