package vtep_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/route"
	"github.com/ovlsw/ovlsw/vtep/vteptest"
)

// The routed rig's network on VNI 42: subnets 10.1.1.0/24 (p1's, mac1 at
// .2) and 11.1.1.0/24 (p2's, mac2 at .2; macR at .3 behind peer B), and
// fd01::/64, fd02::/64 the same way.
var (
	gwA4, gwB4 = netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("11.1.1.1")
	gwA6, gwB6 = netip.MustParseAddr("fd01::1"), netip.MustParseAddr("fd02::1")
	h1v4, h2v4 = netip.MustParseAddr("10.1.1.2"), netip.MustParseAddr("11.1.1.2")
	hRv4       = netip.MustParseAddr("11.1.1.3")
	h1v6, h2v6 = netip.MustParseAddr("fd01::2"), netip.MustParseAddr("fd02::2")
	hRv6       = netip.MustParseAddr("fd02::3")
	subnets42  = []vtep.Subnet{
		{Prefix: netip.MustParsePrefix("10.1.1.0/24"), Gateway: gwA4},
		{Prefix: netip.MustParsePrefix("11.1.1.0/24"), Gateway: gwB4},
		{Prefix: netip.MustParsePrefix("fd01::/64"), Gateway: gwA6},
		{Prefix: netip.MustParsePrefix("fd02::/64"), Gateway: gwB6},
	}
)

func routedRig(t *testing.T) *rig {
	r := newRig(t)
	r.sw.SetGatewayAddrs(42, []netip.Addr{gwA4, gwB4, gwA6, gwB6})
	r.sw.SetSubnets(42, subnets42)
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: mac1}, Location: fdb.Location{Port: 1}, Origin: fdb.OriginLocal, IPs: []netip.Addr{h1v4, h1v6}})
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: mac2}, Location: fdb.Location{Port: 2}, Origin: fdb.OriginLocal, IPs: []netip.Addr{h2v4, h2v6}})
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip, IPs: []netip.Addr{hRv4, hRv6}})
	return r
}

// ipFrame builds, with gopacket, a UDP packet (or with echo an ICMP echo
// request) from src to dst with ttl between the given MACs, of size bytes
// of IP packet, with DF on IPv4.
func ipFrame(t *testing.T, dstMAC, srcMAC fdb.MAC, src, dst netip.Addr, ttl uint8, size int, echo bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(dstMAC[:])}
	var ls []gopacket.SerializableLayer
	hdr := 20 + 8
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		var l4 gopacket.SerializableLayer
		if echo {
			ip.Protocol = layers.IPProtocolICMPv4
			l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
		} else {
			u := &layers.UDP{SrcPort: 40000, DstPort: 33434}
			_ = u.SetNetworkLayerForChecksum(ip)
			l4 = u
		}
		ls = []gopacket.SerializableLayer{eth, ip, l4}
	} else {
		hdr = 40 + 8
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if echo {
			ip.NextHeader = layers.IPProtocolICMPv6
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			_ = icmp.SetNetworkLayerForChecksum(ip)
			ls = []gopacket.SerializableLayer{eth, ip, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1}}
			hdr += 4
		} else {
			u := &layers.UDP{SrcPort: 40000, DstPort: 33434}
			_ = u.SetNetworkLayerForChecksum(ip)
			ls = []gopacket.SerializableLayer{eth, ip, u}
		}
	}
	ls = append(ls, gopacket.Payload(bytes.Repeat([]byte{'x'}, max(size-hdr, 0))))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRouteBetweenSubnets: frames to the router MAC are routed to a local
// port and to a remote VTEP, v4 and v6, rewritten as gopacket would build
// them one hop on, and nothing else sees them.
func TestRouteBetweenSubnets(t *testing.T) {
	r := routedRig(t)
	router := vtep.RouterMAC(42)
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		dstMAC   fdb.MAC
		remote   bool
	}{
		{"v4 local", h1v4, h2v4, mac2, false},
		{"v4 remote", h1v4, hRv4, macR, true},
		{"v6 local", h1v6, h2v6, mac2, false},
		{"v6 remote", h1v6, hRv6, macR, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.p1.Inject(ipFrame(t, router, mac1, tc.src, tc.dst, 64, 300, false))
			want := ipFrame(t, tc.dstMAC, router, tc.src, tc.dst, 63, 300, false)
			if tc.remote {
				r.expectDatagram(r.toB, "B", 42, want)
			} else {
				r.expectFrame(r.p2, want)
			}
			r.barrierFromPort()
			r.expectQuiet(r.p1, r.p2, r.p3)
		})
	}
	if got := r.sw.RouteStats().Routed; got != 4 {
		t.Errorf("routed %d, want 4", got)
	}
}

// expectICMP reads the frame d gets and checks it is an ICMP (v4) or
// ICMPv6 error of type/code from the gateway from to the host to, with
// rest as the header's last 4 bytes, and valid checksums.
func expectICMP(t *testing.T, d *taptest.Device, from, to netip.Addr, typ, code uint8, rest uint32) {
	t.Helper()
	f := d.Expect(t, wait)
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || eth.SrcMAC.String() != vtep.RouterMAC(42).String() || eth.DstMAC.String() != mac1.String() {
		t.Fatalf("not from the router MAC to mac1: %v", p)
	}
	if to.Is4() {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ip == nil || icmp == nil || !ip.SrcIP.Equal(from.AsSlice()) || !ip.DstIP.Equal(to.AsSlice()) ||
			icmp.TypeCode != layers.CreateICMPv4TypeCode(typ, code) || uint32(icmp.Id)<<16|uint32(icmp.Seq) != rest {
			t.Fatalf("want ICMP %d/%d (%d) %v -> %v, got %v", typ, code, rest, from, to, p)
		}
		// Recompute with gopacket and compare.
		want := icmp.Checksum
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, gopacket.Payload(icmp.Payload))
		if got := uint16(buf.Bytes()[2])<<8 | uint16(buf.Bytes()[3]); got != want {
			t.Errorf("ICMP checksum %#x, gopacket computes %#x", want, got)
		}
		return
	}
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip == nil || icmp == nil || !ip.SrcIP.Equal(from.AsSlice()) || !ip.DstIP.Equal(to.AsSlice()) ||
		icmp.TypeCode != layers.CreateICMPv6TypeCode(typ, code) || uint32(icmp.Payload[0])<<24|uint32(icmp.Payload[1])<<16|uint32(icmp.Payload[2])<<8|uint32(icmp.Payload[3]) != rest {
		t.Fatalf("want ICMPv6 %d/%d (%d) %v -> %v, got %v", typ, code, rest, from, to, p)
	}
	want := icmp.Checksum
	_ = icmp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, gopacket.Payload(icmp.Payload))
	if got := uint16(buf.Bytes()[2])<<8 | uint16(buf.Bytes()[3]); got != want {
		t.Errorf("ICMPv6 checksum %#x, gopacket computes %#x", want, got)
	}
}

// TestRouteErrors: time exceeded at TTL 1 and 0, host and net unreachable,
// fragmentation needed / packet too big for routed and bridged frames
// above the MTU, and an echo reply from a gateway.
func TestRouteErrors(t *testing.T) {
	r := routedRig(t)
	router := vtep.RouterMAC(42)
	for _, tc := range []struct {
		name      string
		dstMAC    fdb.MAC
		src, dst  netip.Addr
		ttl       uint8
		size      int
		echo      bool
		from      netip.Addr
		typ, code uint8
		rest      uint32
	}{
		{"v4 ttl 1", router, h1v4, h2v4, 1, 100, false, gwA4, 11, 0, 0},
		{"v4 ttl 0", router, h1v4, h2v4, 0, 100, false, gwA4, 11, 0, 0},
		{"v6 hop limit 1", router, h1v6, h2v6, 1, 100, false, gwA6, 3, 0, 0},
		{"v4 host unreachable", router, h1v4, netip.MustParseAddr("11.1.1.99"), 64, 100, false, gwA4, 3, 1, 0},
		{"v4 net unreachable", router, h1v4, netip.MustParseAddr("12.0.0.1"), 64, 100, false, gwA4, 3, 0, 0},
		{"v6 address unreachable", router, h1v6, netip.MustParseAddr("fd02::99"), 64, 100, false, gwA6, 1, 3, 0},
		{"v6 no route", router, h1v6, netip.MustParseAddr("fd03::1"), 64, 100, false, gwA6, 1, 0, 0},
		{"v4 frag needed, routed", router, h1v4, h2v4, 64, 1500, false, gwA4, 3, 4, 1450},
		{"v4 frag needed, bridged", mac2, h1v4, netip.MustParseAddr("10.1.1.3"), 64, 1500, false, gwA4, 3, 4, 1450},
		{"v6 packet too big, routed", router, h1v6, h2v6, 64, 1500, false, gwA6, 2, 0, 1450},
		{"v6 packet too big, bridged", mac2, h1v6, netip.MustParseAddr("fd01::3"), 64, 1500, false, gwA6, 2, 0, 1450},
		{"v4 ping gateway", router, h1v4, gwA4, 64, 100, true, gwA4, 0, 0, 1<<16 | 1},
		{"v6 ping other gateway", router, h1v6, gwB6, 64, 100, true, gwB6, 129, 0, 1<<16 | 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.p1.Inject(ipFrame(t, tc.dstMAC, mac1, tc.src, tc.dst, tc.ttl, tc.size, tc.echo))
			expectICMP(t, r.p1, tc.from, tc.src, tc.typ, tc.code, tc.rest)
			r.barrierFromPort()
			r.expectQuiet(r.p1, r.p2, r.p3)
		})
	}
	st := r.sw.RouteStats()
	if st.TimeExceeded != 3 || st.Unreachable != 4 || st.TooBig != 4 || st.EchoReplies != 2 || st.Routed != 0 {
		t.Errorf("route stats %+v", st)
	}
	if drops(r.sw, "ttl_exceeded") != 3 || drops(r.sw, "no_route") != 4 || drops(r.sw, "mtu") != 4 {
		t.Errorf("drops %v", r.sw.Stats().Drops)
	}
	// No error for an IPv4 packet without DF, and nothing routed to or
	// from a link-local address: dropped.
	big := ipFrame(t, router, mac1, h1v4, h2v4, 64, 1500, false)
	big[14+6] = 0 // DF off; the header checksum no longer matters here
	r.p1.Inject(big)
	r.fdb.BindIP(fdb.Key{VNI: 42, MAC: mac2}, netip.MustParseAddr("fe80::2"))
	r.p1.Inject(ipFrame(t, router, mac1, netip.MustParseAddr("fe80::1"), h2v6, 64, 100, false))
	r.p1.Inject(ipFrame(t, router, mac1, h1v6, netip.MustParseAddr("fe80::2"), 64, 100, false))
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if got := drops(r.sw, "no_route"); got != 6 {
		t.Errorf("no_route drops %d, want 6", got)
	}
}

// TestRouteErrorRateLimit: a port gets at most route.ErrorBurst errors at
// one instant (the clock stands still); the rest are counted.
func TestRouteErrorRateLimit(t *testing.T) {
	checkGoroutines(t)
	r := &rig{t: t, net: vteptest.NewNetwork()}
	r.toB, r.toC = r.net.Tap(peerB), r.net.Tap(peerC)
	now := time.Unix(1e9, 0)
	r.fdb = fdb.New(fdb.Config{Now: func() time.Time { return now }})
	sw, err := vtep.New(vtep.Config{Conn: r.net.Listen(self), FDB: r.fdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	r.sw = sw
	r.p1, r.p2 = taptest.New("p1", 1450), taptest.New("p2", 1450)
	for _, d := range []*taptest.Device{r.p1, r.p2} {
		if _, err := sw.AddPort(vtep.PortConfig{VNI: 42, Device: d}); err != nil {
			t.Fatal(err)
		}
	}
	sw.SetPeers(42, []netip.AddrPort{peerB, peerC})
	sw.SetGatewayAddrs(42, []netip.Addr{gwA4, gwB4})
	sw.SetSubnets(42, subnets42)
	const sent = route.ErrorBurst + 10
	f := ipFrame(t, vtep.RouterMAC(42), mac1, h1v4, h2v4, 1, 100, false)
	for range sent {
		r.p1.Inject(f)
	}
	r.barrierFromPort()
	got := 0
	for len(r.p1.Out) > 0 {
		<-r.p1.Out
		got++
	}
	st := sw.RouteStats()
	if got != route.ErrorBurst || st.TimeExceeded != route.ErrorBurst || st.Limited != sent-route.ErrorBurst {
		t.Errorf("%d errors written, stats %+v; want %d sent, %d limited", got, st, route.ErrorBurst, sent-route.ErrorBurst)
	}
}

// TestRouterMACSpoofing: no port may send from a router MAC, and a secure
// port may not claim a gateway address in ARP or NA; frames from afar
// with a router MAC as their source are not learned.
func TestRouterMACSpoofing(t *testing.T) {
	r := routedRig(t)
	router := vtep.RouterMAC(42)
	sec := taptest.New("sec", 1450)
	macS := fdb.MAC{0x02, 0, 0, 0, 0, 0x05}
	if _, err := r.sw.AddPort(vtep.PortConfig{VNI: 42, Device: sec, Secure: true, MAC: macS, IPs: []netip.Addr{netip.MustParseAddr("10.1.1.5")}}); err != nil {
		t.Fatal(err)
	}
	r.p1.Inject(frame(fdb.Broadcast, router, "spoof"))
	r.barrierFromPort()
	r.expectFrame(sec, frame(fdb.Broadcast, mac1, "barrier"))
	sec.Inject(arpReply(t, macS, "10.1.1.1", mac1, "10.1.1.2"))
	sec.Inject(neighborAdvertisement(t, macS, "fd01::1", 0x20))
	m := frame(fdb.Broadcast, macS, "barrier")
	sec.Inject(m) // a barrier from sec
	r.expectFrame(r.p1, m)
	r.expectFrame(r.p2, m)
	r.expectDatagram(r.toB, "B", 42, m)
	r.expectDatagram(r.toC, "C", 42, m)
	r.expectQuiet(r.p1, r.p2, r.p3, sec)
	if got := drops(r.sw, "port_security"); got != 3 {
		t.Errorf("port_security drops %d, want 3", got)
	}
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: router}); ok {
		t.Error("the router MAC was learned from a port")
	}
	r.net.Send(peerB, self, vxlan(42, ipFrame(t, mac1, router, hRv4, h1v4, 63, 100, false)))
	r.p1.Expect(t, wait)
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: router}); ok {
		t.Error("the router MAC was learned from the wire")
	}
}

// arpReply is an ARP reply from src claiming srcIP, to dst at dstIP.
func arpReply(t *testing.T, src fdb.MAC, srcIP string, dst fdb.MAC, dstIP string) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: src[:], DstMAC: dst[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: src[:], SourceProtAddress: netip.MustParseAddr(srcIP).AsSlice(),
			DstHwAddress: dst[:], DstProtAddress: netip.MustParseAddr(dstIP).AsSlice(),
		})
}

// TestRoutedFloodPolicy: a routed frame whose destination MAC the FDB
// cannot place is unknown unicast like a bridged one: the flood policy
// drops it, or it floods, rewritten, to the VNI's other ports and peers.
func TestRoutedFloodPolicy(t *testing.T) {
	r := routedRig(t)
	router := vtep.RouterMAC(42)
	macX := fdb.MAC{0x02, 0, 0, 0, 0, 0x77}
	hX := netip.MustParseAddr("11.1.1.77")
	r.fdb.BindIP(fdb.Key{VNI: 42, MAC: macX}, hX) // an address known, its MAC's place not
	r.sw.SetFloodPolicy(42, vtep.FloodPolicy{UnknownUnicast: vtep.Drop})
	r.p1.Inject(ipFrame(t, router, mac1, h1v4, hX, 64, 100, false))
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if drops(r.sw, "flood_policy") != 1 || r.sw.RouteStats().Routed != 1 {
		t.Fatalf("flood_policy drops %d, stats %+v", drops(r.sw, "flood_policy"), r.sw.RouteStats())
	}
	r.sw.SetFloodPolicy(42, vtep.FloodPolicy{})
	r.p1.Inject(ipFrame(t, router, mac1, h1v4, hX, 64, 100, false))
	want := ipFrame(t, macX, router, h1v4, hX, 63, 100, false)
	r.expectFrame(r.p2, want)
	r.expectDatagram(r.toB, "B", 42, want)
	r.expectDatagram(r.toC, "C", 42, want)
}

// TestRouteBackOutSamePort: a port with hosts of two subnets behind it (a
// host port bridged to several, say) gets back what the gateway routes
// between them: routed, it is no hairpin.
func TestRouteBackOutSamePort(t *testing.T) {
	r := routedRig(t)
	router := vtep.RouterMAC(42)
	macZ := fdb.MAC{0x02, 0, 0, 0, 0, 0x0e}
	hZ := netip.MustParseAddr("11.1.1.14")
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macZ}, Location: fdb.Location{Port: 1}, Origin: fdb.OriginLocal, IPs: []netip.Addr{hZ}})
	r.p1.Inject(ipFrame(t, router, mac1, h1v4, hZ, 64, 100, false))
	r.expectFrame(r.p1, ipFrame(t, macZ, router, h1v4, hZ, 63, 100, false))
	// Bridged, it still is.
	r.p1.Inject(ipFrame(t, macZ, mac1, h1v4, hZ, 64, 100, false))
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if got := drops(r.sw, "hairpin"); got != 1 {
		t.Errorf("hairpin drops %d, want 1", got)
	}
}
