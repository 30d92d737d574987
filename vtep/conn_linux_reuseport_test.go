//go:build linux

package vtep

// Tests of how Listen binds a SO_REUSEPORT receive group
// (ConnConfig.Readers): the port-in-use probe, the port shared by every
// socket, their options, and the retry for a port of the kernel's choosing.
// On loopback addresses; none needs root.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenReadersPortInUse checks that a port held by any socket, a
// receive group or not, is refused with EADDRINUSE to a conn with several
// receive sockets, and that a port a group holds is refused to every
// socket without SO_REUSEPORT.
func TestListenReadersPortInUse(t *testing.T) {
	type opener struct {
		name  string
		group bool // binds a SO_REUSEPORT receive group
		open  func(addr netip.AddrPort) (port uint16, closeFn func(), err error)
	}
	ovlsw := func(readers int) func(netip.AddrPort) (uint16, func(), error) {
		return func(addr netip.AddrPort) (uint16, func(), error) {
			cfg := connReaders(addr.String(), readers)
			c, err := Listen(cfg)
			if err != nil {
				return 0, nil, err
			}
			return c.LocalAddr().Port(), func() { c.Close() }, nil
		}
	}
	listenUDP := func(addr netip.AddrPort) (uint16, func(), error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return 0, nil, err
		}
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), func() { c.Close() }, nil
	}
	// A socket of our own user with SO_REUSEPORT: a group would join it
	// without the probe.
	reusePort := func(addr netip.AddrPort) (uint16, func(), error) {
		a := addr.Addr()
		var sa unix.Sockaddr
		family := unix.AF_INET
		if a.Is6() {
			sa, family = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}, unix.AF_INET6
		} else {
			sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, nil, err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return 0, nil, err
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return 0, nil, err
		}
		bound, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return 0, nil, err
		}
		return boundPort(bound), func() { unix.Close(fd) }, nil
	}
	holders := []opener{
		{"ovlsw with 4 readers", true, ovlsw(4)},
		{"ovlsw with 1 reader", false, ovlsw(1)},
		{"net.ListenUDP", false, listenUDP},
		{"SO_REUSEPORT socket", false, reusePort},
	}
	contenders := []opener{
		{"ovlsw with 4 readers", true, ovlsw(4)},
		{"ovlsw with 2 readers", true, ovlsw(2)},
		{"ovlsw with 1 reader", false, ovlsw(1)},
		{"net.ListenUDP", false, listenUDP},
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, h := range holders {
			for _, c := range contenders {
				if !h.group && !c.group {
					continue // no group on either side: TestListenErrors
				}
				t.Run(host+"/"+h.name+"/then "+c.name, func(t *testing.T) {
					port, closeHolder, err := h.open(netip.AddrPortFrom(netip.MustParseAddr(host), 0))
					if err != nil {
						if host == "::1" {
							t.Skipf("no IPv6 loopback: %v", err)
						}
						t.Fatalf("holder: %v", err)
					}
					defer closeHolder()
					_, closeC, err := c.open(netip.AddrPortFrom(netip.MustParseAddr(host), port))
					if err == nil {
						closeC()
						t.Fatalf("%s bound port %d, which %s holds", c.name, port, h.name)
					}
					if !errors.Is(err, syscall.EADDRINUSE) {
						t.Errorf("got %v, want an error that is EADDRINUSE", err)
					}
				})
			}
		}
	}
}

// TestListenReadersSockets checks that with port 0 every receive socket
// shares the port picked, and that every one has the bound socket's
// options, SO_REUSEPORT included; with one reader there is no
// SO_REUSEPORT.
func TestListenReadersSockets(t *testing.T) {
	for _, tt := range []struct {
		addr    string
		readers int
	}{
		{"127.0.0.1:0", 3},
		{"[::1]:0", 3},
		{"[::]:0", 2}, // dual-stack: IPV6_V6ONLY off on each
		{"127.0.0.1:0", 1},
		{"127.0.0.1:0", 0},
	} {
		t.Run(fmt.Sprintf("%s/%d readers", tt.addr, tt.readers), func(t *testing.T) {
			cfg := connReaders(tt.addr, tt.readers)
			c := connListenOrSkip(t, cfg).(*linuxConn)
			want := max(tt.readers, 1)
			if c.LocalAddr().Port() == 0 {
				t.Fatalf("LocalAddr = %v, want a port", c.LocalAddr())
			}
			rs := c.Readers()
			if len(rs) != want || len(c.rx) != want {
				t.Fatalf("len(Readers()) = %d, %d sockets; want %d", len(rs), len(c.rx), want)
			}
			if rs[0] != Conn(c) {
				t.Errorf("Readers()[0] = %T, want the conn itself", rs[0])
			}
			if got := c.Offloads().Readers; got != want {
				t.Errorf("Offloads().Readers = %d, want %d", got, want)
			}
			if s := c.Offloads().String(); strings.Contains(s, "readers=") != (want > 1) {
				t.Errorf("Offloads().String() = %q", s)
			}
			get := func(i int, name string, level, opt int) int {
				t.Helper()
				var v int
				var gerr error
				if err := c.rx[i].rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil || gerr != nil {
					t.Fatalf("socket %d: %s: %v %v", i, name, err, gerr)
				}
				return v
			}
			type sockopt struct {
				name       string
				level, opt int
			}
			opts := []sockopt{
				{"SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF},
				{"SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF},
				{"UDP_GRO", unix.SOL_UDP, unix.UDP_GRO},
			}
			if c.v6 {
				opts = append(opts, sockopt{"IPV6_MTU_DISCOVER", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER},
					sockopt{"IPV6_V6ONLY", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY})
			} else {
				opts = append(opts, sockopt{"IP_MTU_DISCOVER", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER})
			}
			for i := range c.rx {
				var sa unix.Sockaddr
				var serr error
				if err := c.rx[i].rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil || serr != nil {
					t.Fatal(err, serr)
				}
				if got := boundPort(sa); got != c.LocalAddr().Port() {
					t.Errorf("socket %d: port %d, want %d", i, got, c.LocalAddr().Port())
				}
				if got := get(i, "SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT); (got != 0) != (want > 1) {
					t.Errorf("socket %d: SO_REUSEPORT = %d with %d readers", i, got, want)
				}
				for _, o := range opts {
					got, first := get(i, o.name, o.level, o.opt), get(0, o.name, o.level, o.opt)
					if got != first {
						t.Errorf("socket %d: %s = %d, socket 0 has %d", i, o.name, got, first)
					}
				}
			}
			// What the first socket has, every socket has; check it.
			if c.v6 {
				if got := get(0, "IPV6_MTU_DISCOVER", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER); got != unix.IPV6_PMTUDISC_DO {
					t.Errorf("IPV6_MTU_DISCOVER = %d, want IPV6_PMTUDISC_DO", got)
				}
				if dual := c.LocalAddr().Addr().IsUnspecified(); dual && get(0, "IPV6_V6ONLY", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) != 0 {
					t.Errorf("IPV6_V6ONLY on for %v", c.LocalAddr())
				}
			} else if got := get(0, "IP_MTU_DISCOVER", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); got != unix.IP_PMTUDISC_DO {
				t.Errorf("IP_MTU_DISCOVER = %d, want IP_PMTUDISC_DO", got)
			}
			if gro := get(0, "UDP_GRO", unix.SOL_UDP, unix.UDP_GRO) != 0; gro != c.Offloads().GRO {
				t.Errorf("UDP_GRO on = %v, Offloads().GRO = %v", gro, c.Offloads().GRO)
			}
		})
	}
}

// TestListenReadersErrors checks the range of ConnConfig.Readers.
func TestListenReadersErrors(t *testing.T) {
	for _, n := range []int{-1, maxReaders + 1} {
		cfg := connReaders("127.0.0.1:0", n)
		if c, err := Listen(cfg); err == nil {
			c.Close()
			t.Errorf("Listen with Readers %d succeeded", n)
		}
	}
	c := connListenConfig(t, connReaders("127.0.0.1:0", maxReaders))
	if got := len(c.Readers()); got != maxReaders {
		t.Errorf("len(Readers()) = %d, want %d", got, maxReaders)
	}
}

// TestReuseportGroupRetry checks bindGroup's handling of a port taken between
// the probe and the group's bind: a port of the kernel's choosing is
// picked again, a few times; a port asked for is not. What was opened
// for a failed attempt is closed.
func TestReuseportGroupRetry(t *testing.T) {
	inUse := os.NewSyscallError("bind", unix.EADDRINUSE)
	for _, tt := range []struct {
		name       string
		port       uint16
		failures   int   // how many attempts fail, at their second socket
		failErr    error // what it fails with
		wantErr    error // nil: success
		wantProbes int
	}{
		{"port 0, no race", 0, 0, nil, nil, 1},
		{"port 0, one race", 0, 1, inUse, nil, 2},
		{"port 0, always taken", 0, groupAttempts, inUse, unix.EADDRINUSE, groupAttempts},
		{"port 0, another error", 0, 1, os.NewSyscallError("bind", unix.EACCES), unix.EACCES, 1},
		{"fixed port, race", 4789, 1, inUse, unix.EADDRINUSE, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opened []*os.File
			probes, nth, failed := 0, 0, 0
			probe := func(port uint16) (uint16, error) {
				probes++
				nth = 0
				if port == 0 {
					return uint16(40000 + probes), nil
				}
				return port, nil
			}
			member := func(port uint16) (*connReader, bool, error) {
				// The second socket of an attempt fails while failures last.
				if nth++; nth == 2 && failed < tt.failures {
					failed++
					return nil, false, tt.failErr
				}
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				w.Close()
				opened = append(opened, r)
				return &connReader{f: r}, true, nil
			}
			rx, port, gso, err := bindGroup(3, tt.port, probe, member)
			if probes != tt.wantProbes {
				t.Errorf("%d probes, want %d", probes, tt.wantProbes)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("bindGroup: %v, want an error that is %v", err, tt.wantErr)
				}
				for i, f := range opened {
					if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
						t.Errorf("socket %d left open", i)
					}
				}
				return
			}
			if err != nil || len(rx) != 3 || !gso || port == 0 {
				t.Fatalf("bindGroup = %d sockets, port %d, gso %v, %v", len(rx), port, gso, err)
			}
			if tt.port != 0 && port != tt.port {
				t.Errorf("port %d, want %d", port, tt.port)
			}
			for i, f := range opened[:len(opened)-3] {
				if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
					t.Errorf("socket %d of a failed attempt left open", i)
				}
			}
			for _, r := range rx {
				r.f.Close()
			}
		})
	}
}
