//go:build linux

package vtep

// This file holds the Linux UDP endpoint's sockets: Listen opens and tunes
// the bound sockets and the source-port pool and probes the kernel's UDP
// offloads. ReadBatch and the SO_REUSEPORT receive group are in
// conn_linux_readers.go, WriteBatch in conn_linux_send.go.
//
// Design notes: each socket is a raw non-blocking fd wrapped in an os.File,
// so goroutines park in the runtime netpoller through RawConn.Read/Write
// rather than in a blocking syscall. x/net's ipv4.PacketConn.ReadBatch
// allocates a net.Addr per message; here the mmsghdr, iovec, sockaddr and
// cmsg storage is preallocated (conn_linux_unsafe.go) and the RawConn
// callbacks are method values made once, so neither call allocates. Each
// receive socket has its own read storage (and one ReadBatch caller at a
// time); WriteBatch is concurrent, so each call borrows storage from a
// small free list. The free list is a buffered channel rather than a
// sync.Pool, which the garbage collector empties (and the race detector
// drops from at random), so that steady state allocates nothing,
// deterministically.
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
	"sync"
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
	rc        syscall.RawConn // the first receive socket, rx[0]'s
	local     netip.AddrPort
	v6        bool   // AF_INET6 sockets
	scope     uint32 // scope of IPv6 link-local destinations (the bound zone)
	batch     int
	gro       bool   // UDP_GRO is on for every receive socket
	gsoBug    string // the kernel release, if GSO is off because it corrupts it
	errClosed error
	// tx are the sockets WriteBatch sends from: rc alone without a
	// source-port pool, else the pool's, whose files pool holds.
	tx   []syscall.RawConn
	pool []*os.File

	// Read side: the receive sockets bound to local, one or a
	// SO_REUSEPORT group, each with its own read storage and used by one
	// ReadBatch caller at a time; readers is what Readers returns (c
	// itself, then rx[1:]).
	rx      []*connReader
	readers []BatchReader

	// Write side: each WriteBatch borrows a *mmsgs of batch messages from
	// wfree, or makes one if it is empty, and returns it unless it is
	// full. gso is whether segmented messages go to the kernel whole; it
	// only ever goes from true to false, when a GSO send fails.
	wfree chan *mmsgs
	gso   atomic.Bool

	// Multicast groups (group_linux.go): sockbuf is the receive buffer of
	// their sockets; joined, guarded by gmu, the groups received.
	sockbuf int
	gmu     sync.Mutex
	joined  map[netip.Addr]*joinedGroup

	closed atomic.Bool // set first thing in Close
}

var _ Conn = (*linuxConn)(nil)

// Listen opens a UDP endpoint bound to cfg.Addr, with the receive sockets
// cfg.Readers and the source-port pool cfg.SourcePorts ask for. No socket
// ever fragments (IP_MTU_DISCOVER=IP_PMTUDISC_DO, as RFC 7348 section 4.3
// asks of VTEPs): a datagram larger than the path MTU fails with EMSGSIZE. GSO and GRO are used if asked for
// and the kernel has them; see Conn.Offloads. Errors wrap the errno, so
// errors.Is(err, syscall.EADDRINUSE) and errors.Is(err,
// syscall.EADDRNOTAVAIL) work; a port another socket holds gives
// EADDRINUSE with several receive sockets too (see bindGroup).
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
	case cfg.SourcePorts < 0 || cfg.SourcePorts > maxSourcePorts:
		return nil, fail("", fmt.Errorf("source ports %d out of range [0, %d]", cfg.SourcePorts, maxSourcePorts))
	case cfg.Readers < 0 || cfg.Readers > maxReaders:
		return nil, fail("", fmt.Errorf("readers %d out of range [0, %d]", cfg.Readers, maxReaders))
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultConnConfig().BatchSize
	}
	var gsoBug string
	if rel := kernelRelease(); cfg.GSO && gsoCorrupts(rel) {
		cfg.GSO, gsoBug = false, rel
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
	// open opens, binds and wraps one socket, with SO_REUSEPORT if
	// reuse, and returns it with the port bound and whether it takes
	// GSO. The os.File owns the fd from then on; the fd is non-blocking,
	// so NewFile registers it with the netpoller.
	open := func(port uint16, rcvbuf int, reuse bool) (_ *connReader, _ uint16, gso bool, _ error) {
		fd, op, err := udpSocket(sockaddr(port), v6, addr.IsUnspecified(), rcvbuf, cfg.SocketBuffer, reuse)
		if err != nil {
			return nil, 0, false, fail(op, err)
		}
		bound, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return nil, 0, false, fail("getsockname", err)
		}
		port = boundPort(bound)
		gso = cfg.GSO && probeGSO(fd)
		f := os.NewFile(uintptr(fd), "udp:"+netip.AddrPortFrom(addr, port).String())
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return nil, 0, false, fail("", err)
		}
		return &connReader{f: f, rc: rc}, port, gso, nil
	}

	// The receive sockets: one, or a SO_REUSEPORT group.
	var (
		rx   []*connReader
		port uint16
		gso  bool
		err  error
	)
	if cfg.Readers <= 1 {
		var r *connReader
		r, port, gso, err = open(cfg.Addr.Port(), cfg.SocketBuffer, false)
		rx = []*connReader{r}
	} else {
		probe := func(port uint16) (uint16, error) {
			p, op, err := probePort(sockaddr(port), v6, addr.IsUnspecified())
			if err != nil {
				return 0, fail(op, err)
			}
			return p, nil
		}
		member := func(port uint16) (*connReader, bool, error) {
			r, _, gso, err := open(port, cfg.SocketBuffer, true)
			return r, gso, err
		}
		rx, port, gso, err = bindGroup(cfg.Readers, cfg.Addr.Port(), probe, member)
	}
	if err != nil {
		return nil, err
	}
	for _, r := range rx {
		files = append(files, r.f)
	}
	gro, err := enableGROAll(cfg.GRO, rx)
	if err != nil {
		return nil, fail("", err)
	}
	local := netip.AddrPortFrom(addr, port)
	c := &linuxConn{
		rc:        rx[0].rc,
		local:     local,
		v6:        v6,
		scope:     scope,
		batch:     cfg.BatchSize,
		gro:       gro,
		errClosed: fmt.Errorf("vtep: udp %v: %w", local, net.ErrClosed),
		tx:        []syscall.RawConn{rx[0].rc},
		rx:        rx,
		wfree:     make(chan *mmsgs, writeScratch),
	}
	c.readers = make([]BatchReader, len(rx))
	for i, r := range rx {
		r.c, r.rd = c, newMmsgs(cfg.BatchSize, false, gro)
		c.readers[i] = r
	}
	c.readers[0] = c // the same queue as rx[0]: "the Conn's own ReadBatch"

	if cfg.SourcePorts > 0 {
		c.tx = make([]syscall.RawConn, cfg.SourcePorts)
		c.pool = make([]*os.File, cfg.SourcePorts)
		for i := range c.pool {
			p, _, pgso, err := open(0, minRcvBuf, false)
			if err != nil {
				return nil, err
			}
			files = append(files, p.f)
			c.pool[i], c.tx[i] = p.f, p.rc
			gso = gso && pgso
		}
	}
	c.gso.Store(gso)
	c.gsoBug = gsoBug
	c.sockbuf = cfg.SocketBuffer
	if cfg.Group.IsValid() {
		f, err := c.joinGroup(cfg) // group_linux.go
		if err != nil {
			return nil, fail("", fmt.Errorf("group %v: %w", cfg.Group, err))
		}
		files = append(files, f)
	}
	return c, nil
}

// kernelRelease returns uname -r; tests replace it.
var kernelRelease = func() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// udpSocket opens a non-blocking UDP socket with the options every socket
// of a conn has and binds it to sa. dualStack also carries IPv4 on an IPv6
// socket. rcvbuf and sndbuf are buffer sizes (0: the kernel's default).
// reusePort sets SO_REUSEPORT before the bind. On failure it returns the
// operation that failed and the errno.
func udpSocket(sa unix.Sockaddr, v6, dualStack bool, rcvbuf, sndbuf int, reusePort bool) (_ int, op string, err error) {
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
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return -1, "setsockopt SO_REUSEPORT", err
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

// LocalAddr implements Conn: the bound address, with the port the kernel
// picked if ConnConfig.Addr had port 0.
func (c *linuxConn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize implements Conn.
func (c *linuxConn) BatchSize() int { return c.batch }

// Offloads implements Conn.
func (c *linuxConn) Offloads() ConnOffloads {
	return ConnOffloads{GSO: c.gso.Load(), GRO: c.gro, SourcePorts: len(c.pool), Readers: len(c.rx), GSOKernelBug: c.gsoBug}
}

// Close implements Conn. It closes every socket; a pending ReadBatch on
// any reader returns an error that errors.Is net.ErrClosed. Later calls do
// nothing and return nil.
func (c *linuxConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var err error
	for _, r := range c.rx {
		if e := r.f.Close(); err == nil {
			err = e
		}
	}
	for _, f := range c.pool {
		if e := f.Close(); err == nil {
			err = e
		}
	}
	if e := c.closeJoined(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("vtep: close udp %v: %w", c.local, err)
	}
	return nil
}
