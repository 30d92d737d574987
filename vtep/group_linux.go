//go:build linux

package vtep

// This file holds the Linux conn's side of multicast mode (group.go): the
// socket that joins the group and receives what is sent to it, and the
// multicast options of the sending sockets.
//
// Design notes: the conn's receive sockets are bound to the node's unicast
// address, so the kernel never hands them datagrams sent to a group (a
// bound address must match the destination). The group gets a socket of
// its own, bound to the group address and the VXLAN port: it takes only
// what is sent to the group, and IP_MULTICAST_ALL off keeps other groups
// that other sockets of the host joined away from it. Binding to the
// wildcard address instead would clash with the unicast sockets' port and
// hand every datagram to both.

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// joinedGroup is a group the conn receives: its socket, and how many
// JoinGroup calls hold it. The group of ConnConfig.Group is fixed: its
// reader is one of Readers, and no LeaveGroup closes it.
type joinedGroup struct {
	r     *connReader
	refs  int
	fixed bool
}

var _ GroupJoiner = (*linuxConn)(nil)

// joinGroup joins the group of ConnConfig.Group at Listen: its socket is
// one of the conn's readers. On failure it returns the operation and
// errno; the socket, if opened, is closed.
func (c *linuxConn) joinGroup(cfg ConnConfig) (*os.File, error) {
	r, err := c.openGroup(cfg.Group.Unmap(), cfg.GroupInterface, cfg.GroupTTL)
	if err != nil {
		return nil, err
	}
	c.rx = append(c.rx, r)
	c.readers = append(c.readers, r)
	c.joined = map[netip.Addr]*joinedGroup{r.group: {r: r, fixed: true}}
	return r.f, nil
}

// JoinGroup implements GroupJoiner.
func (c *linuxConn) JoinGroup(group netip.Addr, ifindex, ttl int) (BatchReader, error) {
	g := group.Unmap()
	c.gmu.Lock()
	defer c.gmu.Unlock()
	if c.closed.Load() {
		return nil, c.errClosed
	}
	if j := c.joined[g]; j != nil {
		j.refs++
		return nil, nil
	}
	r, err := c.openGroup(g, ifindex, ttl)
	if err != nil {
		return nil, fmt.Errorf("vtep: join group %v: %w", g, err)
	}
	if c.joined == nil {
		c.joined = make(map[netip.Addr]*joinedGroup)
	}
	c.joined[g] = &joinedGroup{r: r, refs: 1}
	return r, nil
}

// LeaveGroup implements GroupJoiner.
func (c *linuxConn) LeaveGroup(group netip.Addr) error {
	g := group.Unmap()
	c.gmu.Lock()
	defer c.gmu.Unlock()
	j := c.joined[g]
	if j == nil || (j.refs == 0 && !j.fixed) {
		return fmt.Errorf("vtep: leave group %v: not joined", g)
	}
	if j.refs > 0 {
		j.refs--
	}
	if j.refs > 0 || j.fixed {
		return nil
	}
	delete(c.joined, g)
	j.r.left.Store(true)
	if err := j.r.f.Close(); err != nil {
		return fmt.Errorf("vtep: leave group %v: %w", g, err)
	}
	return nil
}

// closeJoined closes the sockets of the groups joined after Listen. Close
// calls it after setting closed, so no JoinGroup adds one later.
func (c *linuxConn) closeJoined() error {
	c.gmu.Lock()
	defer c.gmu.Unlock()
	var err error
	for g, j := range c.joined {
		if j.fixed {
			continue // one of rx
		}
		if e := j.r.f.Close(); err == nil {
			err = e
		}
		delete(c.joined, g)
	}
	return err
}

// openGroup checks g, sets the multicast options of every sending socket
// (the last group joined picks the interface and TTL of them all), and
// opens g's receive socket, joined on ifindex. On failure it returns the
// operation and errno; the socket, if opened, is closed.
func (c *linuxConn) openGroup(g netip.Addr, ifindex, ttl int) (*connReader, error) {
	switch {
	case !g.IsMulticast():
		return nil, fmt.Errorf("group %v is not a multicast address", g)
	case g.Is6() != c.v6:
		return nil, fmt.Errorf("group %v and bound address %v are of different IP families", g, c.local.Addr())
	case ttl < 0 || ttl > 255:
		return nil, fmt.Errorf("group TTL %d out of range [0, 255]", ttl)
	}
	if ttl == 0 {
		ttl = 1
	}
	for _, rc := range c.tx {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setMulticastSend(int(fd), c.v6, ifindex, ttl) }); err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, serr
		}
	}
	var sa unix.Sockaddr
	if c.v6 {
		sa = &unix.SockaddrInet6{Port: int(c.local.Port()), ZoneId: uint32(ifindex), Addr: g.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(c.local.Port()), Addr: g.As4()}
	}
	fd, op, err := udpSocket(sa, c.v6, false, c.sockbuf, 0, false)
	if err != nil {
		return nil, os.NewSyscallError(op, err)
	}
	if op, err := joinMembership(fd, g, ifindex); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError(op, err)
	}
	gro := c.gro && enableGRO(fd)
	f := os.NewFile(uintptr(fd), "udp:"+netip.AddrPortFrom(g, c.local.Port()).String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &connReader{c: c, f: f, rc: rc, rd: newMmsgs(c.batch, false, gro), group: g}, nil
}

// joinMembership joins group g on interface ifindex (0: the kernel picks
// by route) and turns IP_MULTICAST_ALL off, so only g is received.
func joinMembership(fd int, g netip.Addr, ifindex int) (op string, err error) {
	if g.Is6() {
		if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP,
			&unix.IPv6Mreq{Multiaddr: g.As16(), Interface: uint32(ifindex)}); err != nil {
			return "setsockopt IPV6_JOIN_GROUP", err
		}
		// Kernel 4.20 and later; older ones deliver as if on, which the
		// group address bound already narrows to this group's port.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
		return "", nil
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
		&unix.IPMreqn{Multiaddr: g.As4(), Ifindex: int32(ifindex)}); err != nil {
		return "setsockopt IP_ADD_MEMBERSHIP", err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		return "setsockopt IP_MULTICAST_ALL", err
	}
	return "", nil
}

// setMulticastSend makes a sending socket send to groups out of ifindex (0:
// by route) with the given TTL (hop limit), and not loop them back to this
// host: the node's own floods must not come back to it.
func setMulticastSend(fd int, v6 bool, ifindex, ttl int) error {
	set := func(level, opt, v int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return os.NewSyscallError("setsockopt "+name, err)
		}
		return nil
	}
	if v6 {
		if ifindex != 0 {
			if err := set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex, "IPV6_MULTICAST_IF"); err != nil {
				return err
			}
		}
		if err := set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0, "IPV6_MULTICAST_LOOP"); err != nil {
			return err
		}
		return set(unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, ttl, "IPV6_MULTICAST_HOPS")
	}
	if ifindex != 0 {
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)}); err != nil {
			return os.NewSyscallError("setsockopt IP_MULTICAST_IF", err)
		}
	}
	if err := set(unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP"); err != nil {
		return err
	}
	return set(unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, ttl, "IP_MULTICAST_TTL")
}
