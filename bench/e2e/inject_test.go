package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/vtep"
)

// TestE2EInjection: VXLAN datagrams from an underlay address that is not a
// member VTEP of the VNI never reach a port, whatever they carry (a
// broadcast ARP request, a unicast ping to the host port); every one is
// counted as not_member. The same datagrams from the configured peer's
// address are delivered, which shows the injection would otherwise work.
func TestE2EInjection(t *testing.T) {
	_, h1, h2 := twoHosts(t)
	// h2 holds the peer's address (no ovlsw runs there: only its address
	// matters) and the attacker's, 192.168.91.3.
	attacker := netip.MustParseAddr("192.168.91.3")
	ctx := testCtx(t, time.Minute)
	if _, err := h2.Run(ctx, "ip", "addr", "add", attacker.String()+"/24", "dev", "ul0"); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, h1, "i1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())
	st := n1.status()
	if len(st.Ports) != 1 {
		t.Fatalf("ports: %s", jsonString(st.Ports))
	}
	hostMAC, err := net.ParseMAC(macOf(t, h1, n1.tap))
	if err != nil {
		t.Fatal(err)
	}

	// Two kinds of injected frame, each a full VXLAN datagram for VNI 42.
	evil := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}
	arp := make([]byte, 42)
	copy(arp[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(arp[6:12], evil)
	copy(arp[12:], []byte{0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1})
	copy(arp[22:28], evil)
	copy(arp[28:32], []byte{10, 91, 0, 66})
	copy(arp[38:42], ov1.Addr().AsSlice())
	ping := make([]byte, 14+28)
	copy(ping[0:6], hostMAC)
	copy(ping[6:12], evil)
	copy(ping[12:], []byte{0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 91, 0, 66})
	copy(ping[30:34], ov1.Addr().AsSlice())
	ping[34] = 8 // ICMP echo request
	var dgrams [][]byte
	for _, inner := range [][]byte{arp, ping} {
		d := make([]byte, vtep.HeaderLen+len(inner))
		if err := (vtep.Header{VNI: 42}).Encode(d); err != nil {
			t.Fatal(err)
		}
		copy(d[vtep.HeaderLen:], inner)
		dgrams = append(dgrams, d)
	}

	const perKind = 500
	send := func(from netip.Addr) {
		t.Helper()
		err := h2.Do(func() error {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: from.AsSlice()})
			if err != nil {
				return err
			}
			defer c.Close()
			to := &net.UDPAddr{IP: ul1.Addr().AsSlice(), Port: vtep.DefaultPort}
			for range perKind {
				for _, d := range dgrams {
					if _, err := c.WriteToUDP(d, to); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	delivered := func() uint64 { return n1.status().Ports[0].TxFrames }

	before, dropsBefore := delivered(), n1.status().Drops["not_member"]
	send(attacker)
	want := dropsBefore + 2*perKind
	if !poll(10*time.Second, func() bool { return n1.status().Drops["not_member"] >= want }) {
		t.Fatalf("not_member drops %d, want %d: %s", n1.status().Drops["not_member"], want, jsonString(n1.status().Drops))
	}
	accepted := delivered() - before
	t.Logf("injected from a non-member: %d frames tried, %d accepted, %d counted not_member",
		2*perKind, accepted, n1.status().Drops["not_member"]-dropsBefore)
	if accepted != 0 {
		t.Errorf("%d injected frames reached the port", accepted)
	}

	// Control: the same datagrams from the member's address get in.
	before = delivered()
	send(ul2.Addr())
	if !poll(10*time.Second, func() bool { return delivered()-before >= 2*perKind }) {
		t.Errorf("from the peer's address: %d of %d frames delivered; the injection check above proves nothing", delivered()-before, 2*perKind)
	}
}

// macOf reads a link's MAC address in ns.
func macOf(t *testing.T, ns *testbed.Netns, ifname string) string {
	t.Helper()
	var mac string
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr.String()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}
