package vtep_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

// dnsQuery is a UDP DNS query for name from mac/src to dst:53.
func dnsQuery(t *testing.T, mac fdb.MAC, src, dst, name string, id uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	// Unknown unicast: the resolver takes queries by address, whatever MAC
	// the asker resolved it to (a host port's, say); frames to the router
	// MAC it does not take would be routed.
	unknown := [6]byte{0x02, 0, 0, 0, 0, 0x99}
	return serialize(t,
		&layers.Ethernet{SrcMAC: mac[:], DstMAC: unknown[:], EthernetType: layers.EthernetTypeIPv4}, ip, udp,
		&layers.DNS{ID: id, RD: true, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}})
}

// TestResolverHook: a query a port sends to its network's DNS address is
// answered on that port by the resolver and goes nowhere else; the same
// query on a VNI without a name service, and other traffic, is forwarded
// as before; WriteToPort writes a late answer to the port that asked.
func TestResolverHook(t *testing.T) {
	r := newRig(t)
	tab := dns.NewTable()
	tab.SetNetwork(42, "web", []netip.Addr{netip.MustParseAddr("10.0.9.254")}, []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24")})
	tab.Set(42, macR, dns.Record{Name: "c2", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	cfg := dns.DefaultConfig()
	cfg.Table = tab
	cfg.Deliver = func(port int, frame []byte) { r.sw.WriteToPort(port, frame) }
	res, err := dns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	r.sw.SetResolver(res)

	r.p1.Inject(dnsQuery(t, mac1, "10.0.9.1", "10.0.9.254", "c2.web", 7))
	p := gopacket.NewPacket(r.p1.Expect(t, wait), layers.LayerTypeEthernet, gopacket.Default)
	d, ok := p.Layer(layers.LayerTypeDNS).(*layers.DNS)
	if !ok || d.ID != 7 || !d.QR || len(d.Answers) != 1 || d.Answers[0].IP.String() != "10.0.9.2" {
		t.Fatalf("answer: %v", p)
	}
	if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); net.HardwareAddr(eth.DstMAC).String() != mac1.String() {
		t.Errorf("answer to %v, want the asker %v", eth.DstMAC, mac1)
	}
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if st := res.Stats(); st.Answered != 1 {
		t.Errorf("resolver stats %+v", st)
	}

	// Not the DNS address: an ordinary frame, flooded as unknown unicast.
	other := dnsQuery(t, mac1, "10.0.9.1", "10.0.9.77", "c2.web", 8)
	r.p1.Inject(other)
	r.expectFrame(r.p2, other)
	r.expectDatagram(r.toB, "B", 42, other)
	r.expectDatagram(r.toC, "C", 42, other)

	// A late answer reaches the port.
	late := dnsQuery(t, mac1, "10.0.9.254", "10.0.9.1", "late", 9)
	if !r.sw.WriteToPort(1, late) {
		t.Fatal("WriteToPort refused")
	}
	r.expectFrame(r.p1, late)
	if r.sw.WriteToPort(99, late) {
		t.Error("WriteToPort to no port succeeded")
	}

	// Without the resolver the query is forwarded like any frame.
	r.sw.SetResolver(nil)
	q := dnsQuery(t, mac1, "10.0.9.1", "10.0.9.254", "c2.web", 10)
	r.p1.Inject(q)
	r.expectFrame(r.p2, q)
	r.expectDatagram(r.toB, "B", 42, q)
	r.expectDatagram(r.toC, "C", 42, q)
}
