package tap

// Tests of Create and a real TAP. Those that need root run in a network
// namespace of their own and skip without root or /dev/net/tun (fail, with
// OVLSW_REQUIRE_ROOT_TESTS=1, as CI sets).

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRootEnv turns the skip of a root test into a failure.
const requireRootEnv = "OVLSW_REQUIRE_ROOT_TESTS"

// inNetns skips the test unless it can make TAPs, then moves the test's
// goroutine, locked to its thread, into a new network namespace until the
// test ends. Everything made there dies with it.
func inNetns(t *testing.T) {
	t.Helper()
	why := ""
	if uid := os.Geteuid(); uid != 0 {
		why = fmt.Sprintf("needs root, running as uid %d", uid)
	} else if _, err := os.Stat(tunPath); err != nil {
		why = fmt.Sprintf("needs %s: %v", tunPath, err)
	}
	if why != "" {
		if os.Getenv(requireRootEnv) == "1" {
			t.Fatalf("root test cannot run (%s) and %s=1 forbids skipping", why, requireRootEnv)
		}
		t.Skipf("root test skipped: %s (set %s=1 to make this a failure)", why, requireRootEnv)
	}
	// Cleanups run on the test's goroutine, so the thread is still ours.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // also moves this thread into it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// The thread cannot go back: leave it locked, so the
			// runtime ends it with the goroutine.
			t.Errorf("restore netns: %v", err)
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
}

// tapName returns an interface name unique to this process.
func tapName(suffix string) string { return fmt.Sprintf("tt%d%s", os.Getpid(), suffix) }

// create makes a TAP, closed when the test ends.
func create(t *testing.T, cfg Config) Device {
	t.Helper()
	var dev Device
	t.Cleanup(func() {
		if dev != nil {
			dev.Close()
		}
	})
	dev, err := Create(cfg)
	if err != nil {
		t.Fatalf("Create(%+v): %v", cfg, err)
	}
	return dev
}

// readFrames reads from dev until it is closed and sends a copy of every
// frame on the channel it returns (dropping what the test does not take).
// The reader is stopped, and dev closed, when the test ends.
func readFrames(t *testing.T, dev Device, offset int) <-chan []byte {
	frames, done := make(chan []byte, 256), make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := makeBufs(dev.BatchSize(), offset+frameBufLen(dev))
		for {
			n, err := dev.Read(bufs, sizes, offset)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("Read: %v", err)
				}
				return
			}
			for i := range n {
				select {
				case frames <- slices.Clone(bufs[i][offset : offset+sizes[i]]):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		dev.Close()
		<-done
	})
	return frames
}

// frameBufLen is the buffer size, from the offset on, that a frame of dev
// needs, as Device.Read says.
func frameBufLen(dev Device) int {
	switch o := dev.Offloads(); {
	case o.TSO4 || o.TSO6:
		return MaxOffloadFrame
	case o.VnetHdr:
		return VnetHdrLen + dev.MTU() + 14
	}
	return dev.MTU() + 14
}

// arpRequest returns an ARP request from (mac, ip) for target, at offset.
func arpRequest(t testing.TB, offset int, mac net.HardwareAddr, ip, target netip.Addr) []byte {
	eth := layers.Ethernet{
		SrcMAC:       mac,
		DstMAC:       layers.EthernetBroadcast,
		EthernetType: layers.EthernetTypeARP,
	}
	arp := layers.ARP{
		AddrType:          layers.LinkTypeEthernet,
		Protocol:          layers.EthernetTypeIPv4,
		HwAddressSize:     6,
		ProtAddressSize:   4,
		Operation:         layers.ARPRequest,
		SourceHwAddress:   mac,
		SourceProtAddress: ip.AsSlice(),
		DstHwAddress:      make([]byte, 6),
		DstProtAddress:    target.AsSlice(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, &eth, &arp); err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, offset), buf.Bytes()...)
}

func TestCreateConfiguresLinkAndAnswersARP(t *testing.T) {
	inNetns(t)
	name := tapName("a")
	mac := [6]byte{0x02, 0x0e, 0x00, 0x00, 0x00, 0x01}
	addr := netip.MustParsePrefix("10.250.0.1/24")
	dev := create(t, Config{Name: name, MTU: 1400, MAC: mac, Addresses: []netip.Prefix{addr}, Up: true})

	if dev.Name() != name || dev.MTU() != 1400 || dev.BatchSize() != DefaultBatchSize {
		t.Errorf("Name, MTU, BatchSize = %q, %d, %d; want %q, 1400, %d", dev.Name(), dev.MTU(), dev.BatchSize(), name, DefaultBatchSize)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	if _, ok := link.(*netlink.Tuntap); !ok {
		t.Errorf("link type %q, want tuntap", link.Type())
	}
	if a.MTU != 1400 || a.HardwareAddr.String() != net.HardwareAddr(mac[:]).String() || a.Flags&net.FlagUp == 0 {
		t.Errorf("link MTU %d, MAC %v, flags %v; want 1400, %v, up", a.MTU, a.HardwareAddr, a.Flags, net.HardwareAddr(mac[:]))
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr.String() {
		t.Errorf("addresses %v, want [%v]", addrs, addr)
	}

	// Ask the kernel for 10.250.0.1 from a host behind the port.
	pkt := arpRoundTrip(t, dev, readFrames(t, dev, 8), addr.Addr())
	arp := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if net.HardwareAddr(arp.SourceHwAddress).String() != net.HardwareAddr(mac[:]).String() ||
		eth.DstMAC.String() != arpPeerMAC.String() || eth.SrcMAC.String() != net.HardwareAddr(mac[:]).String() {
		t.Fatalf("unexpected ARP frame:\n%v", pkt)
	}
}

func TestCloseUnblocksReadAndRemovesLink(t *testing.T) {
	inNetns(t)
	name := tapName("c")
	dev := create(t, Config{Name: name, Up: true})
	done := make(chan error, 1)
	go func() {
		bufs, sizes := makeBufs(dev.BatchSize(), 2048)
		for {
			// Frames the kernel sends on its own (IPv6 ND) are
			// skipped; Close must end the loop.
			if _, err := dev.Read(bufs, sizes, 0); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := dev.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Read = %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not unblock Read")
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	// The fd is gone once Close returns, and with it the link.
	if _, err := netlink.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("link %s after Close: %v, want not found", name, err)
	}
}

func TestCreateDefaultsAndNameTemplate(t *testing.T) {
	inNetns(t)
	dev := create(t, Config{Name: "tt%d"}) // a fresh netns: the kernel picks tt0
	if dev.Name() != "tt0" || dev.MTU() != 1500 {
		t.Errorf("Name, MTU = %q, %d; want tt0, 1500", dev.Name(), dev.MTU())
	}
	link, err := netlink.LinkByName("tt0")
	if err != nil {
		t.Fatal(err)
	}
	if a := link.Attrs(); a.Flags&net.FlagUp != 0 || len(a.HardwareAddr) != 6 || a.HardwareAddr[0]&2 == 0 {
		t.Errorf("flags %v, MAC %v; want down, a random local MAC", a.Flags, a.HardwareAddr)
	}
}

func TestCreateNameInUse(t *testing.T) {
	inNetns(t)
	name := tapName("u")
	create(t, Config{Name: name})
	for _, taken := range []string{name, "lo"} {
		dev, err := Create(Config{Name: taken})
		if err == nil {
			dev.Close()
			t.Fatalf("Create(%q) succeeded, want ErrNameInUse", taken)
		}
		if !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("Create(%q) = %v, want ErrNameInUse", taken, err)
		}
	}
}

// A step that fails after the TAP exists must remove it again.
func TestCreateCleansUpOnFailure(t *testing.T) {
	inNetns(t)
	name := tapName("f")
	p := netip.MustParsePrefix("10.250.1.1/24")
	dev, err := Create(Config{Name: name, Addresses: []netip.Prefix{p, p}}) // the second add fails: EEXIST
	if err == nil {
		dev.Close()
		t.Fatal("Create with a duplicate address succeeded")
	}
	if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "10.250.1.1/24") {
		t.Errorf("error %q does not name the link and the address", err)
	}
	if _, err := netlink.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("link %s after failed Create: %v, want not found", name, err)
	}
}

// Needs no root: these fail before the kernel is asked.
func TestCreateInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{name: "name too long", cfg: Config{Name: "a-name-of-16byte"}, want: "at most 15"},
		{name: "no name", cfg: Config{}, want: "required"},
		{name: "slash", cfg: Config{Name: "a/b"}, want: "'/'"},
		{name: "two templates", cfg: Config{Name: "a%d%d"}, want: "one %d"},
		{name: "negative MTU", cfg: Config{Name: "x", MTU: -1}, want: "MTU -1"},
		{name: "multicast MAC", cfg: Config{Name: "x", MAC: [6]byte{1, 0, 0x5e, 0, 0, 1}}, want: "multicast"},
		{name: "invalid address", cfg: Config{Name: "x", Addresses: []netip.Prefix{{}}}, want: "invalid address"},
		{name: "negative queues", cfg: Config{Name: "x", Queues: -1}, want: "-1 queues"},
		{name: "too many queues", cfg: Config{Name: "x", Queues: 257}, want: "257 queues"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := Create(tt.cfg)
			if err == nil {
				dev.Close()
				t.Fatal("Create succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Writing ARP requests and reading what the kernel sends back allocates
// nothing once warm.
func TestTAPAllocs(t *testing.T) {
	inNetns(t)
	addr := netip.MustParsePrefix("10.250.2.1/24")
	dev := create(t, Config{Name: tapName("m"), Addresses: []netip.Prefix{addr}, Up: true})
	const batch, runs, off = 8, 50, 8
	out := make([][]byte, batch)
	for i := range out {
		mac := net.HardwareAddr{0x02, 0x0e, 0, 0, 1, byte(i)}
		out[i] = arpRequest(t, off, mac, netip.AddrFrom4([4]byte{10, 250, 2, byte(10 + i)}), addr.Addr())
	}
	in, sizes := makeBufs(dev.BatchSize(), off+1514)
	// Every run makes batch replies (and perhaps other frames), so reading
	// batch frames per run never waits for frames that do not come.
	if allocs := testing.AllocsPerRun(runs, func() {
		if n, err := dev.Write(out, off); n != batch || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for got := 0; got < batch; {
			n, err := dev.Read(in, sizes, off)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}); allocs != 0 {
		t.Errorf("Write+Read: %v allocs per call, want 0", allocs)
	}
}
