package vtep_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep"
)

func TestRouterMAC(t *testing.T) {
	a, b := vtep.RouterMAC(42), vtep.RouterMAC(4097)
	if a == b || !vtep.IsRouterMAC(a) || a.IsMulticast() || a[0]&0x02 == 0 {
		t.Fatalf("RouterMAC(42) %v, RouterMAC(4097) %v", a, b)
	}
	if vtep.IsRouterMAC(mac1) {
		t.Errorf("IsRouterMAC(%v)", mac1)
	}
}

// TestGatewayAddrs: the switch answers ARP and neighbour solicitations for
// a gateway address nobody holds with the VNI's router MAC (a router
// advertisement flag on the NA), an endpoint holding the address wins, and
// a VNI without the address floods the question as unknown.
func TestGatewayAddrs(t *testing.T) {
	r := newRig(t)
	gw4, gw6 := netip.MustParseAddr("10.0.9.254"), netip.MustParseAddr("fd00::fe")
	r.sw.SetGatewayAddrs(42, []netip.Addr{gw4, gw6})
	router := vtep.RouterMAC(42)

	r.p1.Inject(arpRequest(t, mac1, "10.0.9.1", "10.0.9.254"))
	p := gopacket.NewPacket(r.p1.Expect(t, wait), layers.LayerTypeEthernet, gopacket.Default)
	arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || arp.Operation != layers.ARPReply || net.HardwareAddr(arp.SourceHwAddress).String() != router.String() ||
		net.IP(arp.SourceProtAddress).String() != "10.0.9.254" {
		t.Fatalf("ARP reply: %v", p)
	}
	r.p1.Inject(neighborSolicitation(t, mac1, "fd00::1", "fd00::fe"))
	p = gopacket.NewPacket(r.p1.Expect(t, wait), layers.LayerTypeEthernet, gopacket.Default)
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || !na.Router() || net.IP(na.TargetAddress).String() != "fd00::fe" || len(na.Options) == 0 ||
		net.HardwareAddr(na.Options[0].Data).String() != router.String() {
		t.Fatalf("NA: %v", p)
	}
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)

	// An endpoint that holds the address is answered for instead.
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		IPs: []netip.Addr{gw4}})
	r.p1.Inject(arpRequest(t, mac1, "10.0.9.1", "10.0.9.254"))
	p = gopacket.NewPacket(r.p1.Expect(t, wait), layers.LayerTypeEthernet, gopacket.Default)
	if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); !ok || net.HardwareAddr(arp.SourceHwAddress).String() != macR.String() {
		t.Fatalf("ARP reply with the address held: %v", p)
	}

	// Removed: the question is unknown again and floods.
	r.sw.SetGatewayAddrs(42, nil)
	unknown := neighborSolicitation(t, mac1, "fd00::1", "fd00::fe")
	r.p1.Inject(unknown)
	r.expectFrame(r.p2, unknown)
	if got := r.sw.Stats().Proxy; got.ARPAnswered != 2 || got.NDAnswered != 1 {
		t.Errorf("proxy stats %+v", got)
	}
}
