package vtep

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
)

// routeBatchRig is hotRig's switch with VNI 42 routing between 10.1.1.0/24
// and 11.1.1.0/24, 11.1.1.2 behind the peer, and a port scratch holding a
// batch of 1400-byte UDP frames from 10.1.1.2 to 11.1.1.2: to the router
// MAC (routed), or straight to the endpoint's MAC (bridged).
func routeBatchRig(tb testing.TB, routed bool) (*Switch, *port, *sendScratch, int, func() uint64) {
	sw, _, peer := hotRig(tb)
	sw.SetGatewayAddrs(42, []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("11.1.1.1")})
	sw.SetSubnets(42, []Subnet{
		{Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1")},
		{Prefix: netip.MustParsePrefix("11.1.1.0/24"), Gateway: netip.MustParseAddr("11.1.1.1")},
	})
	remote := fdb.MAC{2, 0, 0, 0, 0, 0xbb}
	sw.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: remote}, Location: fdb.Location{VTEP: peer}, Origin: fdb.OriginGossip,
		IPs: []netip.Addr{netip.MustParseAddr("11.1.1.2")}})
	p := sw.ports.Load().byVNI[42][0]
	sc := newSendScratch(p)
	sc.grow(len(sc.sizes))
	dst := remote
	if routed {
		dst = RouterMAC(42)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xaa}, DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
		SrcIP: net.IP{10, 1, 1, 2}, DstIP: net.IP{11, 1, 1, 2}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5201}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(make([]byte, 1400-28))); err != nil {
		tb.Fatal(err)
	}
	f := buf.Bytes()
	n := len(sc.bufs)
	for i := range n {
		sc.sizes[i] = copy(sc.bufs[i][HeaderLen:], f)
	}
	sent := func() uint64 { return sw.counters[peer.Addr()].txFrames.Load() }
	return sw, p, sc, n, sent
}

// routedMACs is the MAC header of routeBatchRig's routed frames, which
// routing rewrites.
func routedMACs() [12]byte {
	rmac := RouterMAC(42)
	return [12]byte{rmac[0], rmac[1], rmac[2], rmac[3], rmac[4], rmac[5], 2, 0, 0, 0, 0, 0xaa}
}

// TestRouteAllocs: routing a batch of frames (parse, lookup, rewrite, then
// switching to the VTEP) allocates nothing once warm.
func TestRouteAllocs(t *testing.T) {
	sw, p, sc, n, sent := routeBatchRig(t, true)
	sw.sendBatch(p, sc, n) // warm up
	before := sent()
	macs := routedMACs()
	if allocs := testing.AllocsPerRun(200, func() {
		for i := range n {
			sc.bufs[i][HeaderLen+ethHeaderLen+8] = 64 // the TTL back (the checksum drifts; nothing checks it here)
			copy(sc.bufs[i][HeaderLen:], macs[:])
		}
		sw.sendBatch(p, sc, n)
	}); allocs != 0 {
		t.Errorf("routed sendBatch allocs = %v, want 0", allocs)
	}
	if sent() == before || sw.RouteStats().Routed == 0 {
		t.Error("nothing was routed: the test measured nothing")
	}
}

// BenchmarkRouteBatch compares a batch of frames routed between subnets
// with the same frames bridged, both to a remote VTEP (encapsulation and
// the send included, the socket a null one).
func BenchmarkRouteBatch(b *testing.B) {
	for _, routed := range []bool{false, true} {
		name := "bridged"
		if routed {
			name = "routed"
		}
		b.Run(name, func(b *testing.B) {
			sw, p, sc, n, _ := routeBatchRig(b, routed)
			macs := routedMACs()
			b.ReportAllocs()
			for b.Loop() {
				if routed { // put back what routing rewrote
					for i := range n {
						sc.bufs[i][HeaderLen+ethHeaderLen+8] = 64
						copy(sc.bufs[i][HeaderLen:], macs[:])
					}
				}
				sw.sendBatch(p, sc, n)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
