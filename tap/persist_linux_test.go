package tap

// Tests of persistent TAPs and Adopt. They need root and run in a network
// namespace of their own, like the tests in tap_linux_test.go.

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
)

// removeLinkAtEnd deletes the link name, if it is there, when the test
// ends: a persistent TAP outlives its Device. Call it before making the
// link.
func removeLinkAtEnd(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("remove %s: %v", name, err)
			}
		}
	})
}

// linkGone fails the test unless the link name is gone.
func linkGone(t *testing.T, name, when string) {
	t.Helper()
	if _, err := netlink.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("link %s %s: %v, want not found", name, when, err)
	}
}

// persistentTAP fails the test unless name is a persistent TAP.
func persistentTAP(t *testing.T, name, when string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s %s: %v", name, when, err)
	}
	tt, ok := l.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist {
		t.Fatalf("link %s %s: %T %+v, want a persistent TAP", name, when, l, l)
	}
}

// arpPeerMAC is the MAC arpRoundTrip asks from.
var arpPeerMAC = net.HardwareAddr{0x02, 0x0e, 0x00, 0x00, 0x00, 0x02}

// arpRoundTrip asks the kernel behind dev for target with an ARP request
// from arpPeerMAC and target.Next(), written on dev with 8 bytes of
// headroom (as the switch reads and writes), waits for the reply on frames
// (from readFrames, same offset) and returns it. With virtio-net headers,
// the request goes with a zero header and the reply must come with a zero
// one too.
func arpRoundTrip(t *testing.T, dev Device, frames <-chan []byte, target netip.Addr) gopacket.Packet {
	t.Helper()
	const off = 8
	hdr := 0
	if dev.Offloads().VnetHdr {
		hdr = VnetHdrLen
	}
	peerMAC := arpPeerMAC
	peerIP := target.Next()
	req := arpRequest(t, off+hdr, peerMAC, peerIP, target) // arpRequest zeroes the header
	if n, err := dev.Write([][]byte{req}, off); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}
	deadline := time.After(wait)
	for {
		var f []byte
		select {
		case f = <-frames:
		case <-deadline:
			t.Fatalf("%s: no ARP reply for %v", dev.Name(), target)
		}
		if len(f) < hdr {
			t.Fatalf("%d-byte frame, shorter than its virtio-net header", len(f))
		}
		pkt := gopacket.NewPacket(f[hdr:], layers.LayerTypeEthernet, gopacket.Default)
		arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		if arp == nil {
			continue // IPv6 router solicitations and the like
		}
		if h := f[:hdr]; !bytes.Equal(h, make([]byte, hdr)) {
			t.Errorf("ARP reply with virtio-net header %x, want all zero", h)
		}
		if arp.Operation != layers.ARPReply || net.IP(arp.SourceProtAddress).String() != target.String() ||
			net.HardwareAddr(arp.DstHwAddress).String() != peerMAC.String() {
			t.Fatalf("unexpected ARP frame:\n%v", pkt)
		}
		return pkt
	}
}

func TestPersistSurvivesCloseAndAdopt(t *testing.T) {
	inNetns(t)
	name := tapName("p")
	removeLinkAtEnd(t, name)
	addr := netip.MustParsePrefix("10.250.3.1/24")
	dev, err := Create(Config{Name: name, MTU: 1400, Addresses: []netip.Prefix{addr}, Up: true, Persist: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	arpRoundTrip(t, dev, readFrames(t, dev, 8), addr.Addr())
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	persistentTAP(t, name, "after Close")

	// Adopt, with Persist, gets the same link with its configuration,
	// and frames flow again.
	adopted, err := Adopt(Config{Name: name, Persist: true})
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if adopted.Name() != name || adopted.MTU() != 1400 || adopted.BatchSize() != DefaultBatchSize {
		t.Errorf("adopted Name, MTU, BatchSize = %q, %d, %d; want %q, 1400, %d",
			adopted.Name(), adopted.MTU(), adopted.BatchSize(), name, DefaultBatchSize)
	}
	arpRoundTrip(t, adopted, readFrames(t, adopted, 8), addr.Addr())
	if err := adopted.Close(); err != nil {
		t.Fatalf("Close adopted: %v", err)
	}
	persistentTAP(t, name, "after closing the adopted device")

	// Adopt without Persist takes persistence away: Close removes the TAP.
	last, err := Adopt(Config{Name: name})
	if err != nil {
		t.Fatalf("Adopt without Persist: %v", err)
	}
	if err := last.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	linkGone(t, name, "after Close of a TAP adopted without Persist")
}

func TestSetPersistFalseThenCloseRemoves(t *testing.T) {
	inNetns(t)
	name := tapName("r")
	removeLinkAtEnd(t, name)
	dev := create(t, Config{Name: name, Persist: true})
	p, ok := dev.(Persister)
	if !ok {
		t.Fatalf("%T does not implement Persister", dev)
	}
	if err := p.SetPersist(false); err != nil {
		t.Fatalf("SetPersist(false): %v", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	linkGone(t, name, "after SetPersist(false) and Close")
	if err := p.SetPersist(true); !errors.Is(err, ErrClosed) {
		t.Errorf("SetPersist after Close = %v, want ErrClosed", err)
	}
}

// A persistent TAP whose Create fails halfway is removed too.
func TestCreatePersistCleansUpOnFailure(t *testing.T) {
	inNetns(t)
	name := tapName("g")
	removeLinkAtEnd(t, name)
	p := netip.MustParsePrefix("10.250.4.1/24")
	dev, err := Create(Config{Name: name, Persist: true, Addresses: []netip.Prefix{p, p}})
	if err == nil {
		dev.Close()
		t.Fatal("Create with a duplicate address succeeded")
	}
	linkGone(t, name, "after a failed persistent Create")
}

func TestAdoptMissingCreatesNothing(t *testing.T) {
	inNetns(t)
	name := tapName("n")
	removeLinkAtEnd(t, name)
	for _, persist := range []bool{false, true} {
		dev, err := Adopt(Config{Name: name, Persist: persist})
		if err == nil {
			dev.Close()
			t.Fatalf("Adopt(%q, Persist %v) of a missing TAP succeeded", name, persist)
		}
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), name) {
			t.Errorf("Adopt(%q) = %v, want ErrNotFound naming the TAP", name, err)
		}
		linkGone(t, name, "after Adopt of a missing TAP")
	}
}

func TestAdoptNonTAPIsNotFound(t *testing.T) {
	inNetns(t)
	tests := []struct {
		name string
		link func(name string) netlink.Link
		want string // in the error
	}{
		{
			// A bridge rather than a dummy link: some kernels (this
			// project's CI VM) are built without CONFIG_DUMMY.
			name: "bridge",
			link: func(name string) netlink.Link {
				return &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
			},
			want: "bridge",
		},
		{
			name: "tun",
			link: func(name string) netlink.Link {
				// netlink makes it persistent, with no fd left open.
				return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN}
			},
			want: "TUN",
		},
	}
	// No t.Run: a subtest's goroutine would not be in this namespace.
	for i, tt := range tests {
		name := tapName(string(rune('d' + i)))
		removeLinkAtEnd(t, name)
		if err := netlink.LinkAdd(tt.link(name)); err != nil {
			t.Fatalf("add %s link: %v", tt.name, err)
		}
		dev, err := Adopt(Config{Name: name})
		if err == nil {
			dev.Close()
			t.Fatalf("Adopt of a %s link succeeded", tt.name)
		}
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Adopt of a %s link = %v, want ErrNotFound mentioning %q", tt.name, err, tt.want)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("%s link after Adopt: %v", tt.name, err)
		}
		if _, isTAP := l.(*netlink.Tuntap); isTAP != (tt.name == "tun") {
			t.Errorf("link after Adopt is a %q link, want the %s link as it was", l.Type(), tt.name)
		}
	}
}

// A TAP with an open single queue cannot be adopted.
func TestAdoptBusy(t *testing.T) {
	inNetns(t)
	name := tapName("b")
	removeLinkAtEnd(t, name)
	create(t, Config{Name: name, Persist: true})
	dev, err := Adopt(Config{Name: name, Persist: true})
	if err == nil {
		dev.Close()
		t.Fatal("Adopt of a TAP held open succeeded")
	}
	if !errors.Is(err, ErrNameInUse) {
		t.Errorf("Adopt = %v, want ErrNameInUse", err)
	}
	persistentTAP(t, name, "after a refused Adopt")
}

// Needs no root: refused before the kernel is asked.
func TestAdoptInvalidName(t *testing.T) {
	for _, name := range []string{"", "tt%d", "a-name-of-16byte"} {
		if dev, err := Adopt(Config{Name: name}); err == nil || errors.Is(err, ErrNotFound) {
			if dev != nil {
				dev.Close()
			}
			t.Errorf("Adopt(%q) = %v, want a name error", name, err)
		}
	}
}
