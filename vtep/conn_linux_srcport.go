package vtep

import (
	"golang.org/x/sys/unix"
)

var _ SourcePorter = (*linuxConn)(nil)

// SourcePort implements SourcePorter: the local port of the socket
// WriteBatch would pick for flow (socketOf).
func (c *linuxConn) SourcePort(flow uint32) uint16 {
	rc := c.tx[c.socketOf(&Message{Flow: flow})]
	port := c.local.Port()
	_ = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			return
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			port = uint16(a.Port)
		case *unix.SockaddrInet6:
			port = uint16(a.Port)
		}
	})
	return port
}
