//go:build linux

package vtep

// This file holds the unsafe half of the Linux UDP endpoint: the
// preallocated mmsghdr/iovec/sockaddr storage handed to recvmmsg and
// sendmmsg, the raw syscalls, and the allocation-free conversions between
// netip.AddrPort and kernel socket addresses.

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgs is the storage for one recvmmsg or sendmmsg call of up to
// len(hdrs) messages. hdrs[i] points at iovs[i] and names[i] for good, so a
// call only fills in buffers and addresses. The fields below the storage
// carry the arguments and results of one call through fn, which is a method
// value created once so that passing it to RawConn.Read/Write allocates
// nothing. An mmsgs is used by one goroutine at a time.
type mmsgs struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for sockaddr_in too

	off, n int        // argument: the call covers hdrs[off:off+n]
	got    int        // result: messages received or sent
	errno  unix.Errno // result: 0, or the call's error
	fn     func(fd uintptr) bool
}

func newMmsgs(n int, send bool) *mmsgs {
	m := &mmsgs{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range m.hdrs {
		h := &m.hdrs[i].Hdr
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
	}
	if send {
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
	m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
	m.hdrs[i].Hdr.Flags = 0
	m.hdrs[i].Len = 0
}

func (m *mmsgs) recv(fd uintptr) bool {
	return m.call(unix.SYS_RECVMMSG, fd)
}

func (m *mmsgs) send(fd uintptr) bool {
	return m.call(unix.SYS_SENDMMSG, fd)
}

// call runs recvmmsg or sendmmsg on hdrs[off:off+n]. It returns false (wait
// for the socket to become ready) on EAGAIN, and true with got or errno set
// otherwise.
func (m *mmsgs) call(trap, fd uintptr) bool {
	for {
		// recvmmsg's fifth argument is the timeout (NULL: none);
		// sendmmsg ignores it.
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&m.hdrs[m.off])),
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
