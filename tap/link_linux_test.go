package tap

// Tests of Place, InNetns, NetnsIDOf, TxDropped and Resolving. Those that
// need root run in a network namespace of their own (inNetns, as in
// tap_linux_test.go), and put their TAPs into named namespaces that they
// remove when they end.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (by ip
// netns add and netns.NewNamed).
const netnsDir = "/run/netns"

// netnsSeq numbers the named namespaces of this process.
var netnsSeq atomic.Int32

// namedNetns makes a named network namespace, removed when the test ends,
// and returns its path. The name holds the pid, so parallel runs never
// clash.
func namedNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ovltap-%d-%d", os.Getpid(), netnsSeq.Add(1))
	path := filepath.Join(netnsDir, name)
	t.Cleanup(func() {
		if err := removeNetns(path); err != nil {
			t.Errorf("remove network namespace %s: %v", path, err)
		}
	})
	// NewNamed moves the calling thread into the new namespace: give it a
	// thread of its own, and that back only once it is back where it was
	// (else it ends with the goroutine). A thread left behind would sit
	// in the namespace, which TestInNetns looks for.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			errc <- err // perhaps moved: keep the thread locked
			return
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("back from %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new network namespace %s: %v", name, err)
	}
	return path
}

// removeNetns removes the named namespace at path as ip netns del does:
// unmount, then remove the file. What is gone already is no error.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// handleIn returns a netlink handle in the network namespace at path,
// closed when the test ends.
func handleIn(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// hasPrefix reports whether addrs holds p, and with which flags.
func hasPrefix(addrs []netlink.Addr, p netip.Prefix) (flags int, ok bool) {
	for _, a := range addrs {
		if a.IPNet.String() == p.String() {
			return a.Flags, true
		}
	}
	return 0, false
}

// defaultRoutes returns the gateways of the default routes in routes.
func defaultRoutes(routes []netlink.Route) []string {
	var gws []string
	for _, r := range routes {
		if r.Dst == nil {
			gws = append(gws, r.Gw.String())
		} else if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			gws = append(gws, r.Gw.String())
		}
	}
	return gws
}

func TestPlace(t *testing.T) {
	v4 := netip.MustParsePrefix("10.250.10.5/24")
	v6 := netip.MustParsePrefix("fd00:250:10::5/64")
	for _, tc := range []struct {
		name    string
		addrs   []netip.Prefix
		gateway netip.Addr
	}{
		{"ipv4 gateway", []netip.Prefix{v4, v6}, netip.MustParseAddr("10.250.10.1")},
		{"ipv6 gateway", []netip.Prefix{v4, v6}, netip.MustParseAddr("fd00:250:10::1")},
		{"no gateway", []netip.Prefix{v4}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inNetns(t)
			path := namedNetns(t)
			name := tapName("pl")
			mac := [6]byte{0x02, 0x0e, 0x00, 0x00, 0x10, 0x05}
			dev := create(t, Config{Name: name, MTU: 1400, MAC: mac})
			p := Placement{Netns: path, IfName: "eth0", Addrs: tc.addrs, Gateway: tc.gateway}
			if err := Place(name, p); err != nil {
				t.Fatalf("Place(%s, %+v): %v", name, p, err)
			}

			if _, err := netlink.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
				t.Errorf("%s still in the original namespace (%v)", name, err)
			}
			h := handleIn(t, path)
			link, err := h.LinkByName("eth0")
			if err != nil {
				t.Fatalf("eth0 in %s: %v", path, err)
			}
			a := link.Attrs()
			if _, ok := link.(*netlink.Tuntap); !ok || a.Flags&net.FlagUp == 0 || a.MTU != 1400 ||
				a.HardwareAddr.String() != net.HardwareAddr(mac[:]).String() {
				t.Errorf("eth0: %s link, flags %v, MTU %d, MAC %v; want a tuntap, up, 1400, %v",
					link.Type(), a.Flags, a.MTU, a.HardwareAddr, net.HardwareAddr(mac[:]))
			}
			addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.addrs {
				flags, ok := hasPrefix(addrs, want)
				switch {
				case !ok:
					t.Errorf("address %v missing: have %v", want, addrs)
				case want.Addr().Is6() && flags&unix.IFA_F_NODAD == 0:
					t.Errorf("address %v has flags %#x, want IFA_F_NODAD", want, flags)
				}
			}
			for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
				routes, err := h.RouteList(link, fam)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				if tc.gateway.IsValid() && (fam == netlink.FAMILY_V4) == tc.gateway.Is4() {
					want = []string{tc.gateway.String()}
				}
				if got := defaultRoutes(routes); !slices.Equal(got, want) {
					t.Errorf("family %d: default routes via %v, want via %v", fam, got, want)
				}
			}

			// The link works there: the namespace's kernel answers ARP.
			arpRoundTrip(t, dev, readFrames(t, dev, 8), v4.Addr())
		})
	}
}

func TestPlaceLinkExists(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	first, second := tapName("x1"), tapName("x2")
	create(t, Config{Name: first})
	create(t, Config{Name: second})
	if err := Place(first, Placement{Netns: path, IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	err := Place(second, Placement{Netns: path, IfName: "eth0"})
	if !errors.Is(err, ErrLinkExists) {
		t.Fatalf("second Place as eth0: %v, want ErrLinkExists", err)
	}
	if _, err := netlink.LinkByName(second); err != nil {
		t.Errorf("%s was moved after all: %v", second, err)
	}
	if _, err := handleIn(t, path).LinkByName("eth0"); err != nil {
		t.Errorf("eth0 in %s: %v", path, err)
	}
}

func TestPlaceErrors(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	name := tapName("e")
	create(t, Config{Name: name})
	for _, tc := range []struct {
		name string
		link string
		p    Placement
	}{
		{"no such link", tapName("none"), Placement{Netns: path, IfName: "eth0"}},
		{"no such namespace", name, Placement{Netns: path + "-none", IfName: "eth0"}},
		{"no namespace", name, Placement{IfName: "eth0"}},
		{"no name", name, Placement{Netns: path}},
		{"name too long", name, Placement{Netns: path, IfName: "eth0123456789012"}},
		{"name template", name, Placement{Netns: path, IfName: "eth%d"}},
		{"name with slash", name, Placement{Netns: path, IfName: "a/b"}},
		{"bad link name", "", Placement{Netns: path, IfName: "eth0"}},
		{"invalid address", name, Placement{Netns: path, IfName: "eth0", Addrs: []netip.Prefix{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Place(tc.link, tc.p)
			if err == nil || errors.Is(err, ErrLinkExists) {
				t.Fatalf("Place(%q, %+v) = %v, want an error other than ErrLinkExists", tc.link, tc.p, err)
			}
			t.Log(err)
		})
	}
	// Nothing failed after the move: the TAP stays here.
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

func TestInNetns(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	want, err := NetnsIDOf(path)
	if err != nil {
		t.Fatal(err)
	}
	here, err := NetnsIDOf("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if want == here || want == (NetnsID{}) {
		t.Fatalf("NetnsIDOf: target %v, this thread's %v; want distinct and non-zero", want, here)
	}

	var got NetnsID
	errFn := errors.New("fn failed")
	err = InNetns(path, func() (err error) {
		got, err = NetnsIDOf("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		return errFn
	})
	if !errors.Is(err, errFn) {
		t.Fatalf("InNetns = %v, want fn's error", err)
	}
	if got != want {
		t.Errorf("fn ran in namespace %v, want %v", got, want)
	}
	// InNetns returns once its thread is out of the namespace.
	if tids := threadsIn(t, want); len(tids) > 0 {
		t.Errorf("threads %v are still in %s", tids, path)
	}

	ran := false
	err = InNetns(path+"-none", func() error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("InNetns of a missing namespace = %v, fn ran %v; want an error, fn not run", err, ran)
	}
}

// threadsIn returns the threads of this process in the namespace id.
func threadsIn(t *testing.T, id NetnsID) []string {
	t.Helper()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, tid := range tids {
		got, err := NetnsIDOf(filepath.Join("/proc/self/task", tid.Name(), "ns/net"))
		if err == nil && got == id { // err: the thread ended meanwhile
			in = append(in, tid.Name())
		}
	}
	return in
}

func TestNetnsIDOf(t *testing.T) {
	inNetns(t)
	file := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     func(t *testing.T) string // made by the test
		notExist bool                      // the error must wrap fs.ErrNotExist
	}{
		{"removed namespace", func(t *testing.T) string {
			path := namedNetns(t)
			if _, err := NetnsIDOf(path); err != nil {
				t.Fatalf("before removal: %v", err)
			}
			if err := removeNetns(path); err != nil {
				t.Fatal(err)
			}
			return path
		}, true},
		{"unmounted namespace", func(t *testing.T) string {
			path := namedNetns(t)
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			return path
		}, false},
		{"plain file", func(*testing.T) string { return file }, false},
		{"mount namespace", func(*testing.T) string { return "/proc/self/ns/mnt" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			id, err := NetnsIDOf(path)
			if err == nil || id != (NetnsID{}) || tc.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("NetnsIDOf(%s) = %v, %v; want zero and an error (not exist: %v)", path, id, err, tc.notExist)
			}
			t.Log(err)
		})
	}

	// One namespace, two names: one ID.
	path := namedNetns(t)
	byPath, err := NetnsIDOf(path)
	if err != nil || byPath == (NetnsID{}) {
		t.Fatalf("NetnsIDOf(%s) = %v, %v", path, byPath, err)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	byFD, err := NetnsIDOf(fmt.Sprintf("/proc/self/fd/%d", int(ns)))
	if err != nil || byFD != byPath {
		t.Errorf("NetnsIDOf through an open fd = %v, %v; want %v, as through its path", byFD, err, byPath)
	}
}

// overflow fills the queue of the TAP ifname, in the calling thread's
// namespace, which no one reads: it shortens the queue to qlen frames and
// sends sends UDP datagrams to a neighbour of addr behind it.
func overflow(ifname string, addr netip.Prefix, qlen, sends int) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetTxQLen(l, qlen); err != nil { // the TAP's ring follows
		return err
	}
	peer := addr.Addr().Next()
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: peer.AsSlice(), State: netlink.NUD_PERMANENT,
		HardwareAddr: net.HardwareAddr{0x02, 0x0e, 0, 0, 0, 0x99}}
	if err := netlink.NeighSet(n); err != nil { // no ARP: every datagram goes to the TAP
		return err
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, 9)))
	if err != nil {
		return err
	}
	defer c.Close()
	for range sends {
		if _, err := c.Write([]byte("overflow")); err != nil {
			return err
		}
	}
	return nil
}

func TestTxDropped(t *testing.T) {
	const qlen, sends = 4, 64
	for _, tc := range []struct {
		name  string
		named bool // in a named namespace, or ("") the test's own
	}{
		{"this namespace", false},
		{"named namespace", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inNetns(t)
			addr := netip.MustParsePrefix("10.250.11.1/24")
			name := tapName("d")
			create(t, Config{Name: name, Addresses: []netip.Prefix{addr}, Up: true}) // never read
			path, ifname := "", name
			run := func(fn func() error) error { return fn() } // this thread is in the test's namespace
			if tc.named {
				path, ifname = namedNetns(t), "eth0"
				if err := Place(name, Placement{Netns: path, IfName: ifname, Addrs: []netip.Prefix{addr}}); err != nil {
					t.Fatal(err)
				}
				run = func(fn func() error) error { return InNetns(path, fn) }
			}
			before, err := TxDropped(path, ifname)
			if err != nil {
				t.Fatalf("TxDropped(%q, %s): %v", path, ifname, err)
			}
			if err := run(func() error { return overflow(ifname, addr, qlen, sends) }); err != nil {
				t.Fatal(err)
			}
			// At most qlen fit in the queue (others, such as IPv6 router
			// solicitations, may have taken places): the rest are dropped.
			var got uint64
			for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
				now, err := TxDropped(path, ifname)
				if err != nil {
					t.Fatal(err)
				}
				if got = now - before; got >= sends-qlen || time.Now().After(deadline) {
					break
				}
			}
			if got < sends-qlen {
				t.Errorf("TxDropped rose by %d after %d frames into a %d-frame queue, want at least %d", got, sends, qlen, sends-qlen)
			}
		})
	}
	t.Run("missing link", func(t *testing.T) {
		inNetns(t)
		if _, err := TxDropped("", tapName("none")); err == nil {
			t.Error("TxDropped of a missing link: no error")
		}
	})
}

func TestResolving(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	name := tapName("r")
	create(t, Config{Name: name})
	addrs := []netip.Prefix{netip.MustParsePrefix("10.250.12.1/24"), netip.MustParsePrefix("fd00:250:12::1/64")}
	if err := Place(name, Placement{Netns: path, IfName: "eth0", Addrs: addrs}); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolving(path, "eth0"); err != nil || len(got) != 0 {
		t.Fatalf("Resolving before any lookup = %v, %v; want none", got, err)
	}

	h := handleIn(t, path)
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0x02, 0x0e, 0, 0, 0x12, 0x01}
	// Entries set by hand keep their state: no timer runs for them, and,
	// externally learned, the kernel's garbage collection (which may take
	// an idle FAILED entry once the host's tables are big) leaves them.
	for _, n := range []struct {
		ip    string
		state int
	}{
		{"10.250.12.7", netlink.NUD_INCOMPLETE},
		{"fd00:250:12::7", netlink.NUD_FAILED},
		{"10.250.12.8", netlink.NUD_FAILED},
		{"10.250.12.9", netlink.NUD_PERMANENT},
		{"fd00:250:12::9", netlink.NUD_PERMANENT},
	} {
		neigh := &netlink.Neigh{LinkIndex: link.Attrs().Index, IP: net.ParseIP(n.ip), State: n.state,
			Flags: netlink.NTF_EXT_LEARNED}
		if n.state == netlink.NUD_PERMANENT {
			neigh.HardwareAddr = mac
		}
		if err := h.NeighAdd(neigh); err != nil {
			t.Fatalf("add neighbour %s: %v", n.ip, err)
		}
	}
	got, err := Resolving(path, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	want := []netip.Addr{netip.MustParseAddr("10.250.12.7"), netip.MustParseAddr("10.250.12.8"),
		netip.MustParseAddr("fd00:250:12::7")}
	if !slices.Equal(got, want) {
		t.Errorf("Resolving = %v, want %v", got, want)
	}

	if _, err := Resolving(path, "eth1"); err == nil {
		t.Error("Resolving of a missing link: no error")
	}
	if _, err := Resolving(path+"-none", "eth0"); err == nil {
		t.Error("Resolving in a missing namespace: no error")
	}
}

// TestPlaceSecondNetwork: a second link with a gateway placed where a
// default route exists keeps that route (a container's first network stays
// its way out); a link placed Down is left down, bare.
func TestPlaceSecondNetwork(t *testing.T) {
	inNetns(t)
	path := namedNetns(t)
	first, second, bare := tapName("s1"), tapName("s2"), tapName("s3")
	create(t, Config{Name: first})
	create(t, Config{Name: second})
	create(t, Config{Name: bare})
	if err := Place(first, Placement{Netns: path, IfName: "eth0", Addrs: []netip.Prefix{netip.MustParsePrefix("10.250.20.5/24")},
		Gateway: netip.MustParseAddr("10.250.20.1")}); err != nil {
		t.Fatal(err)
	}
	if err := Place(second, Placement{Netns: path, IfName: "eth1", Addrs: []netip.Prefix{netip.MustParsePrefix("10.250.21.5/24")},
		Gateway: netip.MustParseAddr("10.250.21.1")}); err != nil {
		t.Fatalf("second network: %v", err)
	}
	h := handleIn(t, path)
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if got := defaultRoutes(routes); !slices.Equal(got, []string{"10.250.20.1"}) {
		t.Errorf("default routes via %v, want the first network's alone", got)
	}
	if err := Place(bare, Placement{Netns: path, IfName: "ovd1", Down: true}); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("ovd1")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if link.Attrs().Flags&net.FlagUp != 0 || err != nil || len(addrs) != 0 {
		t.Errorf("a Down placement: flags %v, addresses %v (%v); want down and bare", link.Attrs().Flags, addrs, err)
	}
}
