package vtep

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

// TestSendAllocsResolver: with a name service in the switch, a batch of
// ordinary frames and a DNS query answered in place still allocates
// nothing once warm.
func TestSendAllocsResolver(t *testing.T) {
	sw, _, _ := hotRig(t)
	tab := dns.NewTable()
	tab.SetNetwork(42, "web", []netip.Addr{netip.MustParseAddr("10.0.9.254")}, []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24")})
	tab.Set(42, fdb.MAC{2, 0, 0, 0, 0, 2}, dns.Record{Name: "c2", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	cfg := dns.DefaultConfig()
	cfg.Table = tab
	cfg.Deliver = func(port int, frame []byte) { sw.WriteToPort(port, frame) }
	res, err := dns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	sw.SetResolver(res)

	p := sw.ports.Load().byVNI[42][0]
	sc := newSendScratch(p)
	query := queryFrame(t)
	n := 0
	for _, payload := range kernelPayloads(t) {
		inner := payload[HeaderLen:]
		if n == len(sc.bufs)-1 || len(inner) > p.mtu+ethHeaderLen {
			break
		}
		sc.sizes[n] = copy(sc.bufs[n][HeaderLen:], inner)
		n++
	}
	q := n
	n++
	batch := func() {
		sc.sizes[q] = copy(sc.bufs[q][HeaderLen:], query) // the answer replaced it
		sw.sendBatch(p, sc, n)
	}
	batch() // warm up
	before := res.Stats().Answered
	if allocs := testing.AllocsPerRun(200, batch); allocs != 0 {
		t.Errorf("sendBatch allocs with a query answered = %v, want 0", allocs)
	}
	if res.Stats().Answered == before {
		t.Error("no query was answered: the test measured nothing")
	}
}

// queryFrame is a DNS query for c2.web from a port of VNI 42.
func queryFrame(t *testing.T) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr("10.0.9.1").AsSlice(), DstIP: netip.MustParseAddr("10.0.9.254").AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	src, dst := fdb.MAC{2, 0, 0, 0, 0, 1}, RouterMAC(42)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: src[:], DstMAC: dst[:], EthernetType: layers.EthernetTypeIPv4}, ip, udp,
		&layers.DNS{ID: 1, RD: true, Questions: []layers.DNSQuestion{{Name: []byte("c2.web"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
