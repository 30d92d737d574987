package tap

// Tests of multi-queue TAPs (Config.Queues). They need root and run in a
// network namespace of their own.

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
)

// queueFrame is a frame read from queue q.
type queueFrame struct {
	q int
	f []byte
}

// readQueues reads every queue of dev until it is closed and sends a copy
// of each frame, with its queue, on the channel it returns (dropping what
// the test does not take). The readers are stopped, and dev closed, when
// the test ends.
func readQueues(t *testing.T, dev Device) <-chan queueFrame {
	t.Helper()
	qs := dev.(MultiQueue).Queues()
	frames := make(chan queueFrame, 1024)
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() {
			bufs, sizes := makeBufs(q.BatchSize(), frameBufLen(q))
			for {
				n, err := q.Read(bufs, sizes, 0)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("queue %d: Read: %v", i, err)
					}
					return
				}
				for j := range n {
					select {
					case frames <- queueFrame{i, slices.Clone(bufs[j][:sizes[j]])}:
					default:
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		dev.Close()
		wg.Wait()
	})
	return frames
}

// Frames written on every queue reach the kernel, and the kernel's frames
// of many flows come out on more than one queue.
func TestMultiQueue(t *testing.T) {
	inNetns(t)
	const queues = 4
	name := tapName("mq")
	addr := netip.MustParsePrefix("10.252.0.1/24")
	mac := net.HardwareAddr{0x02, 0x0e, 0, 0, 2, 1}
	dev := create(t, Config{Name: name, Addresses: []netip.Prefix{addr}, Up: true, Queues: queues, MAC: [6]byte(mac)})
	qs := dev.(MultiQueue).Queues()
	if len(qs) != queues || qs[0] != dev {
		t.Fatalf("Queues() = %d devices, first %v; want %d, the device itself first", len(qs), qs[0], queues)
	}
	for i, q := range qs {
		if q.Name() != name || q.MTU() != 1500 {
			t.Errorf("queue %d: Name, MTU = %q, %d; want %q, 1500", i, q.Name(), q.MTU(), name)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if tt := l.(*netlink.Tuntap); tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 || tt.Queues != queues {
		t.Errorf("kernel: multi-queue flag %v, %d queues; want true, %d", tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0, tt.Queues, queues)
	}
	frames := readQueues(t, dev)

	// An ARP request from a host of its own on every queue: the kernel
	// answers each.
	const off = 8
	peer := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 252, 0, byte(10 + i)}) }
	for i, q := range qs {
		req := arpRequest(t, off, net.HardwareAddr{0x02, 0x0e, 0, 0, 3, byte(i)}, peer(i), addr.Addr())
		if n, err := q.Write([][]byte{req}, off); n != 1 || err != nil {
			t.Fatalf("queue %d: Write = %d, %v", i, n, err)
		}
	}
	answered := make(map[netip.Addr]bool)
	deadline := time.After(wait)
	for len(answered) < queues {
		var qf queueFrame
		select {
		case qf = <-frames:
		case <-deadline:
			t.Fatalf("ARP replies to %d of the %d requests", len(answered), queues)
		}
		pkt := gopacket.NewPacket(qf.f, layers.LayerTypeEthernet, gopacket.Default)
		if arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP); arp != nil && arp.Operation == layers.ARPReply {
			ip, _ := netip.AddrFromSlice(arp.DstProtAddress)
			answered[ip] = true
		}
	}

	// UDP flows from the kernel to a host behind the port: the kernel
	// picks the queue by a hash of the flow, so 64 flows all on one of 4
	// queues would take a 1 in 4^63 chance (or a broken spread).
	const flows, basePort = 64, 20000
	dst := netip.AddrFrom4([4]byte{10, 252, 0, 2})
	if err := netlink.NeighAdd(&netlink.Neigh{
		LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: dst.AsSlice(), HardwareAddr: net.HardwareAddr{0x02, 0x0e, 0, 0, 4, 1},
	}); err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	for i := range flows {
		if _, err := sock.WriteToUDPAddrPort([]byte("flow"), netip.AddrPortFrom(dst, uint16(basePort+i))); err != nil {
			t.Fatal(err)
		}
	}
	queueOf := make(map[int]int) // flow (destination port) -> queue
	for len(queueOf) < flows {
		var qf queueFrame
		select {
		case qf = <-frames:
		case <-deadline:
			t.Fatalf("%d of the %d UDP flows came out of the TAP", len(queueOf), flows)
		}
		pkt := gopacket.NewPacket(qf.f, layers.LayerTypeEthernet, gopacket.Default)
		if udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); udp != nil && udp.DstPort >= basePort && udp.DstPort < basePort+flows {
			queueOf[int(udp.DstPort)] = qf.q
		}
	}
	perQueue := make([]int, queues)
	for _, q := range queueOf {
		perQueue[q]++
	}
	t.Logf("flows per queue: %v", perQueue)
	if slices.Max(perQueue) == flows {
		t.Errorf("all %d flows on one queue: %v", flows, perQueue)
	}

	// Closing a queue other than the first closes that one only; closing
	// the first closes the rest and, the TAP not being persistent,
	// removes it.
	last := qs[queues-1]
	if err := last.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := last.Write([][]byte{make([]byte, 60)}, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Write on a closed queue = %v, want ErrClosed", err)
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("link after closing one queue: %v", err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	for i, q := range qs {
		if _, err := q.Write([][]byte{make([]byte, 60)}, 0); !errors.Is(err, ErrClosed) {
			t.Errorf("queue %d: Write after closing the first = %v, want ErrClosed", i, err)
		}
	}
	linkGone(t, name, "after closing the first queue")
}

// A single-queue TAP is its own only queue.
func TestSingleQueueQueues(t *testing.T) {
	inNetns(t)
	dev := create(t, Config{Name: tapName("sq"), Queues: 1})
	if qs := dev.(MultiQueue).Queues(); len(qs) != 1 || qs[0] != dev {
		t.Errorf("Queues() = %v, want the device alone", qs)
	}
}

func TestAdoptMultiQueue(t *testing.T) {
	inNetns(t)
	name, single := tapName("ma"), tapName("sa")
	removeLinkAtEnd(t, name)
	removeLinkAtEnd(t, single)
	addr := netip.MustParsePrefix("10.252.1.1/24")
	dev := create(t, Config{Name: name, Addresses: []netip.Prefix{addr}, Up: true, Queues: 3, Persist: true, Offload: true})
	dev.Close()
	create(t, Config{Name: single, Persist: true}).Close()

	for _, n := range []int{0, 2} {
		dev, err := Adopt(Config{Name: name, Queues: n, Persist: true, Offload: true})
		if err != nil {
			t.Fatalf("Adopt with %d queues: %v", n, err)
		}
		qs := dev.(MultiQueue).Queues()
		if len(qs) != max(n, 1) {
			t.Errorf("Adopt with %d queues: %d queues", n, len(qs))
		}
		for _, q := range qs {
			if q.Offloads() != allOffloads || q.MTU() != 1500 {
				t.Errorf("adopted queue: Offloads %v, MTU %d; want %v, 1500", q.Offloads(), q.MTU(), allOffloads)
			}
		}
		// Every queue's frames reach the kernel.
		for i, q := range qs {
			mac := net.HardwareAddr{0x02, 0x0e, 0, 0, 5, byte(i)}
			req := arpRequest(t, VnetHdrLen, mac, netip.AddrFrom4([4]byte{10, 252, 1, byte(10 + i)}), addr.Addr())
			if _, err := q.Write([][]byte{req}, 0); err != nil {
				t.Errorf("Adopt with %d queues: queue %d: Write: %v", n, i, err)
			}
		}
		frames := readQueues(t, dev)
		replies := 0
		deadline := time.After(wait)
		for replies < len(qs) {
			select {
			case qf := <-frames:
				pkt := gopacket.NewPacket(qf.f[VnetHdrLen:], layers.LayerTypeEthernet, gopacket.Default)
				if arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP); arp != nil && arp.Operation == layers.ARPReply {
					replies++
				}
			case <-deadline:
				t.Fatalf("Adopt with %d queues: %d ARP replies, want %d", n, replies, len(qs))
			}
		}
		dev.Close()
		persistentTAP(t, name, "after closing the adopted queues")
	}

	if dev, err := Adopt(Config{Name: single, Queues: 2, Persist: true}); err == nil {
		dev.Close()
		t.Error("Adopt of a single-queue TAP with 2 queues succeeded")
	} else if !strings.Contains(err.Error(), "single-queue") {
		t.Errorf("Adopt of a single-queue TAP with 2 queues = %v, want an error saying why", err)
	}
	persistentTAP(t, single, "after a refused Adopt")
}
