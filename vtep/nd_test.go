package vtep

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"

	"github.com/ovlsw/ovlsw/vtep/internal/csumref"
)

var (
	ndMAC1     = fdb.MAC{0x02, 0, 0, 0, 0, 1}
	ndMAC2     = fdb.MAC{0x02, 0, 0, 0, 0, 2}
	ndIP1      = netip.MustParseAddr("fd77::1")
	ndIP2      = netip.MustParseAddr("fd77::2")
	ndSolNode2 = netip.MustParseAddr("ff02::1:ff00:2") // solicited-node address of ndIP2
	ndSolMAC2  = fdb.MAC{0x33, 0x33, 0xff, 0, 0, 2}
)

// ndTestFrame is a neighbour solicitation or advertisement to build with
// gopacket.
type ndTestFrame struct {
	ethDst, ethSrc fdb.MAC
	vlans          []uint16
	hopLimit       uint8
	src, dst       netip.Addr
	typ            uint8 // 135 or 136
	flags          uint8 // NA flags
	target         netip.Addr
	opts           layers.ICMPv6Options
}

// ndOpt is a link-layer address option holding mac.
func ndOpt(typ layers.ICMPv6Opt, mac fdb.MAC) layers.ICMPv6Option {
	return layers.ICMPv6Option{Type: typ, Data: bytes.Clone(mac[:])}
}

// ndTestNS is a valid solicitation from ndIP1/ndMAC1 for ndIP2.
func ndTestNS() ndTestFrame {
	return ndTestFrame{ndSolMAC2, ndMAC1, nil, 255, ndIP1, ndSolNode2, 135, 0, ndIP2,
		layers.ICMPv6Options{ndOpt(layers.ICMPv6OptSourceAddress, ndMAC1)}}
}

// ndTestNA is a valid solicited advertisement from ndIP2/ndMAC2 to ndIP1.
func ndTestNA() ndTestFrame {
	return ndTestFrame{ndMAC1, ndMAC2, nil, 255, ndIP2, ndIP1, 136, 0x60, ndIP2,
		layers.ICMPv6Options{ndOpt(layers.ICMPv6OptTargetAddress, ndMAC2)}}
}

// build serializes f with gopacket, computing lengths and the checksum.
func (f ndTestFrame) build(tb testing.TB) []byte {
	tb.Helper()
	ls := []gopacket.SerializableLayer{&layers.Ethernet{DstMAC: f.ethDst[:], SrcMAC: f.ethSrc[:], EthernetType: layers.EthernetTypeIPv6}}
	ls = arpTestTag(ls, f.vlans, layers.EthernetTypeIPv6)
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: f.hopLimit, SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(f.typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	ls = append(ls, ip, icmp)
	// gopacket v1.1.19 prepends each option in turn, writing them in
	// reverse; reverse them first so they go on the wire in f.opts order.
	opts := slices.Clone(f.opts)
	slices.Reverse(opts)
	if f.typ == 135 {
		ls = append(ls, &layers.ICMPv6NeighborSolicitation{TargetAddress: f.target.AsSlice(), Options: opts})
	} else {
		ls = append(ls, &layers.ICMPv6NeighborAdvertisement{Flags: f.flags, TargetAddress: f.target.AsSlice(), Options: opts})
	}
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(sb.Bytes())
}

// ndRefSum sums the ICMPv6 message of the IPv6 packet at ip with the RFC
// 1071 reference; a valid checksum gives 0xffff.
func ndRefSum(ip []byte) uint16 {
	plen := binary.BigEndian.Uint16(ip[4:6])
	var ph [40]byte
	copy(ph[0:32], ip[8:40])
	binary.BigEndian.PutUint32(ph[32:36], uint32(plen))
	ph[39] = 58
	return csumref.Sum(ip[40:40+int(plen)], uint64(csumref.Sum(ph[:], 0)))
}

// ndFixChecksum recomputes the ICMPv6 checksum of the IPv6 packet at ip
// with the reference, after a test mutated it.
func ndFixChecksum(ip []byte) {
	ip[42], ip[43] = 0, 0
	binary.BigEndian.PutUint16(ip[42:44], ^ndRefSum(ip))
}

func TestParseNS(t *testing.T) {
	nonce := layers.ICMPv6Option{Type: 14, Data: []byte{1, 2, 3, 4, 5, 6}}
	slla := ndOpt(layers.ICMPv6OptSourceAddress, ndMAC1)
	ll1, ll2 := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2")
	tests := []struct {
		name   string
		frame  func(f *ndTestFrame)
		want   neighborSolicitation
		padded bool
	}{
		{"multicast with SLLA", func(f *ndTestFrame) {},
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"unicast without SLLA", func(f *ndTestFrame) { f.ethDst, f.dst, f.opts = ndMAC2, ndIP2, nil },
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2}, false},
		{"vlan", func(f *ndTestFrame) { f.vlans = []uint16{5} },
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"qinq", func(f *ndTestFrame) { f.vlans = []uint16{100, 5} },
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"link-local", func(f *ndTestFrame) {
			f.src, f.target, f.dst = ll1, ll2, netip.MustParseAddr("ff02::1:ff00:2")
		}, neighborSolicitation{SrcMAC: ndMAC1, Src: ll1, Target: ll2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"DAD", func(f *ndTestFrame) { f.src, f.opts = netip.IPv6Unspecified(), nil },
			neighborSolicitation{SrcMAC: ndMAC1, Src: netip.IPv6Unspecified(), Target: ndIP2, DAD: true}, false},
		{"DAD with nonce", func(f *ndTestFrame) { f.src, f.opts = netip.IPv6Unspecified(), layers.ICMPv6Options{nonce} },
			neighborSolicitation{SrcMAC: ndMAC1, Src: netip.IPv6Unspecified(), Target: ndIP2, DAD: true}, false},
		{"SLLA after another option", func(f *ndTestFrame) { f.opts = layers.ICMPv6Options{nonce, slla} },
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"first of two SLLAs", func(f *ndTestFrame) {
			f.opts = layers.ICMPv6Options{slla, ndOpt(layers.ICMPv6OptSourceAddress, ndMAC2)}
		}, neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"SLLA differs from Ethernet source", func(f *ndTestFrame) { f.ethSrc = ndMAC2 },
			neighborSolicitation{SrcMAC: ndMAC2, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, false},
		{"TLLA ignored", func(f *ndTestFrame) {
			f.opts = layers.ICMPv6Options{ndOpt(layers.ICMPv6OptTargetAddress, fdb.Broadcast)}
		},
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2}, false},
		{"Ethernet padding", func(f *ndTestFrame) {},
			neighborSolicitation{SrcMAC: ndMAC1, Src: ndIP1, Target: ndIP2, SourceLLA: ndMAC1, HasSourceLLA: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ndTestNS()
			tt.frame(&f)
			frame := f.build(t)
			if tt.padded {
				frame = append(frame, 0xde, 0xad, 0xbe, 0xef, 0, 0)
			}
			ns, ok := parseNS(frame, arpTestClassify(t, frame))
			if !ok || ns != tt.want {
				t.Errorf("parseNS = %+v, %v\n                want %+v", ns, ok, tt.want)
			}
			if na, ok := parseNA(frame, arpTestClassify(t, frame)); ok {
				t.Errorf("parseNA accepted a solicitation: %+v", na)
			}
		})
	}
}

// ndRejectCase mutates a valid frame (whose IPv6 header starts at byte 14)
// into one the parser must reject; fix recomputes the checksum afterwards,
// so that only the mutation is wrong.
type ndRejectCase struct {
	name   string
	frame  func(f *ndTestFrame)
	mutate func(b []byte, c *frameClass) []byte
	fix    bool
}

const ndIP = ethHeaderLen // offset of the IPv6 header in untagged test frames

// ndCommonRejects are rejections shared by parseNS and parseNA.
func ndCommonRejects(typ uint8) []ndRejectCase {
	other := uint8(136)
	if typ == 136 {
		other = 135
	}
	const m = ndIP + 40 // ICMPv6 message
	return []ndRejectCase{
		{name: "Ethernet header only", mutate: func(b []byte, c *frameClass) []byte { return b[:ndIP] }},
		{name: "IPv6 header only", mutate: func(b []byte, c *frameClass) []byte { return b[:m] }},
		{name: "message one byte short of 24", mutate: func(b []byte, c *frameClass) []byte { return b[:m+23] }},
		{name: "payload length beyond frame", mutate: func(b []byte, c *frameClass) []byte { return b[:len(b)-1] }},
		{name: "not IPv6 EtherType", mutate: func(b []byte, c *frameClass) []byte { c.EtherType = 0x0800; return b }},
		{name: "L2Len beyond frame", mutate: func(b []byte, c *frameClass) []byte { c.L2Len = len(b) + 1; return b }},
		{name: "IP version 4", mutate: func(b []byte, c *frameClass) []byte { b[ndIP] = 0x40; return b }},
		{name: "hop-by-hop header", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+6] = 0; return b }},
		{name: "next header UDP", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+6] = 17; return b }},
		{name: "hop limit 254", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+7] = 254; return b }},
		{name: "hop limit 64", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+7] = 64; return b }},
		{name: "hop limit 1", frame: func(f *ndTestFrame) { f.hopLimit = 1 }},
		{name: "bad checksum", mutate: func(b []byte, c *frameClass) []byte { b[m+2] ^= 0x01; return b }},
		{name: "bad checksum (target changed)", mutate: func(b []byte, c *frameClass) []byte { b[m+23] ^= 0x80; return b }},
		{name: "bad checksum (source changed)", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+8] ^= 0x01; return b }},
		{name: "zero checksum", mutate: func(b []byte, c *frameClass) []byte { b[m+2], b[m+3] = 0, 0; return b }},
		{name: "code 1", mutate: func(b []byte, c *frameClass) []byte { b[m+1] = 1; return b }, fix: true},
		{name: "other ND type", mutate: func(b []byte, c *frameClass) []byte { b[m] = other; return b }, fix: true},
		{name: "echo request", mutate: func(b []byte, c *frameClass) []byte { b[m] = 128; return b }, fix: true},
		{name: "payload length 20", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+5] = 20; return b }, fix: true},
		{name: "option length 0", mutate: func(b []byte, c *frameClass) []byte { b[m+25] = 0; return b }, fix: true},
		{name: "option longer than message", mutate: func(b []byte, c *frameClass) []byte { b[m+25] = 2; return b }, fix: true},
		{name: "option cut by payload length", mutate: func(b []byte, c *frameClass) []byte { b[ndIP+5] = 30; return b }, fix: true},
		{name: "one stray option byte", mutate: func(b []byte, c *frameClass) []byte {
			b = append(b, 1)
			b[ndIP+5]++
			return b
		}, fix: true},
		{name: "zero-length option after a valid one", frame: func(f *ndTestFrame) {
			f.opts = append(f.opts, layers.ICMPv6Option{Type: 14, Data: make([]byte, 6)})
		}, mutate: func(b []byte, c *frameClass) []byte { b[m+33] = 0; return b }, fix: true},
		{name: "link-layer option of 16 bytes", frame: func(f *ndTestFrame) { f.opts[0].Data = make([]byte, 14); f.opts[0].Data[0] = 2 }},
		{name: "multicast link-layer address", frame: func(f *ndTestFrame) { f.opts[0].Data[0] = 0x33 }},
		{name: "zero link-layer address", frame: func(f *ndTestFrame) { clear(f.opts[0].Data) }},
		{name: "multicast target", frame: func(f *ndTestFrame) { f.target = netip.MustParseAddr("ff02::1") }},
		{name: "unspecified target", frame: func(f *ndTestFrame) { f.target = netip.IPv6Unspecified() }},
		{name: "loopback target", frame: func(f *ndTestFrame) { f.target = netip.IPv6Loopback() }},
		{name: "multicast source", frame: func(f *ndTestFrame) { f.src = netip.MustParseAddr("ff02::2") }},
		{name: "loopback source", frame: func(f *ndTestFrame) { f.src = netip.IPv6Loopback() }},
	}
}

func ndCheckRejects(t *testing.T, base func() ndTestFrame, cases []ndRejectCase, parse func([]byte, *frameClass) (any, bool)) {
	t.Helper()
	valid := base().build(t)
	if _, ok := parse(valid, arpTestClassify(t, valid)); !ok {
		t.Fatal("the unmutated frame is rejected")
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			if tt.frame != nil {
				tt.frame(&f)
			}
			b := f.build(t)
			c := arpTestClassify(t, b)
			if tt.mutate != nil {
				b = tt.mutate(b, c)
			}
			if tt.fix {
				ndFixChecksum(b[ndIP:])
			}
			if got, ok := parse(b, c); ok {
				t.Errorf("accepted % x as %+v", b, got)
			}
		})
	}
}

func TestParseNSRejects(t *testing.T) {
	cases := append(ndCommonRejects(135),
		ndRejectCase{name: "DAD with SLLA", frame: func(f *ndTestFrame) { f.src = netip.IPv6Unspecified() }},
		ndRejectCase{name: "DAD to a unicast address", frame: func(f *ndTestFrame) {
			f.src, f.dst, f.opts = netip.IPv6Unspecified(), ndIP2, nil
		}},
		ndRejectCase{name: "DAD to all-nodes", frame: func(f *ndTestFrame) {
			f.src, f.dst, f.opts = netip.IPv6Unspecified(), netip.MustParseAddr("ff02::1"), nil
		}},
	)
	ndCheckRejects(t, ndTestNS, cases, func(b []byte, c *frameClass) (any, bool) { return parseNS(b, c) })
}

func TestParseNA(t *testing.T) {
	ll2 := netip.MustParseAddr("fe80::2")
	tests := []struct {
		name  string
		frame func(f *ndTestFrame)
		want  neighborAdvertisement
	}{
		{"solicited override", func(f *ndTestFrame) {}, neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Solicited: true, Override: true}},
		{"router", func(f *ndTestFrame) { f.flags = 0xe0 }, neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Router: true, Solicited: true, Override: true}},
		{"no TLLA, override clear", func(f *ndTestFrame) { f.flags, f.opts = 0x40, nil },
			neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2, Solicited: true}},
		{"unsolicited to all-nodes", func(f *ndTestFrame) {
			f.ethDst, f.dst, f.flags = allNodesMAC, netip.MustParseAddr("ff02::1"), 0x20
		}, neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: netip.MustParseAddr("ff02::1"), Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Override: true}},
		{"vlan", func(f *ndTestFrame) { f.vlans = []uint16{5} }, neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Solicited: true, Override: true}},
		{"proxy: source is not the target", func(f *ndTestFrame) { f.src = ll2 }, neighborAdvertisement{SrcMAC: ndMAC2, Src: ll2, Dst: ndIP1, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Solicited: true, Override: true}},
		{"first of two TLLAs", func(f *ndTestFrame) { f.opts = append(f.opts, ndOpt(layers.ICMPv6OptTargetAddress, ndMAC1)) },
			neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2, TargetLLA: ndMAC2, HasTargetLLA: true, Solicited: true, Override: true}},
		{"reserved bits ignored", func(f *ndTestFrame) { f.flags = 0x7f }, neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: ndIP1, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Solicited: true, Override: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ndTestNA()
			tt.frame(&f)
			frame := f.build(t)
			na, ok := parseNA(frame, arpTestClassify(t, frame))
			if !ok || na != tt.want {
				t.Errorf("parseNA = %+v, %v\n                want %+v", na, ok, tt.want)
			}
			if ns, ok := parseNS(frame, arpTestClassify(t, frame)); ok {
				t.Errorf("parseNS accepted an advertisement: %+v", ns)
			}
		})
	}
}

func TestParseNARejects(t *testing.T) {
	cases := append(ndCommonRejects(136),
		ndRejectCase{name: "solicited to a multicast address", frame: func(f *ndTestFrame) {
			f.ethDst, f.dst = allNodesMAC, netip.MustParseAddr("ff02::1")
		}},
		ndRejectCase{name: "unspecified source", frame: func(f *ndTestFrame) { f.src = netip.IPv6Unspecified() }},
	)
	ndCheckRejects(t, ndTestNA, cases, func(b []byte, c *frameClass) (any, bool) { return parseNA(b, c) })
}

// ndKernelFrames returns the kernel capture's solicitation for fd77::2,
// its duplicate address detection probe and the advertisement answering the
// solicitation.
func ndKernelFrames(tb testing.TB) (ns, dad, na []byte) {
	tb.Helper()
	for _, f := range arpKernelFrames(tb) {
		var c frameClass
		classify(f, &c)
		if s, ok := parseNS(f, &c); ok && s.DAD {
			dad = f
		} else if ok {
			ns = f
		} else if _, ok := parseNA(f, &c); ok {
			na = f
		}
	}
	if ns == nil || dad == nil || na == nil {
		tb.Fatalf("capture lacks a frame: NS %v, DAD %v, NA %v", ns != nil, dad != nil, na != nil)
	}
	return ns, dad, na
}

// TestParseNDKernelCapture checks that parseNS and parseNA read what
// gopacket reads from the solicitations and advertisement the kernel wrote,
// and reject every other frame of the capture (router solicitations, MLD
// reports behind a hop-by-hop header, IPv4, ARP).
func TestParseNDKernelCapture(t *testing.T) {
	var nNS, nNA int
	for i, frame := range arpKernelFrames(t) {
		c := arpTestClassify(t, frame)
		ns, nsOK := parseNS(frame, c)
		na, naOK := parseNA(frame, c)
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		gns, isNS := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
		gna, isNA := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if nsOK != isNS || naOK != isNA {
			t.Errorf("packet %d: parseNS %v parseNA %v, gopacket NS %v NA %v: %v", i, nsOK, naOK, isNS, isNA, p)
			continue
		}
		switch {
		case isNS:
			nNS++
			want := neighborSolicitation{SrcMAC: fdb.MAC(eth.SrcMAC), Src: ndAddr(ip.SrcIP), Target: ndAddr(gns.TargetAddress)}
			want.DAD = want.Src.IsUnspecified()
			for _, o := range gns.Options {
				if o.Type == layers.ICMPv6OptSourceAddress {
					want.SourceLLA, want.HasSourceLLA = fdb.MAC(o.Data), true
				}
			}
			if ns != want {
				t.Errorf("packet %d: parseNS = %+v\n                    gopacket %+v", i, ns, want)
			}
		case isNA:
			nNA++
			want := neighborAdvertisement{SrcMAC: fdb.MAC(eth.SrcMAC), Src: ndAddr(ip.SrcIP), Dst: ndAddr(ip.DstIP), Target: ndAddr(gna.TargetAddress),
				Router: gna.Router(), Solicited: gna.Solicited(), Override: gna.Override()}
			for _, o := range gna.Options {
				if o.Type == layers.ICMPv6OptTargetAddress {
					want.TargetLLA, want.HasTargetLLA = fdb.MAC(o.Data), true
				}
			}
			if na != want {
				t.Errorf("packet %d: parseNA = %+v\n                    gopacket %+v", i, na, want)
			}
		}
	}
	if nNS != 2 || nNA != 1 {
		t.Errorf("capture has %d solicitations and %d advertisements, want 2 and 1", nNS, nNA)
	}
}

func ndAddr(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// TestBuildNAKernel answers the kernel's captured solicitation with the MAC
// the kernel answered with and expects the kernel's own advertisement, byte
// for byte: the kernel also sets Solicited and Override.
func TestBuildNAKernel(t *testing.T) {
	nsFrame, dadFrame, naFrame := ndKernelFrames(t)
	c := arpTestClassify(t, nsFrame)
	ns, _ := parseNS(nsFrame, c)
	dst := bytes.Repeat([]byte{0xee}, 128)
	n := buildNA(dst, ns, nsFrame, c, fdb.MAC(naFrame[6:12]), false)
	if !bytes.Equal(dst[:n], naFrame) {
		t.Errorf("advertisement differs from the kernel's:\n ours   % x\n kernel % x", dst[:n], naFrame)
	}
	if dst[n] != 0xee {
		t.Errorf("wrote past the frame")
	}

	c = arpTestClassify(t, dadFrame)
	dad, _ := parseNS(dadFrame, c)
	if n := buildNA(dst, dad, dadFrame, c, ndMAC2, false); n != 0 {
		t.Errorf("buildNA answered a DAD probe: %d bytes", n)
	}
}

// ndCheckNA decodes the advertisement b with gopacket and checks it against
// a gopacket serialization of the advertisement it should be, byte for byte,
// which also checks our checksum against gopacket's; it checks the checksum
// with the reference too.
func ndCheckNA(t *testing.T, b []byte, want ndTestFrame) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || icmp == nil || na == nil {
		t.Fatalf("gopacket decodes %v", p)
	}
	if ndAddr(ip.SrcIP) != want.src || ndAddr(ip.DstIP) != want.dst || ip.HopLimit != 255 || ip.Length != 32 ||
		icmp.TypeCode != layers.CreateICMPv6TypeCode(136, 0) || na.Flags != want.flags || ndAddr(na.TargetAddress) != want.target ||
		len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || !bytes.Equal(na.Options[0].Data, want.opts[0].Data) {
		t.Errorf("gopacket decodes %v", p)
	}
	if got := ndRefSum(b[len(b)-72:]); got != 0xffff {
		t.Errorf("ICMPv6 checksum %#04x does not verify: sum %#04x", icmp.Checksum, got)
	}
	if wantB := want.build(t); !bytes.Equal(b, wantB) {
		t.Errorf("advertisement (-want +got):\n-% x\n+% x", wantB, b)
	}
}

func TestBuildNA(t *testing.T) {
	ll1, ll2 := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2")
	tests := []struct {
		name   string
		ns     func(f *ndTestFrame)
		router bool
	}{
		{"untagged", func(f *ndTestFrame) {}, false},
		{"router", func(f *ndTestFrame) {}, true},
		{"vlan", func(f *ndTestFrame) { f.vlans = []uint16{5} }, false},
		{"qinq", func(f *ndTestFrame) { f.vlans = []uint16{100, 5} }, false},
		{"unicast NS without SLLA", func(f *ndTestFrame) { f.ethDst, f.dst, f.opts = ndMAC2, ndIP2, nil }, false},
		{"link-local", func(f *ndTestFrame) { f.src, f.target = ll1, ll2 }, false},
		{"SLLA differs from Ethernet source", func(f *ndTestFrame) { f.opts[0].Data[5] = 9 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nf := ndTestNS()
			tt.ns(&nf)
			nsFrame := nf.build(t)
			c := arpTestClassify(t, nsFrame)
			ns, ok := parseNS(nsFrame, c)
			if !ok {
				t.Fatal("parseNS rejected the solicitation")
			}
			dst := bytes.Repeat([]byte{0xee}, 256)
			n := buildNA(dst, ns, nsFrame, c, ndMAC2, tt.router)
			if want := c.L2Len + 72; n != want {
				t.Fatalf("buildNA = %d, want %d", n, want)
			}
			flags := uint8(0x60)
			if tt.router {
				flags |= 0x80
			}
			// Replies go to the Ethernet source, as the Linux bridge's do.
			want := ndTestFrame{nf.ethSrc, ndMAC2, nf.vlans, 255, nf.target, nf.src, 136, flags, nf.target,
				layers.ICMPv6Options{ndOpt(layers.ICMPv6OptTargetAddress, ndMAC2)}}
			ndCheckNA(t, dst[:n], want)
			if dst[n] != 0xee {
				t.Errorf("wrote past the frame")
			}

			rc := arpTestClassify(t, dst[:n])
			na, ok := parseNA(dst[:n], rc)
			wantNA := neighborAdvertisement{SrcMAC: ndMAC2, Src: nf.target, Dst: nf.src, Target: nf.target,
				TargetLLA: ndMAC2, HasTargetLLA: true, Router: tt.router, Solicited: true, Override: true}
			if !ok || na != wantNA {
				t.Errorf("parseNA(reply) = %+v, %v\n                      want %+v", na, ok, wantNA)
			}

			// Built in place, in the solicitation's own buffer, as the switch does.
			buf := make([]byte, 256)
			copy(buf, nsFrame)
			if n2 := buildNA(buf, ns, buf[:len(nsFrame)], c, ndMAC2, tt.router); n2 != n || !bytes.Equal(buf[:n2], dst[:n]) {
				t.Errorf("in place: %d bytes % x, want % x", n2, buf[:n2], dst[:n])
			}
		})
	}
}

func TestBuildNARefuses(t *testing.T) {
	nsFrame := ndTestNS().build(t)
	c := arpTestClassify(t, nsFrame)
	ns, _ := parseNS(nsFrame, c)
	dad := ns
	dad.Src, dad.DAD = netip.IPv6Unspecified(), true
	v4 := ns
	v4.Src = netip.MustParseAddr("10.0.0.1")
	noTarget := ns
	noTarget.Target = netip.Addr{}
	badL2 := *c
	badL2.L2Len = 3
	tests := []struct {
		name string
		dst  int
		ns   neighborSolicitation
		c    *frameClass
	}{
		{"DAD", 128, dad, c},
		{"dst one byte short", naLen - 1, ns, c},
		{"IPv4 source", 128, v4, c},
		{"no target", 128, noTarget, c},
		{"L2Len too small", 128, ns, &badL2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := bytes.Repeat([]byte{0xee}, tt.dst)
			if n := buildNA(dst, tt.ns, nsFrame, tt.c, ndMAC2, false); n != 0 {
				t.Errorf("buildNA = %d, want 0", n)
			}
			if !bytes.Equal(dst, bytes.Repeat([]byte{0xee}, tt.dst)) {
				t.Errorf("wrote to dst")
			}
		})
	}
}

func TestBuildUnsolicitedNA(t *testing.T) {
	allNodes := netip.MustParseAddr("ff02::1")
	for _, router := range []bool{false, true} {
		dst := bytes.Repeat([]byte{0xee}, 128)
		n := buildUnsolicitedNA(dst, ndMAC2, ndIP2, router)
		if n != naLen {
			t.Fatalf("buildUnsolicitedNA = %d, want %d", n, naLen)
		}
		flags := uint8(0x20)
		if router {
			flags |= 0x80
		}
		ndCheckNA(t, dst[:n], ndTestFrame{fdb.MAC{0x33, 0x33, 0, 0, 0, 1}, ndMAC2, nil, 255, ndIP2, allNodes, 136, flags, ndIP2,
			layers.ICMPv6Options{ndOpt(layers.ICMPv6OptTargetAddress, ndMAC2)}})
		na, ok := parseNA(dst[:n], arpTestClassify(t, dst[:n]))
		want := neighborAdvertisement{SrcMAC: ndMAC2, Src: ndIP2, Dst: allNodes, Target: ndIP2,
			TargetLLA: ndMAC2, HasTargetLLA: true, Router: router, Override: true}
		if !ok || na != want {
			t.Errorf("parseNA = %+v, %v\n           want %+v", na, ok, want)
		}
	}
	for _, tt := range []struct {
		name string
		dst  int
		ip   netip.Addr
	}{
		{"dst short", naLen - 1, ndIP2},
		{"IPv4", 128, netip.MustParseAddr("10.0.0.1")},
		{"unspecified", 128, netip.IPv6Unspecified()},
		{"multicast", 128, allNodes},
		{"zero Addr", 128, netip.Addr{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := buildUnsolicitedNA(make([]byte, tt.dst), ndMAC2, tt.ip, false); n != 0 {
				t.Errorf("buildUnsolicitedNA = %d, want 0", n)
			}
		})
	}
}

func TestNDAllocs(t *testing.T) {
	nsFrame := ndTestFrame{ndSolMAC2, ndMAC1, []uint16{5}, 255, ndIP1, ndSolNode2, 135, 0, ndIP2,
		layers.ICMPv6Options{ndOpt(layers.ICMPv6OptSourceAddress, ndMAC1)}}.build(t)
	c := arpTestClassify(t, nsFrame)
	ns, _ := parseNS(nsFrame, c)
	naFrame := ndTestNA().build(t)
	nc := arpTestClassify(t, naFrame)
	dst := make([]byte, 128)
	tests := []struct {
		name string
		fn   func()
	}{
		{"parseNS", func() { parseNS(nsFrame, c) }},
		{"parseNA", func() { parseNA(naFrame, nc) }},
		{"buildNA", func() { buildNA(dst, ns, nsFrame, c, ndMAC2, false) }},
		{"buildUnsolicitedNA", func() { buildUnsolicitedNA(dst, ndMAC2, ndIP2, false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
				t.Errorf("allocs = %v, want 0", n)
			}
		})
	}
}

func BenchmarkParseNSBuildNA(b *testing.B) {
	nsFrame := ndTestNS().build(b)
	var c frameClass
	classify(nsFrame, &c)
	dst := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		ns, _ := parseNS(nsFrame, &c)
		buildNA(dst, ns, nsFrame, &c, ndMAC2, false)
	}
}

// FuzzParseND feeds arbitrary Ethernet frames to parseNS and parseNA,
// cross-checks what they accept with gopacket, and answers each accepted
// solicitation into a 128-byte buffer, which must give an advertisement
// gopacket decodes and parseNA accepts. Seeds: testdata/fuzz/FuzzParseND
// (the kernel's captured solicitations and advertisement, tagged and
// malformed frames).
func FuzzParseND(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c frameClass
		if _, ok := classify(frame, &c); !ok {
			return
		}
		orig := bytes.Clone(frame)
		ns, nsOK := parseNS(frame, &c)
		na, naOK := parseNA(frame, &c)
		if !bytes.Equal(frame, orig) {
			t.Fatal("a parser modified its input")
		}
		if nsOK && naOK {
			t.Fatal("both parseNS and parseNA accepted the frame")
		}
		if !nsOK && !naOK {
			return
		}
		ip := frame[c.L2Len:]
		if frame[c.L2Len+7] != 255 || ndRefSum(ip) != 0xffff {
			t.Fatalf("accepted hop limit %d, checksum sum %#04x", ip[7], ndRefSum(ip))
		}
		var g6 layers.IPv6
		if err := g6.DecodeFromBytes(ip, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("gopacket IPv6: %v", err)
		}
		msg := g6.Payload[4:]
		if nsOK {
			var g layers.ICMPv6NeighborSolicitation
			if err := g.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket rejects what parseNS accepts: %v", err)
			}
			if ns.Target != ndAddr(g.TargetAddress) || ns.Src != ndAddr(g6.SrcIP) || ns.DAD != ns.Src.IsUnspecified() ||
				ns.SrcMAC != fdb.MAC(frame[6:12]) {
				t.Fatalf("parseNS %+v, gopacket target %v source %v", ns, g.TargetAddress, g6.SrcIP)
			}
			for _, o := range g.Options {
				if o.Type == layers.ICMPv6OptSourceAddress {
					if !ns.HasSourceLLA || ns.SourceLLA != fdb.MAC(o.Data) {
						t.Fatalf("parseNS %+v, gopacket SLLA % x", ns, o.Data)
					}
					break
				}
			}
			fuzzBuildNA(t, frame, &c, ns)
		}
		if naOK {
			var g layers.ICMPv6NeighborAdvertisement
			if err := g.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket rejects what parseNA accepts: %v", err)
			}
			if na.Target != ndAddr(g.TargetAddress) || na.Src != ndAddr(g6.SrcIP) || na.Dst != ndAddr(g6.DstIP) ||
				na.Router != g.Router() || na.Solicited != g.Solicited() || na.Override != g.Override() {
				t.Fatalf("parseNA %+v, gopacket %+v", na, g)
			}
			for _, o := range g.Options {
				if o.Type == layers.ICMPv6OptTargetAddress {
					if !na.HasTargetLLA || na.TargetLLA != fdb.MAC(o.Data) {
						t.Fatalf("parseNA %+v, gopacket TLLA % x", na, o.Data)
					}
					break
				}
			}
		}
	})
}

// fuzzBuildNA answers ns, parsed from frame, into a 128-byte buffer and
// checks the advertisement with gopacket and parseNA.
func fuzzBuildNA(t *testing.T, frame []byte, c *frameClass, ns neighborSolicitation) {
	dst := make([]byte, 128)
	n := buildNA(dst, ns, frame, c, ndMAC2, false)
	if n == 0 {
		if !ns.DAD && c.L2Len+72 <= len(dst) {
			t.Fatalf("buildNA refused %+v with a %d-byte L2 header", ns, c.L2Len)
		}
		return
	}
	if ns.DAD {
		t.Fatal("buildNA answered a DAD probe")
	}
	p := gopacket.NewPacket(dst[:n], layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the reply: %v", el.Error())
	}
	g, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || ndAddr(g.TargetAddress) != ns.Target || !g.Solicited() || !g.Override() || g.Router() {
		t.Fatalf("gopacket decodes the reply as %v", p)
	}
	var rc frameClass
	if _, ok := classify(dst[:n], &rc); !ok || rc.L2Len != c.L2Len {
		t.Fatalf("reply classifies as %+v, solicitation as %+v", rc, c)
	}
	if ndRefSum(dst[rc.L2Len:n]) != 0xffff {
		t.Fatal("reply checksum does not verify")
	}
	na, ok := parseNA(dst[:n], &rc)
	if !ok || na.Target != ns.Target || na.Src != ns.Target || na.Dst != ns.Src || na.TargetLLA != ndMAC2 || !na.Solicited {
		t.Fatalf("reply to %+v parses as %+v, %v", ns, na, ok)
	}
}
