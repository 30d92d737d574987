package route

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

var (
	hostMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	otherMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
	routerMAC = [6]byte{0x02, 'o', 'v', 0, 0x10, 0x01}
	src4      = netip.MustParseAddr("10.1.1.2")
	dst4      = netip.MustParseAddr("11.1.1.2")
	gw4       = netip.MustParseAddr("10.1.1.1")
	src6      = netip.MustParseAddr("fd01::2")
	dst6      = netip.MustParseAddr("fd02::2")
	gw6       = netip.MustParseAddr("fd01::1")
)

// udpFrame builds, with gopacket, an Ethernet frame from hostMAC to
// routerMAC carrying a UDP datagram of payload bytes from src to dst with
// ttl, DF set on IPv4, checksums computed; opts adds IPv4 options.
func udpFrame(t testing.TB, src, dst netip.Addr, ttl uint8, payload int, opts bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(hostMAC[:]), DstMAC: net.HardwareAddr(routerMAC[:])}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 33434}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
			Id: 0x1234, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if opts {
			ip4.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOP NOP NOP EOL
		}
		_ = udp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		_ = udp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	data := make([]byte, payload)
	for i := range data {
		data[i] = byte(i)
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(data)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parse(t testing.TB, frame []byte) Packet {
	t.Helper()
	var p Packet
	if !Parse(frame, 14, binary.BigEndian.Uint16(frame[12:14]), &p) {
		t.Fatalf("Parse failed on % x", frame[:min(len(frame), 64)])
	}
	return p
}

func TestParse(t *testing.T) {
	f := udpFrame(t, src4, dst4, 64, 100, true)
	p := parse(t, f)
	want := Packet{L3: 14, HdrLen: 24, Len: 24 + 8 + 100, Src: src4, Dst: dst4, TTL: 64, Proto: 17, DF: true}
	if p != want {
		t.Errorf("IPv4: got %+v, want %+v", p, want)
	}
	p = parse(t, udpFrame(t, src6, dst6, 1, 10, false))
	want = Packet{V6: true, L3: 14, HdrLen: 40, Len: 40 + 8 + 10, Src: src6, Dst: dst6, TTL: 1, Proto: 17}
	if p != want {
		t.Errorf("IPv6: got %+v, want %+v", p, want)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		et    uint16
	}{
		{"arp", f, 0x0806},
		{"short", f[:14+19], 0x0800},
		{"options cut", f[:14+22], 0x0800},
		{"v6 as v4", udpFrame(t, src6, dst6, 1, 10, false), 0x0800},
		{"v4 as v6", f, 0x86dd},
	} {
		if Parse(tc.frame, 14, tc.et, &p) {
			t.Errorf("%s: Parse accepted", tc.name)
		}
	}
}

// TestForward checks the rewrite of IPv4 (with and without options) and
// IPv6 frames against frames gopacket builds with the TTL one less.
func TestForward(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		ttl      uint8
		opts     bool
		ok       bool
	}{
		{"v4 ttl 64", src4, dst4, 64, false, true},
		{"v4 ttl 2", src4, dst4, 2, false, true},
		{"v4 ttl 255 options", src4, dst4, 255, true, true},
		{"v4 ttl 1", src4, dst4, 1, false, false},
		{"v4 ttl 0", src4, dst4, 0, false, false},
		{"v6 hop limit 64", src6, dst6, 64, false, true},
		{"v6 hop limit 2", src6, dst6, 2, false, true},
		{"v6 hop limit 1", src6, dst6, 1, false, false},
		{"v6 hop limit 0", src6, dst6, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := udpFrame(t, tc.src, tc.dst, tc.ttl, 200, tc.opts)
			orig := bytes.Clone(f)
			p := parse(t, f)
			if got := Forward(f, &p, routerMAC, otherMAC); got != tc.ok {
				t.Fatalf("Forward = %v, want %v", got, tc.ok)
			}
			if !tc.ok {
				if !bytes.Equal(f, orig) {
					t.Fatal("a refused frame was changed")
				}
				return
			}
			want := udpFrame(t, tc.src, tc.dst, tc.ttl-1, 200, tc.opts)
			copy(want[0:6], otherMAC[:])
			copy(want[6:12], routerMAC[:])
			if !bytes.Equal(f, want) {
				t.Errorf("rewritten frame differs from gopacket's\n got % x\nwant % x", f[:60], want[:60])
			}
			if p.TTL != tc.ttl-1 {
				t.Errorf("p.TTL = %d", p.TTL)
			}
		})
	}
}

// TestCsumUpdate checks the incremental update against a full recompute
// for every TTL and a spread of headers.
func TestCsumUpdate(t *testing.T) {
	f := udpFrame(t, src4, dst4, 64, 0, false)
	ip := f[14:34]
	for id := range 4096 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(id*16+id%7))
		for ttl := 2; ttl < 256; ttl++ {
			ip[8] = byte(ttl)
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:12], ^offload.Checksum(ip, 0))
			old := binary.BigEndian.Uint16(ip[8:10])
			ip[8]--
			got := csumUpdate(binary.BigEndian.Uint16(ip[10:12]), old, old-0x0100)
			ip[10], ip[11] = 0, 0
			want := ^offload.Checksum(ip, 0)
			// Both are valid encodings; RFC 1624 eqn. 3 never gives 0x0000
			// where the recompute gives 0xffff, and a header's sum is never
			// zero, so they agree exactly.
			if got != want {
				t.Fatalf("id %d ttl %d: incremental %#04x, recomputed %#04x", id, ttl, got, want)
			}
		}
	}
}

// verifyChecksums checks the IPv4 header checksum and the ICMP or ICMPv6
// checksum of the error frame e.
func verifyChecksums(t *testing.T, e []byte) {
	t.Helper()
	p := parse(t, e)
	l4 := e[p.L3+p.HdrLen : p.L3+p.Len]
	if p.V6 {
		if offload.Checksum(l4, offload.PseudoHeaderSum6(p.Src, p.Dst, uint32(len(l4)), protoICMPv6)) != 0xffff {
			t.Error("ICMPv6 checksum does not verify")
		}
		return
	}
	if offload.Checksum(e[p.L3:p.L3+p.HdrLen], 0) != 0xffff {
		t.Error("IPv4 header checksum does not verify")
	}
	if offload.Checksum(l4, 0) != 0xffff {
		t.Error("ICMP checksum does not verify")
	}
}

func TestBuildError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		src, dst  netip.Addr
		from      netip.Addr
		payload   int
		cut       int // read buffer holds only this much of the frame (0: all)
		room      int // buffer bytes beyond the frame
		kind      Kind
		typ, code uint8
		mtu       uint32 // in the ICMP header's last 4 bytes
		quote     int
	}{
		{name: "v4 time exceeded", src: src4, dst: dst4, from: gw4, payload: 32, room: 64, kind: TimeExceeded, typ: 11, code: 0, quote: 20 + 8 + 32},
		{name: "v4 host unreachable", src: src4, dst: dst4, from: gw4, payload: 32, room: 64, kind: HostUnreachable, typ: 3, code: 1, quote: 60},
		{name: "v4 net unreachable", src: src4, dst: dst4, from: gw4, payload: 32, room: 64, kind: NetUnreachable, typ: 3, code: 0, quote: 60},
		{name: "v4 frag needed, cut frame", src: src4, dst: dst4, from: gw4, payload: 1472, cut: 14 + 1450 + 4 + 1, kind: TooBig, typ: 3, code: 4, mtu: 1450, quote: 576 - 28},
		{name: "v4 quote cut by room", src: src4, dst: dst4, from: gw4, payload: 32, room: 0, kind: TimeExceeded, typ: 11, quote: 60 - 28},
		{name: "v6 hop limit", src: src6, dst: dst6, from: gw6, payload: 32, room: 64, kind: TimeExceeded, typ: 3, code: 0, quote: 40 + 8 + 32},
		{name: "v6 address unreachable", src: src6, dst: dst6, from: gw6, payload: 32, room: 64, kind: HostUnreachable, typ: 1, code: 3, quote: 80},
		{name: "v6 no route", src: src6, dst: dst6, from: gw6, payload: 32, room: 64, kind: NetUnreachable, typ: 1, code: 0, quote: 80},
		{name: "v6 packet too big, cut frame", src: src6, dst: dst6, from: gw6, payload: 1452, cut: 14 + 1450 + 4 + 1, kind: TooBig, typ: 2, mtu: 1450, quote: 1280 - 48},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := udpFrame(t, tc.src, tc.dst, 1, tc.payload, false)
			orig := bytes.Clone(f)
			if tc.cut > 0 {
				f = f[:tc.cut]
			}
			n := len(f)
			b := append(f, make([]byte, tc.room)...)
			p := parse(t, b[:n])
			if !MayError(b[:n], &p) {
				t.Fatal("MayError = false")
			}
			m := BuildError(b, n, &p, tc.kind, tc.from, routerMAC, 1450)
			if m == 0 {
				t.Fatal("BuildError = 0")
			}
			e := b[:m]
			pkt := gopacket.NewPacket(e, layers.LayerTypeEthernet, gopacket.Default)
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.DstMAC, hostMAC[:]) || !bytes.Equal(eth.SrcMAC, routerMAC[:]) {
				t.Errorf("MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
			}
			var icmpHdr []byte
			if tc.src.Is4() {
				ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ip.SrcIP.Equal(tc.from.AsSlice()) || !ip.DstIP.Equal(tc.src.AsSlice()) || ip.Protocol != layers.IPProtocolICMPv4 || ip.TTL != 64 {
					t.Errorf("IPv4 header %v -> %v proto %v ttl %d", ip.SrcIP, ip.DstIP, ip.Protocol, ip.TTL)
				}
				if int(ip.Length) != m-14 || ip.Length > 576 {
					t.Errorf("IPv4 length %d, frame %d", ip.Length, m)
				}
				icmp := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if icmp.TypeCode != layers.CreateICMPv4TypeCode(tc.typ, tc.code) {
					t.Errorf("type/code %v, want %d/%d", icmp.TypeCode, tc.typ, tc.code)
				}
				icmpHdr = e[34:42]
			} else {
				ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if !ip.SrcIP.Equal(tc.from.AsSlice()) || !ip.DstIP.Equal(tc.src.AsSlice()) || ip.NextHeader != layers.IPProtocolICMPv6 {
					t.Errorf("IPv6 header %v -> %v nh %v", ip.SrcIP, ip.DstIP, ip.NextHeader)
				}
				if m-14 > 1280 {
					t.Errorf("IPv6 error of %d bytes", m-14)
				}
				icmp := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				if icmp.TypeCode != layers.CreateICMPv6TypeCode(tc.typ, tc.code) {
					t.Errorf("type/code %v, want %d/%d", icmp.TypeCode, tc.typ, tc.code)
				}
				icmpHdr = e[54:62]
			}
			if got := binary.BigEndian.Uint32(icmpHdr[4:8]); got != tc.mtu {
				t.Errorf("ICMP rest of header %d, want %d", got, tc.mtu)
			}
			verifyChecksums(t, e)
			q := e[len(e)-tc.quote:]
			ipLen := 40
			if tc.src.Is4() {
				ipLen = 20
			}
			if m != 14+ipLen+8+tc.quote || !bytes.Equal(q, orig[14:14+tc.quote]) {
				t.Errorf("error of %d bytes: want a quote of the original packet's first %d", m, tc.quote)
			}
		})
	}
}

func TestBuildErrorRefuses(t *testing.T) {
	f := udpFrame(t, src4, dst4, 1, 32, false)
	p := parse(t, f)
	orig := bytes.Clone(f)
	if BuildError(f, len(f), &p, TimeExceeded, gw6, routerMAC, 0) != 0 {
		t.Error("built an IPv4 error from an IPv6 address")
	}
	if BuildError(f[:14+20+8+20], 14+20+8+20, &p, TimeExceeded, gw4, routerMAC, 0) != 0 {
		t.Error("built an error without room for the header and 8 bytes of quote")
	}
	if !bytes.Equal(f, orig) {
		t.Error("a refused frame was changed")
	}
}

func TestMayError(t *testing.T) {
	icmpErr := func(v6 bool, typ uint8) []byte {
		f := udpFrame(t, src4, dst4, 1, 32, false)
		f[14+9], f[34] = protoICMP, typ
		if v6 {
			f = udpFrame(t, src6, dst6, 1, 32, false)
			f[14+6], f[54] = protoICMPv6, typ
		}
		return f
	}
	mod := func(f []byte, fn func([]byte)) []byte { fn(f); return f }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"udp", udpFrame(t, src4, dst4, 1, 32, false), true},
		{"echo request", icmpErr(false, 8), true},
		{"v4 time exceeded", icmpErr(false, 11), false},
		{"v4 unreachable", icmpErr(false, 3), false},
		{"v6 echo request", icmpErr(true, 128), true},
		{"v6 packet too big", icmpErr(true, 2), false},
		{"broadcast MAC", mod(udpFrame(t, src4, dst4, 1, 32, false), func(f []byte) { copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) }), false},
		{"multicast destination", udpFrame(t, src4, netip.MustParseAddr("239.1.1.1"), 1, 32, false), false},
		{"limited broadcast", udpFrame(t, src4, netip.MustParseAddr("255.255.255.255"), 1, 32, false), false},
		{"unspecified source", udpFrame(t, netip.IPv6Unspecified(), dst6, 1, 32, false), false},
		{"later fragment", mod(udpFrame(t, src4, dst4, 1, 32, false), func(f []byte) { f[14+7] = 1 }), false},
	} {
		p := parse(t, tc.frame)
		if got := MayError(tc.frame, &p); got != tc.want {
			t.Errorf("%s: MayError = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLimiter(t *testing.T) {
	var l Limiter
	now := int64(1e12)
	n := 0
	for l.Allow(now, ErrorRate, ErrorBurst) {
		n++
	}
	if n != ErrorBurst {
		t.Fatalf("burst of %d, want %d", n, ErrorBurst)
	}
	if l.Allow(now+int64(1e9)/ErrorRate-1, ErrorRate, ErrorBurst) {
		t.Error("a token before its interval passed")
	}
	if !l.Allow(now+int64(1e9)/ErrorRate, ErrorRate, ErrorBurst) {
		t.Error("no token after one interval")
	}
	// A second later: one second's worth, capped at the burst.
	n = 0
	for l.Allow(now+2e9, ErrorRate, ErrorBurst) {
		n++
	}
	if n != ErrorBurst {
		t.Errorf("after a second: %d, want %d", n, ErrorBurst)
	}
	if !l.Allow(now, 0, 0) {
		t.Error("rate 0 limits")
	}
}

func TestAllocs(t *testing.T) {
	f := udpFrame(t, src4, dst4, 64, 1400, false)
	b := make([]byte, len(f)+64)
	var p Packet
	if n := testing.AllocsPerRun(100, func() {
		copy(b, f)
		Parse(b[:len(f)], 14, 0x0800, &p)
		p.TTL = 64
		Forward(b, &p, routerMAC, otherMAC)
		p.TTL = 1
		BuildError(b, len(f), &p, TimeExceeded, gw4, routerMAC, 1450)
	}); n != 0 {
		t.Errorf("%v allocations per routed frame and error", n)
	}
}

// BenchmarkForward is the routing step's header work on a 1500-byte frame:
// parse and rewrite (the TTL is put back each time).
func BenchmarkForward(b *testing.B) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{{"v4", src4, dst4}, {"v6", src6, dst6}} {
		b.Run(tc.name, func(b *testing.B) {
			f := udpFrame(b, tc.src, tc.dst, 64, 1400, false)
			et := binary.BigEndian.Uint16(f[12:14])
			var p Packet
			ttl := 14 + 8 // IPv4 TTL
			if tc.src.Is6() {
				ttl = 14 + 7 // IPv6 hop limit
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				if !Parse(f, 14, et, &p) || !Forward(f, &p, routerMAC, otherMAC) {
					b.Fatal("not forwarded")
				}
				f[ttl] = 64 // the IPv4 checksum drifts, which costs nothing here
			}
		})
	}
}

func echoFrame(t testing.TB, src, dst netip.Addr, reply bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(hostMAC[:]), DstMAC: net.HardwareAddr(routerMAC[:])}
	if reply {
		eth.SrcMAC, eth.DstMAC = net.HardwareAddr(routerMAC[:]), net.HardwareAddr(hostMAC[:])
	}
	var ls []gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		typ := uint8(8)
		ttl := uint8(7)
		if reply {
			typ, ttl = 0, 64
		}
		ls = []gopacket.SerializableLayer{eth,
			&layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolICMPv4, Id: 99, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 3}}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		typ := uint8(128)
		ttl := uint8(7)
		if reply {
			typ, ttl = 129, 64
		}
		ip6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		_ = icmp.SetNetworkLayerForChecksum(ip6)
		ls = []gopacket.SerializableLayer{eth, ip6, icmp, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 3}}
	}
	ls = append(ls, gopacket.Payload("0123456789abcdefghij"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEchoReply(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{{"v4", src4, gw4}, {"v6", src6, gw6}} {
		t.Run(tc.name, func(t *testing.T) {
			f := echoFrame(t, tc.src, tc.dst, false)
			p := parse(t, f)
			if !EchoReply(f, &p, routerMAC) {
				t.Fatal("EchoReply = false")
			}
			if want := echoFrame(t, tc.dst, tc.src, true); !bytes.Equal(f, want) {
				t.Errorf("reply differs from gopacket's\n got % x\nwant % x", f, want)
			}
			p = parse(t, f)
			if EchoReply(f, &p, routerMAC) {
				t.Error("answered an echo reply")
			}
		})
	}
	f := udpFrame(t, src4, gw4, 64, 20, false)
	p := parse(t, f)
	if EchoReply(f, &p, routerMAC) {
		t.Error("answered UDP")
	}
}
