//go:build linux

package vtep

// This file holds the Linux UDP endpoint's sockets: Listen opens and tunes
// the bound socket and the source-port pool and probes the kernel's UDP
// offloads, ReadBatch receives with one recvmmsg; WriteBatch is in
// conn_linux_send.go.
//
// Design notes: each socket is a raw non-blocking fd wrapped in an os.File,
// so goroutines park in the runtime netpoller through RawConn.Read/Write
// rather than in a blocking syscall. x/net's ipv4.PacketConn.ReadBatch
// allocates a net.Addr per message; here the mmsghdr, iovec, sockaddr and
// cmsg storage is preallocated (conn_linux_unsafe.go) and the RawConn
// callbacks are method values made once, so neither call allocates. The
// read storage belongs to the conn (ReadBatch has one caller at a time);
// WriteBatch is concurrent, so each call borrows storage from a small free
// list. The free list is a buffered channel rather than a sync.Pool, which
// the garbage collector empties (and the race detector drops from at
// random), so that steady state allocates nothing, deterministically.
//
// A UDP socket has one source port, so the source-port pool is a set of
// send-only sockets (RFC 7348 section 5 wants the port to vary by inner
// flow). They are never read: their receive buffers are kept at the
// kernel's minimum, so stray datagrams to their ports cost next to nothing.

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

// minRcvBuf, asked for as SO_RCVBUF, gets the kernel's minimum receive
// buffer (SOCK_MIN_RCVBUF, about 2.3 KB): for the pool sockets, never read.
const minRcvBuf = 1

// linuxConn is a Conn on Linux UDP sockets.
type linuxConn struct {
	// Set by Listen, then read-only.
	f         *os.File // the bound socket
	rc        syscall.RawConn
	local     netip.AddrPort
	v6        bool   // AF_INET6 sockets
	scope     uint32 // scope of IPv6 link-local destinations (the bound zone)
	batch     int
	gro       bool // UDP_GRO is on for the bound socket
	errClosed error
	// tx are the sockets WriteBatch sends from: rc alone without a
	// source-port pool, else the pool's, whose files pool holds.
	tx   []syscall.RawConn
	pool []*os.File

	// Read side: used only by the single ReadBatch caller.
	rd *mmsgs

	// Write side: each WriteBatch borrows a *mmsgs of batch messages from
	// wfree, or makes one if it is empty, and returns it unless it is
	// full. gso is whether segmented messages go to the kernel whole; it
	// only ever goes from true to false, when a GSO send fails.
	wfree chan *mmsgs
	gso   atomic.Bool

	closed atomic.Bool // set first thing in Close
}

var _ Conn = (*linuxConn)(nil)

// Listen opens a UDP endpoint bound to cfg.Addr, and the source-port pool
// cfg.SourcePorts asks for. No socket ever fragments (IP_MTU_DISCOVER=
// IP_PMTUDISC_DO, as RFC 7348 section 4.3 asks of VTEPs): a datagram larger
// than the path MTU fails with EMSGSIZE. GSO and GRO are used if asked for
// and the kernel has them; see Conn.Offloads. Errors wrap the errno, so
// errors.Is(err, syscall.EADDRINUSE) and errors.Is(err,
// syscall.EADDRNOTAVAIL) work.
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
	case cfg.SourcePorts < 0 || cfg.SourcePorts > MaxSourcePorts:
		return nil, fail("", fmt.Errorf("source ports %d out of range [0, %d]", cfg.SourcePorts, MaxSourcePorts))
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
	v6 := addr.Is6()
	sockaddr := func(port uint16) unix.Sockaddr {
		if v6 {
			return &unix.SockaddrInet6{Port: int(port), ZoneId: scope, Addr: addr.As16()}
		}
		return &unix.SockaddrInet4{Port: int(port), Addr: addr.As4()}
	}

	// Every file opened so far, closed again if Listen fails.
	var files []*os.File
	defer func() {
		if reterr != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	// open opens, binds and wraps one socket, and returns the port bound
	// and whether the socket takes GSO. The os.File owns the fd from then
	// on; the fd is non-blocking, so NewFile registers it with the
	// netpoller.
	open := func(port uint16, rcvbuf int) (*os.File, syscall.RawConn, uint16, bool, error) {
		fd, op, err := udpSocket(sockaddr(port), v6, addr.IsUnspecified(), rcvbuf, cfg.SocketBuffer)
		if err != nil {
			return nil, nil, 0, false, fail(op, err)
		}
		bound, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return nil, nil, 0, false, fail("getsockname", err)
		}
		port = boundPort(bound)
		gso := cfg.GSO && probeGSO(fd)
		f := os.NewFile(uintptr(fd), "udp:"+netip.AddrPortFrom(addr, port).String())
		files = append(files, f)
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, nil, 0, false, fail("", err)
		}
		return f, rc, port, gso, nil
	}

	f, rc, port, gso, err := open(cfg.Addr.Port(), cfg.SocketBuffer)
	if err != nil {
		return nil, err
	}
	gro := false
	if cfg.GRO {
		if err := rc.Control(func(fd uintptr) { gro = enableGRO(int(fd)) }); err != nil {
			return nil, fail("", err)
		}
	}
	local := netip.AddrPortFrom(addr, port)
	c := &linuxConn{
		f:         f,
		rc:        rc,
		local:     local,
		v6:        v6,
		scope:     scope,
		batch:     cfg.BatchSize,
		gro:       gro,
		errClosed: fmt.Errorf("vtep: udp %v: %w", local, net.ErrClosed),
		tx:        []syscall.RawConn{rc},
		rd:        newMmsgs(cfg.BatchSize, false, gro),
		wfree:     make(chan *mmsgs, writeScratch),
	}
	if cfg.SourcePorts > 0 {
		c.tx = make([]syscall.RawConn, cfg.SourcePorts)
		c.pool = make([]*os.File, cfg.SourcePorts)
		for i := range c.pool {
			pf, prc, _, pgso, err := open(0, minRcvBuf)
			if err != nil {
				return nil, err
			}
			c.pool[i], c.tx[i] = pf, prc
			gso = gso && pgso
		}
	}
	c.gso.Store(gso)
	return c, nil
}

// udpSocket opens a non-blocking UDP socket with the options every socket
// of a conn has and binds it to sa. dualStack also carries IPv4 on an IPv6
// socket. rcvbuf and sndbuf are buffer sizes (0: the kernel's default). On
// failure it returns the operation that failed and the errno.
func udpSocket(sa unix.Sockaddr, v6, dualStack bool, rcvbuf, sndbuf int) (_ int, op string, err error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, "socket", err
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
			return -1, "setsockopt IPV6_MTU_DISCOVER", err
		}
		if dualStack {
			// Also carry IPv4, whatever net.ipv6.bindv6only says.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return -1, "setsockopt IPV6_V6ONLY", err
			}
		}
	}
	// On an AF_INET6 socket this covers IPv4 traffic; it is allowed there.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil && !v6 {
		return -1, "setsockopt IP_MTU_DISCOVER", err
	}
	if rcvbuf > 0 {
		if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rcvbuf); err != nil {
			return -1, "setsockopt SO_RCVBUF", err
		}
	}
	if sndbuf > 0 {
		if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndbuf); err != nil {
			return -1, "setsockopt SO_SNDBUF", err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, "bind", err
	}
	return fd, "", nil
}

// boundPort returns the port of a socket address from getsockname.
func boundPort(sa unix.Sockaddr) uint16 {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(sa.Port)
	case *unix.SockaddrInet6:
		return uint16(sa.Port)
	}
	return 0
}

// probeGSO reports whether the kernel has UDP GSO (4.18): getsockopt
// UDP_SEGMENT reads the socket's default segment size, and setting it to 0
// (no default: each message says) changes nothing.
func probeGSO(fd int) bool {
	if _, err := unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT); err != nil {
		return false
	}
	return unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 0) == nil
}

// enableGRO turns UDP GRO on and reports whether it is. Kernels 5.0 to
// 5.11 accept the setsockopt but cannot read it back, and their UDP GRO
// had bugs fixed by then: there it is turned off again.
func enableGRO(fd int) bool {
	if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
		return false
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO); err == nil && v != 0 {
		return true
	}
	unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 0)
	return false
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
// IPv6 zone. With GRO on, Segment is set for coalesced datagrams (see
// Message.Segment), and 0 otherwise. A receive error (rare on an unconnected socket) returns 0 and
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
		m := &msgs[i]
		m.N = r.datagramLen(i)
		m.Addr = r.addr(i)
		// A datagram no longer than its segment size is one datagram,
		// whatever the kernel says.
		if m.Segment = r.segment(i); m.Segment >= m.N {
			m.Segment = 0
		}
	}
	return r.got, nil
}

// LocalAddr implements Conn: the bound address, with the port the kernel
// picked if ConnConfig.Addr had port 0.
func (c *linuxConn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize implements Conn.
func (c *linuxConn) BatchSize() int { return c.batch }

// Offloads implements Conn.
func (c *linuxConn) Offloads() ConnOffloads {
	return ConnOffloads{GSO: c.gso.Load(), GRO: c.gro, SourcePorts: len(c.pool)}
}

// Close implements Conn. It closes the sockets; a pending ReadBatch returns
// an error that errors.Is net.ErrClosed. Later calls do nothing and return
// nil.
func (c *linuxConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.f.Close()
	for _, f := range c.pool {
		if e := f.Close(); err == nil {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("vtep: close udp %v: %w", c.local, err)
	}
	return nil
}
