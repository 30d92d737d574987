package vtep_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func arpRequest(t *testing.T, src fdb.MAC, srcIP, target string) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: src[:], DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: src[:], SourceProtAddress: netip.MustParseAddr(srcIP).AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: netip.MustParseAddr(target).AsSlice(),
		})
}

func neighborSolicitation(t *testing.T, src fdb.MAC, srcIP, target string) []byte {
	tgt := netip.MustParseAddr(target)
	snm := netip.MustParseAddr("ff02::1:ff00:0").As16()
	t16 := tgt.As16()
	copy(snm[13:], t16[13:])
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: netip.MustParseAddr(srcIP).AsSlice(), DstIP: snm[:]}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	_ = icmp.SetNetworkLayerForChecksum(ip6)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: tgt.AsSlice()}
	if srcIP != "::" {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: src[:]}}
	}
	dst := net.HardwareAddr{0x33, 0x33, 0xff, snm[13], snm[14], snm[15]}
	return serialize(t, &layers.Ethernet{SrcMAC: src[:], DstMAC: dst, EthernetType: layers.EthernetTypeIPv6}, ip6, icmp, ns)
}

func TestProxyARP(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	r.p1.Inject(arpRequest(t, mac1, "10.0.9.1", "10.0.9.2"))
	reply := r.p1.Expect(t, wait)
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || arp.Operation != layers.ARPReply || net.HardwareAddr(arp.SourceHwAddress).String() != macR.String() ||
		net.IP(arp.SourceProtAddress).String() != "10.0.9.2" || net.HardwareAddr(arp.DstHwAddress).String() != mac1.String() {
		t.Fatalf("reply: %v", p)
	}
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3) // the request went nowhere else
	// The requester's own binding was learned.
	if m, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr("10.0.9.1")}); !ok || m != mac1 {
		t.Errorf("requester binding: %v %v", m, ok)
	}
	if got := r.sw.Stats().Proxy; got.ARPAnswered != 1 {
		t.Errorf("proxy stats %+v", got)
	}
}

func TestProxyND(t *testing.T) {
	r := newRig(t)
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		IPs: []netip.Addr{netip.MustParseAddr("fd00::2")}})
	r.p1.Inject(neighborSolicitation(t, mac1, "fd00::1", "fd00::2"))
	reply := r.p1.Expect(t, wait)
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || !na.Solicited() || net.IP(na.TargetAddress).String() != "fd00::2" {
		t.Fatalf("reply: %v", p)
	}
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)

	// A duplicate-address probe is never answered, even for a known address:
	// it floods like any multicast.
	dad := neighborSolicitation(t, mac1, "::", "fd00::2")
	r.p1.Inject(dad)
	r.expectFrame(r.p2, dad)
	r.expectDatagram(r.toB, "B", 42, dad)
	r.expectDatagram(r.toC, "C", 42, dad)
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if got := r.sw.Stats().Proxy; got.NDAnswered != 1 {
		t.Errorf("proxy stats %+v", got)
	}
}

func TestFloodPolicy(t *testing.T) {
	r := newRig(t)
	unknownARP := arpRequest(t, mac1, "10.0.9.1", "10.0.9.77")
	r.p1.Inject(unknownARP) // default policy: flooded
	r.expectFrame(r.p2, unknownARP)
	r.expectDatagram(r.toB, "B", 42, unknownARP)
	r.expectDatagram(r.toC, "C", 42, unknownARP)

	pol, err := vtep.ParseFloodPolicy("drop")
	if err != nil {
		t.Fatal(err)
	}
	r.sw.SetFloodPolicy(42, pol)
	r.p1.Inject(unknownARP)                                          // dropped
	r.p1.Inject(frame(fdb.MAC{2, 9, 9, 9, 9, 9}, mac1, "unknown"))   // dropped
	r.p1.Inject(frame(fdb.Broadcast, mac1, "dhcp"))                  // dropped
	mcast := frame(fdb.MAC{0x01, 0, 0x5e, 0, 0, 0xfb}, mac1, "mdns") // multicast still floods
	r.p1.Inject(mcast)
	r.expectFrame(r.p2, mcast)
	r.expectDatagram(r.toB, "B", 42, mcast)
	r.expectDatagram(r.toC, "C", 42, mcast)
	r.expectQuiet(r.p1, r.p2, r.p3)
	st := r.sw.Stats()
	if st.Proxy.Flooded != 1 || st.Proxy.Dropped != 1 || st.Drops["flood_policy"] != 3 {
		t.Errorf("proxy %+v, flood_policy drops %d; want 1 flooded, 1 dropped, 3 policy drops", st.Proxy, st.Drops["flood_policy"])
	}
}

func TestLearnBindingsFromWire(t *testing.T) {
	r := newRig(t)
	req := arpRequest(t, macR, "10.0.9.2", "10.0.9.1")
	r.net.Send(peerB, self, vxlan(42, req))
	r.expectFrame(r.p1, req)
	r.expectFrame(r.p2, req)
	if m, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr("10.0.9.2")}); !ok || m != macR {
		t.Errorf("binding from the wire: %v %v", m, ok)
	}
}

func TestAnnounceIP(t *testing.T) {
	r := newRig(t)
	r.barrierFromPort() // mac1 on p1
	r.sw.AnnounceIP(42, netip.MustParseAddr("10.0.9.1"), mac1)
	g := r.p2.Expect(t, wait)
	arp, ok := gopacket.NewPacket(g, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || net.IP(arp.SourceProtAddress).String() != "10.0.9.1" || net.IP(arp.DstProtAddress).String() != "10.0.9.1" {
		t.Fatalf("gratuitous ARP: % x", g)
	}
	r.sw.AnnounceIP(42, netip.MustParseAddr("fd00::1"), mac1)
	na := r.p2.Expect(t, wait)
	if _, ok := gopacket.NewPacket(na, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement); !ok {
		t.Fatalf("unsolicited NA: % x", na)
	}
	r.expectQuiet(r.p1, r.p3) // not to mac1's own port, not to another VNI
	if got := r.sw.Stats().Proxy.GratuitousSent; got != 2 {
		t.Errorf("gratuitous sent %d, want 2", got)
	}
}

func TestParseFloodPolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    vtep.FloodPolicy
		wantErr bool
	}{
		{"", vtep.FloodPolicy{}, false},
		{"flood", vtep.FloodPolicy{}, false},
		{"drop", vtep.FloodPolicy{UnknownARP: vtep.Drop, UnknownUnicast: vtep.Drop, Broadcast: vtep.Drop}, false},
		{"arp=drop", vtep.FloodPolicy{UnknownARP: vtep.Drop}, false},
		{"arp=drop,unicast=flood,broadcast=drop", vtep.FloodPolicy{UnknownARP: vtep.Drop, Broadcast: vtep.Drop}, false},
		{"arp=maybe", vtep.FloodPolicy{}, true},
		{"multicast=drop", vtep.FloodPolicy{}, true},
		{"arp", vtep.FloodPolicy{}, true},
	}
	for _, tt := range tests {
		got, err := vtep.ParseFloodPolicy(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseFloodPolicy(%q) = %+v, %v", tt.in, got, err)
		}
		if !tt.wantErr {
			if back, _ := vtep.ParseFloodPolicy(got.String()); back != got {
				t.Errorf("round trip of %q via %q = %+v", tt.in, got.String(), back)
			}
		}
	}
}

func neighborAdvertisement(t *testing.T, src fdb.MAC, target string, flags uint8) []byte {
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: netip.MustParseAddr(target).AsSlice(), DstIP: netip.MustParseAddr("ff02::1").AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	_ = icmp.SetNetworkLayerForChecksum(ip6)
	na := &layers.ICMPv6NeighborAdvertisement{Flags: flags, TargetAddress: netip.MustParseAddr(target).AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: src[:]}}}
	return serialize(t, &layers.Ethernet{SrcMAC: src[:], DstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1},
		EthernetType: layers.EthernetTypeIPv6}, ip6, icmp, na)
}

// TestLearnNARules: a router's advertisement teaches nothing (the proxy
// would answer for it with R=0), and one with Override clear does not
// replace a different known binding.
func TestLearnNARules(t *testing.T) {
	const router, solicited, override = 0x80, 0x40, 0x20
	tests := []struct {
		name  string
		known bool // fd00::9 already bound to mac2
		flags uint8
		want  fdb.MAC
		ok    bool
	}{
		{"plain", false, override, macR, true},
		{"router", false, router | override, fdb.MAC{}, false},
		{"no override, unknown", false, 0, macR, true},
		{"no override, known elsewhere", true, 0, mac2, true},
		{"override, known elsewhere", true, override, macR, true},
		{"solicited to multicast is invalid", false, override | solicited, fdb.MAC{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			ip := netip.MustParseAddr("fd00::9")
			if tt.known {
				r.fdb.BindIP(fdb.Key{VNI: 42, MAC: mac2}, ip)
			}
			na := neighborAdvertisement(t, macR, "fd00::9", tt.flags)
			r.net.Send(peerB, self, vxlan(42, na))
			r.expectFrame(r.p1, na)
			r.expectFrame(r.p2, na)
			got, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: ip})
			if ok != tt.ok || got != tt.want {
				t.Errorf("binding %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestLearnSourceIP: the source address of IP frames from a port is bound
// to the frame's source MAC when nothing else binds it, up to four per MAC,
// and never steals an address bound elsewhere.
func TestLearnSourceIP(t *testing.T) {
	r := newRig(t)
	ipv4 := func(src string) []byte {
		return serialize(t,
			// To its own MAC: dropped as hairpin after learning, so only the barrier travels.
			&layers.Ethernet{SrcMAC: mac1[:], DstMAC: mac1[:], EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
				SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: net.IP{10, 0, 9, 99}},
			gopacket.Payload([]byte("x")))
	}
	r.fdb.BindIP(fdb.Key{VNI: 42, MAC: mac2}, netip.MustParseAddr("10.0.9.50"))
	for _, src := range []string{"10.0.9.1", "10.0.9.50", "10.0.9.2", "10.0.9.3", "10.0.9.4", "10.0.9.5"} {
		r.p1.Inject(ipv4(src))
	}
	r.barrierFromPort()
	want := map[string]bool{"10.0.9.1": true, "10.0.9.2": true, "10.0.9.3": true, "10.0.9.4": true}
	for _, a := range []string{"10.0.9.1", "10.0.9.2", "10.0.9.3", "10.0.9.4", "10.0.9.5"} {
		m, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr(a)})
		if ok != want[a] || (ok && m != mac1) {
			t.Errorf("%s bound to %v %v, want bound to mac1: %v", a, m, ok, want[a])
		}
	}
	if m, _ := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr("10.0.9.50")}); m != mac2 {
		t.Errorf("10.0.9.50 stolen: bound to %v", m)
	}
}

// TestPortSecurity: a secure port drops frames from any MAC but its own,
// and ARP or NA claiming an address that is not its own; what it may send
// passes.
func TestPortSecurity(t *testing.T) {
	r := newRig(t)
	macS := fdb.MAC{0x02, 0, 0, 0, 0, 0x44}
	ps := taptest.New("secure", 1450)
	if _, err := r.sw.AddPort(vtep.PortConfig{VNI: 42, Device: ps, Secure: true, MAC: macS,
		IPs: []netip.Addr{netip.MustParseAddr("10.0.9.44")}}); err != nil {
		t.Fatal(err)
	}
	ps.Inject(frame(fdb.Broadcast, fdb.MAC{0x02, 6, 6, 6, 6, 6}, "spoofed source MAC"))
	ps.Inject(arpRequest(t, macS, "10.0.9.45", "10.0.9.1"))     // claims another address
	ps.Inject(neighborAdvertisement(t, macS, "fd00::45", 0x20)) // claims another address
	ok := arpRequest(t, macS, "10.0.9.44", "10.0.9.1")          // its own: flooded
	ps.Inject(ok)
	r.expectFrame(r.p1, ok)
	r.expectFrame(r.p2, ok)
	r.expectDatagram(r.toB, "B", 42, ok)
	r.expectDatagram(r.toC, "C", 42, ok)
	r.expectQuiet(r.p1, r.p2, r.p3)
	if got := drops(r.sw, "port_security"); got != 3 {
		t.Errorf("port_security drops = %d, want 3", got)
	}
	if _, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr("10.0.9.45")}); ok {
		t.Error("a spoofed claim was learned")
	}
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: fdb.MAC{0x02, 6, 6, 6, 6, 6}}); ok {
		t.Error("a spoofed source MAC was learned")
	}
}

// TestProxyAnswersOnlyVouched: the proxy answers a question (ARP request,
// neighbour solicitation) only about an address that a local port or the
// control plane vouches for. An address known only from decapsulated
// traffic may have changed hands since (its host gone, another with its own
// MAC in its place), so the question floods like an unknown one and the
// address's real owner answers (defect 1 of issue 13).
func TestProxyAnswersOnlyVouched(t *testing.T) {
	const ip4, ip6 = "10.0.9.2", "fd00::2"
	gossip := func(ip string, origin fdb.Origin) func(*rig) fdb.MAC {
		return func(r *rig) fdb.MAC {
			r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: origin,
				IPs: []netip.Addr{netip.MustParseAddr(ip)}})
			return macR
		}
	}
	tests := []struct {
		name   string
		target string
		known  func(*rig) fdb.MAC // makes target known; returns the MAC it is bound to
		answer bool
	}{
		{"ARP, learned from the wire", ip4, func(r *rig) fdb.MAC {
			// B's host asks for p1's host: its ARP request teaches 10.0.9.2.
			req := arpRequest(r.t, macR, ip4, "10.0.9.1")
			r.net.Send(peerB, self, vxlan(42, req))
			r.expectFrame(r.p1, req)
			r.expectFrame(r.p2, req)
			return macR
		}, false},
		{"ARP, gossip", ip4, gossip(ip4, fdb.OriginGossip), true},
		{"ARP, static", ip4, gossip(ip4, fdb.OriginStatic), true},
		{"ARP, local port", ip4, func(r *rig) fdb.MAC {
			req := arpRequest(r.t, mac2, ip4, "10.0.9.99") // an unknown question: flooded
			r.p2.Inject(req)
			r.expectFrame(r.p1, req)
			r.expectDatagram(r.toB, "B", 42, req)
			r.expectDatagram(r.toC, "C", 42, req)
			return mac2
		}, true},
		{"NS, learned from the wire", ip6, func(r *rig) fdb.MAC {
			na := neighborAdvertisement(r.t, macR, ip6, 0x20) // override
			r.net.Send(peerB, self, vxlan(42, na))
			r.expectFrame(r.p1, na)
			r.expectFrame(r.p2, na)
			return macR
		}, false},
		{"NS, gossip", ip6, gossip(ip6, fdb.OriginGossip), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			mac := tt.known(r)
			target := netip.MustParseAddr(tt.target)
			if m, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: target}); !ok || m != mac {
				t.Fatalf("binding of %v: %v %v, want %v: the test proves nothing", target, m, ok, mac)
			}
			var q []byte
			if target.Is4() {
				q = arpRequest(t, mac1, "10.0.9.1", tt.target)
			} else {
				q = neighborSolicitation(t, mac1, "fd00::1", tt.target)
			}
			r.p1.Inject(q)
			if tt.answer {
				checkProxyReply(t, r.p1.Expect(t, wait), target, mac)
			} else {
				r.expectFrame(r.p2, q)
				r.expectDatagram(r.toB, "B", 42, q)
				r.expectDatagram(r.toC, "C", 42, q)
			}
			r.barrierFromPort()
			r.expectQuiet(r.p1, r.p2, r.p3)
			st := r.sw.Stats().Proxy
			if answered := st.ARPAnswered + st.NDAnswered; tt.answer != (answered == 1) || answered > 1 {
				t.Errorf("proxy stats %+v, want answered: %v", st, tt.answer)
			}
		})
	}
}

// TestProxyAnswersOnceVouched: an address first learned from the wire is
// answered for once gossip announces it.
func TestProxyAnswersOnceVouched(t *testing.T) {
	r := newRig(t)
	req := arpRequest(t, macR, "10.0.9.2", "10.0.9.1")
	r.net.Send(peerB, self, vxlan(42, req))
	r.expectFrame(r.p1, req)
	r.expectFrame(r.p2, req)
	q := arpRequest(t, mac1, "10.0.9.1", "10.0.9.2")
	r.p1.Inject(q)
	r.expectFrame(r.p2, q)
	r.expectDatagram(r.toB, "B", 42, q)
	r.expectDatagram(r.toC, "C", 42, q)
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	r.p1.Inject(q)
	checkProxyReply(t, r.p1.Expect(t, wait), netip.MustParseAddr("10.0.9.2"), macR)
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)
	if st := r.sw.Stats().Proxy; st.ARPAnswered != 1 || st.Flooded != 1 {
		t.Errorf("proxy stats %+v, want 1 answered, 1 flooded", st)
	}
}

// checkProxyReply fails t unless frame is the proxy's answer to mac1 that
// target is at mac: an ARP reply, or a solicited neighbour advertisement.
func checkProxyReply(t *testing.T, frame []byte, target netip.Addr, mac fdb.MAC) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || eth.DstMAC.String() != mac1.String() || eth.SrcMAC.String() != mac.String() {
		t.Fatalf("not a reply from %v to %v: %v", mac, mac1, p)
	}
	if target.Is4() {
		arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		if !ok || arp.Operation != layers.ARPReply || net.IP(arp.SourceProtAddress).String() != target.String() ||
			net.HardwareAddr(arp.SourceHwAddress).String() != mac.String() {
			t.Fatalf("ARP reply: %v", p)
		}
		return
	}
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || !na.Solicited() || net.IP(na.TargetAddress).String() != target.String() {
		t.Fatalf("neighbour advertisement: %v", p)
	}
}
