package tap

// Tests of TAPs with virtio-net headers (Config.Offload). They need root
// and run in network namespaces of their own.

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// allOffloads is what every kernel since 2.6.27 grants.
var allOffloads = Offloads{VnetHdr: true, CSUM: true, TSO4: true, TSO6: true}

// vnetFlag reports whether the kernel says the TAP name has virtio-net
// headers on.
func vnetFlag(t *testing.T, name string) bool {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := l.(*netlink.Tuntap)
	if !ok {
		t.Fatalf("%s is a %s link, want a TAP", name, l.Type())
	}
	return tt.Flags&netlink.TUNTAP_VNET_HDR != 0
}

// Create and Adopt report the offloads the kernel granted, and frames with
// a zero virtio-net header pass both ways.
func TestOffloadGranted(t *testing.T) {
	inNetns(t)
	addr := netip.MustParsePrefix("10.250.5.1/24")
	name := tapName("o")
	removeLinkAtEnd(t, name)

	// Create, persistent so that Adopt can take the TAP over below.
	dev := create(t, Config{Name: name, Addresses: []netip.Prefix{addr}, Up: true, Persist: true})
	if got := dev.Offloads(); got != (Offloads{}) || vnetFlag(t, name) {
		t.Errorf("without Offload: Offloads %v, kernel vnet_hdr %v; want off, false", got, vnetFlag(t, name))
	}
	arpRoundTrip(t, dev, readFrames(t, dev, 8), addr.Addr())
	dev.Close()

	tests := []struct {
		name    string
		offload bool
		want    Offloads
	}{
		{name: "on", offload: true, want: allOffloads},
		{name: "off again", offload: false, want: Offloads{}},
		{name: "on again", offload: true, want: allOffloads},
	}
	// No t.Run: a subtest's goroutine would not be in this namespace.
	for _, tt := range tests {
		dev, err := Adopt(Config{Name: name, Offload: tt.offload, Persist: true})
		if err != nil {
			t.Fatalf("adopt %s: Adopt: %v", tt.name, err)
		}
		if got := dev.Offloads(); got != tt.want || vnetFlag(t, name) != tt.want.VnetHdr {
			t.Errorf("adopt %s: Offloads %v, kernel vnet_hdr %v; want %v, %v", tt.name, got, vnetFlag(t, name), tt.want, tt.want.VnetHdr)
		}
		arpRoundTrip(t, dev, readFrames(t, dev, 8), addr.Addr())
		dev.Close()
	}

	name2 := tapName("q")
	addr2 := netip.MustParsePrefix("10.250.6.1/24")
	dev2 := create(t, Config{Name: name2, Addresses: []netip.Prefix{addr2}, Up: true, Offload: true})
	t.Logf("offloads granted by kernel %s: %v", kernelRelease(), dev2.Offloads())
	if got := dev2.Offloads(); got != allOffloads || !vnetFlag(t, name2) {
		t.Errorf("Create with Offload: Offloads %v, kernel vnet_hdr %v; want %v, true", got, vnetFlag(t, name2), allOffloads)
	}
	arpRoundTrip(t, dev2, readFrames(t, dev2, 8), addr2.Addr())
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// A TCP stream between two network namespaces, each behind a TAP with
// offloads, the test copying frames between the TAPs with their virtio-net
// headers as they are: the kernel hands out TCP super-frames, takes them
// back, and the bytes arrive intact.
func TestOffloadTCPSuperFrames(t *testing.T) {
	inNetns(t) // namespace A, the receiver's
	addrA := netip.MustParsePrefix("10.251.0.1/24")
	addrB := netip.MustParsePrefix("10.251.0.2/24")
	devA := create(t, Config{Name: tapName("x"), Addresses: []netip.Prefix{addrA}, Up: true, Offload: true})

	nsA, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsA.Close() })
	nsB, err := netns.New() // namespace B, the sender's; this thread is now in it
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { nsB.Close() })
	devB := create(t, Config{Name: tapName("y"), Addresses: []netip.Prefix{addrB}, Up: true, Offload: true})
	if err := netns.Set(nsA); err != nil {
		t.Fatal(err)
	}
	if devA.Offloads() != allOffloads || devB.Offloads() != allOffloads {
		t.Fatalf("Offloads %v and %v, want %v", devA.Offloads(), devB.Offloads(), allOffloads)
	}

	// The wire: frames from B to A, and back (ARP, ACKs).
	var gso, frames, maxLen atomic.Int64 // of B to A
	var wg sync.WaitGroup
	bridge := func(from, to Device, count bool) {
		defer wg.Done()
		const batch = 16
		bufs, sizes := makeBufs(batch, MaxOffloadFrame)
		out := make([][]byte, batch)
		for {
			n, err := from.Read(bufs, sizes, 0)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("%s: Read: %v", from.Name(), err)
				}
				return
			}
			for i := range n {
				out[i] = bufs[i][:sizes[i]]
				if count && sizes[i] >= VnetHdrLen {
					frames.Add(1)
					if bufs[i][1] != unix.VIRTIO_NET_HDR_GSO_NONE { // gso_type
						gso.Add(1)
					}
					if int64(sizes[i]) > maxLen.Load() {
						maxLen.Store(int64(sizes[i]))
					}
				}
			}
			if w, err := to.Write(out[:n], 0); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("%s: Write: %d of %d frames: %v", to.Name(), w, n, err)
			}
		}
	}
	wg.Add(2)
	go bridge(devB, devA, true)
	go bridge(devA, devB, false)
	t.Cleanup(func() { // runs before the devices' own cleanups
		devA.Close()
		devB.Close()
		wg.Wait()
	})

	const size = 4 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(addrA.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(streamWait))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("receive: %v after %d bytes", err, len(b))
		}
		got <- b
	}()

	// Dial from B: the socket is made in the thread's namespace.
	if err := netns.Set(nsB); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), wait)
	if err := netns.Set(nsA); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("Dial from namespace B: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(streamWait))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("received %d bytes, want the %d sent, intact", len(b), len(data))
	}
	t.Logf("B to A: %d frames, %d of them super-frames, the largest %d bytes with its header", frames.Load(), gso.Load(), maxLen.Load())
	if gso.Load() == 0 {
		t.Errorf("no TCP super-frame (gso_type != 0) among %d frames", frames.Load())
	}
}

// streamWait bounds a test's TCP stream, so that a broken path fails the
// test instead of hanging it; it is no speed requirement.
const streamWait = 60 * time.Second

// LazyTSO opens the TAP with checksum offload only; EnableTSO adds TSO on
// the running device. A multi-queue TAP cannot be lazy.
func TestLazyTSO(t *testing.T) {
	inNetns(t)
	addr := netip.MustParsePrefix("10.250.7.1/24")
	name := tapName("l")
	removeLinkAtEnd(t, name)
	dev := create(t, Config{Name: name, Addresses: []netip.Prefix{addr}, Up: true, Offload: true, LazyTSO: true})
	if got, want := dev.Offloads(), (Offloads{VnetHdr: true, CSUM: true}); got != want {
		t.Fatalf("LazyTSO: Offloads %v, want %v", got, want)
	}
	frames := readFrames(t, dev, 8)
	arpRoundTrip(t, dev, frames, addr.Addr())
	te, ok := dev.(TSOEnabler)
	if !ok {
		t.Fatal("the Linux TAP is no TSOEnabler")
	}
	got, err := te.EnableTSO()
	if err != nil || got != allOffloads || dev.Offloads() != allOffloads {
		t.Fatalf("EnableTSO = %v, %v; Offloads %v; want %v", got, err, dev.Offloads(), allOffloads)
	}
	arpRoundTrip(t, dev, frames, addr.Addr())

	if _, err := Create(Config{Name: tapName("m"), Offload: true, LazyTSO: true, Queues: 2}); err == nil {
		t.Error("LazyTSO with 2 queues: no error")
	}
}
