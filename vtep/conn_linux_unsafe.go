//go:build linux

package vtep

// This file holds the unsafe half of the Linux UDP endpoint: the
// preallocated mmsghdr/iovec/sockaddr/cmsg storage handed to recvmmsg and
// sendmmsg, the raw syscalls, and the allocation-free conversions between
// netip.AddrPort and kernel socket addresses.

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgs is the storage for one recvmmsg or sendmmsg call of up to
// len(hdrs) messages. hdrs[i] points at iovs[i] and names[i] for good, and
// at cmsgs[i] when it carries a control message, so a call only fills in
// buffers, addresses and segment sizes. The fields below the storage carry
// the arguments and results of one call through fn, which is a method value
// created once so that passing it to RawConn.Read/Write allocates nothing.
// An mmsgs is used by one goroutine at a time.
type mmsgs struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for sockaddr_in too
	cmsgs []segCmsg               // send, or receive with GRO: one each
	owner []int32                 // send: the index in msgs of message i

	off, n int        // argument: the call covers hdrs[off:off+n]
	got    int        // result: messages received or sent
	errno  unix.Errno // result: 0, or the call's error
	fn     func(fd uintptr) bool
}

// segCmsg is a control message holding a UDP segment size: a UDP_SEGMENT
// (__u16) on send, a UDP_GRO (int) on receive. Its layout is the kernel's
// CMSG_DATA: the data follows the header at CMSG_ALIGN(sizeof(cmsghdr)),
// which is the header's size on both 32- and 64-bit systems, and the
// struct's size is CMSG_SPACE(sizeof(int)).
type segCmsg struct {
	hdr  unix.Cmsghdr
	data [4]byte // native byte order
}

const (
	sizeofSegCmsg = int(unsafe.Sizeof(segCmsg{}))
	// The lengths the kernel checks (udp_cmsg_send wants exactly
	// CMSG_LEN(sizeof(__u16))) and writes (put_cmsg of an int).
	segmentCmsgLen = unix.SizeofCmsghdr + 2
	groCmsgLen     = unix.SizeofCmsghdr + 4
)

// newMmsgs makes the storage for n messages; segs adds a control message
// buffer to each (always for send, for receive with GRO).
func newMmsgs(n int, send, segs bool) *mmsgs {
	m := &mmsgs{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	if segs {
		m.cmsgs = make([]segCmsg, n)
	}
	for i := range m.hdrs {
		h := &m.hdrs[i].Hdr
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
	}
	if send {
		m.owner = make([]int32, n)
		m.fn = m.send
	} else {
		m.fn = m.recv
	}
	return m
}

// setBuf points message i at b.
func (m *mmsgs) setBuf(i int, b []byte) {
	m.iovs[i].Base = unsafe.SliceData(b)
	m.iovs[i].SetLen(len(b))
}

// release drops the references to the first n callers' buffers so that the
// storage does not keep them alive.
func (m *mmsgs) release(n int) {
	for i := range m.iovs[:n] {
		m.iovs[i].Base = nil
	}
}

// resetRecv prepares message i to receive a datagram.
func (m *mmsgs) resetRecv(i int) {
	h := &m.hdrs[i].Hdr
	h.Namelen = unix.SizeofSockaddrInet6
	h.Flags = 0
	if m.cmsgs != nil {
		h.Control = (*byte)(unsafe.Pointer(&m.cmsgs[i]))
		h.SetControllen(sizeofSegCmsg)
	}
	m.hdrs[i].Len = 0
}

// segment returns the UDP_GRO segment size of received message i, or 0 if
// the kernel did not coalesce it. The buffer has room for one control
// message, and UDP_GRO is the only one the socket asks for.
func (m *mmsgs) segment(i int) int {
	if m.cmsgs == nil || m.hdrs[i].Hdr.Controllen < groCmsgLen {
		return 0
	}
	c := &m.cmsgs[i]
	if c.hdr.Level != unix.SOL_UDP || c.hdr.Type != unix.UDP_GRO {
		return 0
	}
	return int(*(*int32)(unsafe.Pointer(&c.data)))
}

// setSegment makes message i a UDP GSO message of size-byte segments.
func (m *mmsgs) setSegment(i, size int) {
	c := &m.cmsgs[i]
	c.hdr = unix.Cmsghdr{Level: unix.SOL_UDP, Type: unix.UDP_SEGMENT}
	c.hdr.SetLen(segmentCmsgLen)
	*(*uint16)(unsafe.Pointer(&c.data)) = uint16(size)
	h := &m.hdrs[i].Hdr
	h.Control = (*byte)(unsafe.Pointer(c))
	h.SetControllen(sizeofSegCmsg)
}

// clearSegment makes message i a plain datagram.
func (m *mmsgs) clearSegment(i int) {
	h := &m.hdrs[i].Hdr
	h.Control = nil
	h.SetControllen(0)
}

// isSegmented reports whether message i is a UDP GSO message.
func (m *mmsgs) isSegmented(i int) bool { return m.hdrs[i].Hdr.Control != nil }

func (m *mmsgs) recv(fd uintptr) bool {
	return m.call(unix.SYS_RECVMMSG, fd)
}

func (m *mmsgs) send(fd uintptr) bool {
	return m.call(unix.SYS_SENDMMSG, fd)
}

// call runs recvmmsg or sendmmsg on hdrs[off:off+n]. It returns false (wait
// for the socket to become ready) on EAGAIN, and true with got or errno set
// otherwise.
//
// It is a raw syscall, without the runtime's entersyscall/exitsyscall: with
// MSG_DONTWAIT it never waits, and waiting is the netpoller's job. A plain
// Syscall lets sysmon take the P away from a call that runs longer than
// 20 us, which a sendmmsg does whenever the kernel runs the receiver's
// input in it (a veth, loopback), and hand it to another thread it has to
// wake: 4,000-5,000 futex wake-ups per GB moved and a third more context
// switches, for nothing. gVisor's rawfile does the same for its
// non-blocking reads and writes.
func (m *mmsgs) call(trap, fd uintptr) bool {
	for {
		// recvmmsg's fifth argument is the timeout (NULL: none);
		// sendmmsg ignores it.
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&m.hdrs[m.off])),
			uintptr(m.n), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.got, m.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.got, m.errno = 0, e
			return true
		}
	}
}

// setAddr stores ap as message i's destination in the form a socket of the
// given family takes: IPv4 addresses as v4-mapped on an AF_INET6 socket,
// and IPv6 link-local destinations in scope. It reports the errno to skip
// the message with: EINVAL for an invalid address or port 0, EAFNOSUPPORT
// for an IPv6 destination on an AF_INET socket.
func (m *mmsgs) setAddr(i int, ap netip.AddrPort, v6 bool, scope uint32) unix.Errno {
	a := ap.Addr().Unmap()
	if !a.IsValid() || ap.Port() == 0 {
		return unix.EINVAL
	}
	if !v6 {
		if !a.Is4() {
			return unix.EAFNOSUPPORT
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.names[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		putPort(&sa.Port, ap.Port())
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		return 0
	}
	sa := &m.names[i]
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()} // As16 maps IPv4
	if a.Is6() && a.IsLinkLocalUnicast() {
		sa.Scope_id = scope
	}
	putPort(&sa.Port, ap.Port())
	m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
	return 0
}

// addr returns the source address of received message i. IPv4-mapped IPv6
// addresses are unmapped; an IPv6 zone is dropped (building one allocates).
func (m *mmsgs) addr(i int) netip.AddrPort {
	return rawToAddrPort(&m.names[i])
}

// datagramLen returns the length of message i as the kernel reported it.
func (m *mmsgs) datagramLen(i int) int { return int(m.hdrs[i].Len) }

func rawToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), getPort(&sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), getPort(&sa.Port))
	}
	return netip.AddrPort{}
}

// putPort and getPort store and load a port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}
