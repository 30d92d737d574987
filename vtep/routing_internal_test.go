package vtep

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/offload"
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

// TestRouteSuperFrames: a TSO super-frame to the router MAC is rewritten
// once and segmented with the new TTL and MACs; one whose segments exceed
// the port's MTU (a sender whose MTU is above the network's) gets
// fragmentation needed with the MTU instead, written back to its port.
func TestRouteSuperFrames(t *testing.T) {
	r := newVnetRig(t)
	r.sw.SetGatewayAddrs(42, []netip.Addr{netip.MustParseAddr("10.9.0.254")})
	r.sw.SetSubnets(42, []Subnet{{Prefix: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParseAddr("10.9.0.254")}})
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpRemote}, netip.MustParseAddr("10.9.0.2"))
	payload := bytes.Repeat([]byte("routed"), 5000)

	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, superFrame(t, RouterMAC(42), payload, 1398)))
	segs := 0
	for _, m := range r.conn.sent {
		step := m.Segment
		if step == 0 {
			step = m.N
		}
		for off := 0; off < m.N; off += step {
			_, inner, _, ok := decap(m.Buf[off:min(off+step, m.N)])
			pkt := gopacket.NewPacket(inner, layers.LayerTypeEthernet, gopacket.Default)
			eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ok || eth == nil || ip == nil || ip.TTL != 63 || eth.DstMAC.String() != fpRemote.String() || eth.SrcMAC.String() != RouterMAC(42).String() {
				t.Fatalf("segment %d: %v", segs, pkt)
			}
			parseTCP(t, inner)
			segs++
		}
	}
	if want := (len(payload) + 1397) / 1398; segs != want || r.sw.RouteStats().Routed != 1 {
		t.Fatalf("%d segments, want %d; route stats %+v", segs, want, r.sw.RouteStats())
	}

	// Segments of 1460 bytes of payload: 1500-byte packets, MTU 1450.
	r.conn.sent = nil
	r.sw.sendBatch(r.pa, sc, readInto(sc, superFrame(t, RouterMAC(42), payload, 1460)))
	if len(r.conn.sent) != 0 || len(r.a.frames) != 1 {
		t.Fatalf("%d messages sent, %d frames back to the port", len(r.conn.sent), len(r.a.frames))
	}
	back := r.a.frames[0]
	var h offload.VirtioNetHdr
	_ = h.Decode(back)
	pkt := gopacket.NewPacket(back[offload.VirtioNetHdrLen:], layers.LayerTypeEthernet, gopacket.Default)
	icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if h != (offload.VirtioNetHdr{}) || icmp == nil || icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || icmp.Seq != 1450 {
		t.Fatalf("want fragmentation needed, MTU 1450, with a zero virtio-net header (%+v): %v", h, pkt)
	}
	if r.sw.drops[dropMTU].Load() != 1 || r.sw.RouteStats().TooBig != 1 {
		t.Errorf("mtu drops %d, route stats %+v", r.sw.drops[dropMTU].Load(), r.sw.RouteStats())
	}
}

// FuzzRouteSend drives arbitrary frames to the router MAC, with an
// arbitrary virtio-net header, through a port's whole send path on a
// switch that routes: nothing may panic, and whatever comes back to the
// port is a frame no longer than the read buffer.
func FuzzRouteSend(f *testing.F) {
	r := newVnetRig(f)
	r.sw.SetGatewayAddrs(42, []netip.Addr{netip.MustParseAddr("10.9.0.254"), netip.MustParseAddr("fd09::1")})
	r.sw.SetSubnets(42, []Subnet{
		{Prefix: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParseAddr("10.9.0.254")},
		{Prefix: netip.MustParsePrefix("fd09::/64"), Gateway: netip.MustParseAddr("fd09::1")},
	})
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpRemote}, netip.MustParseAddr("10.9.0.2"))
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpB}, netip.MustParseAddr("fd09::2"))
	r.conn.keep, r.a.keep, r.b.keep = false, false, false
	sc := newSendScratch(r.pa)
	rmac := RouterMAC(42)
	f.Fuzz(func(t *testing.T, hdr, frame []byte) {
		b := make([]byte, offload.VirtioNetHdrLen, offload.VirtioNetHdrLen+ethHeaderLen+len(frame))
		copy(b, hdr)
		b = append(b, rmac[:]...)
		b = append(b, fpA[:]...)
		b = append(b, frame...)
		if len(b) > len(sc.bufs[0]) {
			return
		}
		r.sw.sendBatch(r.pa, sc, readInto(sc, b))
	})
}

// TestRouteMemo: within a batch a destination is looked up once per run
// of frames to it, and a batch never uses what the one before looked up.
func TestRouteMemo(t *testing.T) {
	r := newVnetRig(t)
	r.sw.SetGatewayAddrs(42, []netip.Addr{netip.MustParseAddr("10.9.0.254")})
	a, b := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.3")
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpRemote}, a)
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpB}, b)
	to := func(dst netip.Addr) []byte {
		f := make([]byte, offload.VirtioNetHdrLen, 200)
		f = append(f, tcpFrame(t, fpA, RouterMAC(42), 1, []byte("x"), true)...)
		d := dst.As4()
		ip := f[offload.VirtioNetHdrLen+ethHeaderLen:]
		copy(ip[16:20], d[:]) // the checksums go stale; nothing here checks them
		return f
	}
	sc := newSendScratch(r.pa)
	sc.grow(4)
	r.sw.sendBatch(r.pa, sc, readInto(sc, to(a), to(b), to(a), to(gwAddr())))
	if len(r.conn.sent) != 1 || r.conn.sent[0].N != 2*(HeaderLen+len(to(a))-offload.VirtioNetHdrLen) || len(r.b.frames) != 1 {
		t.Fatalf("sent %d messages, port b got %d frames; want a's two frames to the peer, b's one to port b", len(r.conn.sent), len(r.b.frames))
	}
	if st := r.sw.RouteStats(); st.Routed != 3 {
		t.Fatalf("route stats %+v", st)
	}
	// a moves to port b between batches.
	r.sw.fdb.BindIP(fdb.Key{VNI: 42, MAC: fpB}, a)
	r.sw.sendBatch(r.pa, sc, readInto(sc, to(a)))
	if len(r.conn.sent) != 1 || len(r.b.frames) != 2 {
		t.Fatalf("after the move: %d messages, port b %d frames", len(r.conn.sent), len(r.b.frames))
	}
}

func gwAddr() netip.Addr { return netip.MustParseAddr("10.9.0.254") }
