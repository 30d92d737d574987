package vtep

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
)

var (
	arpMAC1 = fdb.MAC{0x02, 0, 0, 0, 0, 1}
	arpMAC2 = fdb.MAC{0x02, 0, 0, 0, 0, 2}
	arpIP1  = netip.MustParseAddr("10.77.0.1")
	arpIP2  = netip.MustParseAddr("10.77.0.2")
)

// arpTestFrame is an ARP packet to build with gopacket.
type arpTestFrame struct {
	ethDst, ethSrc fdb.MAC
	vlans          []uint16 // outermost first; the first is 0x88a8 when there are two
	op             uint16
	sha, tha       fdb.MAC
	spa, tpa       netip.Addr
}

// build serializes f with gopacket, padded to 60 bytes as gopacket pads.
func (f arpTestFrame) build(tb testing.TB) []byte {
	tb.Helper()
	ls := []gopacket.SerializableLayer{&layers.Ethernet{DstMAC: f.ethDst[:], SrcMAC: f.ethSrc[:], EthernetType: layers.EthernetTypeARP}}
	ls = arpTestTag(ls, f.vlans, layers.EthernetTypeARP)
	ls = append(ls, &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: f.op, SourceHwAddress: f.sha[:], SourceProtAddress: f.spa.AsSlice(),
		DstHwAddress: f.tha[:], DstProtAddress: f.tpa.AsSlice(),
	})
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return bytes.Clone(sb.Bytes())
}

// arpTestTag inserts Dot1Q layers for vlans after the Ethernet layer ls[0],
// whose EtherType becomes the outer TPID; the innermost tag carries et.
func arpTestTag(ls []gopacket.SerializableLayer, vlans []uint16, et layers.EthernetType) []gopacket.SerializableLayer {
	if len(vlans) == 0 {
		return ls
	}
	eth := ls[0].(*layers.Ethernet)
	eth.EthernetType = layers.EthernetTypeDot1Q
	if len(vlans) > 1 {
		eth.EthernetType = layers.EthernetTypeQinQ
	}
	for i, v := range vlans {
		next := layers.EthernetTypeDot1Q
		if i == len(vlans)-1 {
			next = et
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: v, Priority: uint8(i + 1), Type: next})
	}
	return ls
}

// arpTestClassify classifies frame, failing the test if classify drops it.
func arpTestClassify(tb testing.TB, frame []byte) *frameClass {
	tb.Helper()
	var c frameClass
	if reason, ok := classify(frame, &c); !ok {
		tb.Fatalf("classify dropped % x as %v", frame, reason)
	}
	return &c
}

func TestParseARP(t *testing.T) {
	zero := netip.IPv4Unspecified()
	tests := []struct {
		name  string
		frame arpTestFrame
		op    uint16
		want  arpRequest
	}{
		{"request", arpTestFrame{fdb.Broadcast, arpMAC1, nil, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP2}},
		{"reply", arpTestFrame{arpMAC1, arpMAC2, nil, 2, arpMAC2, arpMAC1, arpIP2, arpIP1}, 2,
			arpRequest{SenderMAC: arpMAC2, SenderIP: arpIP2, TargetIP: arpIP1}},
		{"vlan request", arpTestFrame{fdb.Broadcast, arpMAC1, []uint16{5}, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP2}},
		{"qinq request", arpTestFrame{fdb.Broadcast, arpMAC1, []uint16{100, 5}, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP2}},
		{"sender MAC differs from Ethernet source", arpTestFrame{fdb.Broadcast, arpMAC2, nil, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP2}},
		{"probe", arpTestFrame{fdb.Broadcast, arpMAC1, nil, 1, arpMAC1, fdb.MAC{}, zero, arpIP2}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: zero, TargetIP: arpIP2, Probe: true}},
		{"announcement", arpTestFrame{fdb.Broadcast, arpMAC1, nil, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP1}, 1,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP1, Gratuitous: true}},
		{"gratuitous reply", arpTestFrame{fdb.Broadcast, arpMAC1, nil, 2, arpMAC1, fdb.Broadcast, arpIP1, arpIP1}, 2,
			arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP1, Gratuitous: true}},
		{"reply to a probe", arpTestFrame{arpMAC1, arpMAC2, nil, 2, arpMAC2, arpMAC1, arpIP2, zero}, 2,
			arpRequest{SenderMAC: arpMAC2, SenderIP: arpIP2, TargetIP: zero}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := tt.frame.build(t)
			req, op, ok := parseARP(frame, arpTestClassify(t, frame))
			if !ok || op != tt.op || req != tt.want {
				t.Errorf("parseARP = %+v op %d ok %v; want %+v op %d", req, op, ok, tt.want, tt.op)
			}
			// Without Ethernet padding too.
			c := arpTestClassify(t, frame)
			if req2, op2, ok := parseARP(frame[:c.L2Len+arpLen], c); !ok || req2 != req || op2 != op {
				t.Errorf("unpadded: parseARP = %+v op %d ok %v", req2, op2, ok)
			}
		})
	}
}

func TestParseARPRejects(t *testing.T) {
	valid := arpTestFrame{fdb.Broadcast, arpMAC1, nil, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}.build(t)
	const a = ethHeaderLen // ARP offset in valid
	tests := []struct {
		name   string
		mutate func(f []byte, c *frameClass) []byte
	}{
		{"one byte short", func(f []byte, c *frameClass) []byte { return f[:a+arpLen-1] }},
		{"header only", func(f []byte, c *frameClass) []byte { return f[:a] }},
		{"not ARP EtherType", func(f []byte, c *frameClass) []byte { c.EtherType = 0x0800; return f }},
		{"L2Len beyond frame", func(f []byte, c *frameClass) []byte { c.L2Len = len(f) + 4; return f }},
		{"L2Len too small", func(f []byte, c *frameClass) []byte { c.L2Len = 2; return f }},
		{"htype IEEE 802", func(f []byte, c *frameClass) []byte { f[a+1] = 6; return f }},
		{"ptype IPv6", func(f []byte, c *frameClass) []byte { f[a+2], f[a+3] = 0x86, 0xdd; return f }},
		{"hlen 8", func(f []byte, c *frameClass) []byte { f[a+4] = 8; return f }},
		{"plen 16", func(f []byte, c *frameClass) []byte { f[a+5] = 16; return f }},
		{"op 0", func(f []byte, c *frameClass) []byte { f[a+7] = 0; return f }},
		{"op 3 (RARP request)", func(f []byte, c *frameClass) []byte { f[a+7] = 3; return f }},
		{"op 0x0101", func(f []byte, c *frameClass) []byte { f[a+6] = 1; return f }},
		{"multicast sender MAC", func(f []byte, c *frameClass) []byte { f[a+8] = 0x01; return f }},
		{"broadcast sender MAC", func(f []byte, c *frameClass) []byte { copy(f[a+8:], fdb.Broadcast[:]); return f }},
		{"zero sender MAC", func(f []byte, c *frameClass) []byte { clear(f[a+8 : a+14]); return f }},
		{"multicast sender IP", func(f []byte, c *frameClass) []byte { f[a+14] = 224; return f }},
		{"broadcast sender IP", func(f []byte, c *frameClass) []byte { copy(f[a+14:], []byte{255, 255, 255, 255}); return f }},
		{"loopback sender IP", func(f []byte, c *frameClass) []byte { f[a+14] = 127; return f }},
		{"multicast target IP", func(f []byte, c *frameClass) []byte { f[a+24] = 239; return f }},
		{"loopback target IP", func(f []byte, c *frameClass) []byte { f[a+24] = 127; return f }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := bytes.Clone(valid)
			c := arpTestClassify(t, f)
			f = tt.mutate(f, c)
			if req, op, ok := parseARP(f, c); ok {
				t.Errorf("parseARP accepted it: %+v op %d", req, op)
			}
		})
	}
	if _, _, ok := parseARP(valid, arpTestClassify(t, valid)); !ok {
		t.Fatal("the unmutated frame is rejected")
	}
}

// arpKernelFrames returns the inner frames of the kernel capture.
func arpKernelFrames(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for i, p := range kernelPayloads(tb) {
		_, inner, _, ok := decap(p)
		if !ok {
			tb.Fatalf("packet %d: decap failed", i)
		}
		out = append(out, inner)
	}
	return out
}

// TestParseARPKernelCapture checks that parseARP reads what gopacket reads
// from the ARP request and reply the kernel wrote, and rejects every other
// frame of the capture.
func TestParseARPKernelCapture(t *testing.T) {
	var ops []uint16
	for i, frame := range arpKernelFrames(t) {
		c := arpTestClassify(t, frame)
		req, op, ok := parseARP(frame, c)
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		g, isARP := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		if !isARP {
			if ok {
				t.Errorf("packet %d: parseARP accepted a non-ARP frame: %+v", i, req)
			}
			continue
		}
		if !ok {
			t.Errorf("packet %d: parseARP rejected %v", i, p)
			continue
		}
		want := arpRequest{
			SenderMAC: fdb.MAC(g.SourceHwAddress),
			SenderIP:  netip.AddrFrom4([4]byte(g.SourceProtAddress)),
			TargetIP:  netip.AddrFrom4([4]byte(g.DstProtAddress)),
		}
		if req != want || op != g.Operation {
			t.Errorf("packet %d: parseARP = %+v op %d; gopacket %+v op %d", i, req, op, want, g.Operation)
		}
		ops = append(ops, op)
	}
	if len(ops) != 2 || ops[0] != arpOpRequest || ops[1] != arpOpReply {
		t.Errorf("ARP opcodes in capture = %v, want [1 2]", ops)
	}
}

// TestBuildARPReplyKernel answers the kernel's captured ARP request with the
// MAC the kernel answered with, and expects the kernel's reply, byte for
// byte, followed by padding.
func TestBuildARPReplyKernel(t *testing.T) {
	var reqFrame, replyFrame []byte
	for _, f := range arpKernelFrames(t) {
		c := arpTestClassify(t, f)
		if _, op, ok := parseARP(f, c); ok && op == arpOpRequest {
			reqFrame = f
		} else if ok && op == arpOpReply {
			replyFrame = f
		}
	}
	if reqFrame == nil || replyFrame == nil {
		t.Fatal("capture lacks the ARP request or reply")
	}
	c := arpTestClassify(t, reqFrame)
	req, _, _ := parseARP(reqFrame, c)
	answer := fdb.MAC(replyFrame[6:12])
	dst := bytes.Repeat([]byte{0xee}, 128)
	n := buildARPReply(dst, req, reqFrame, c, answer)
	if n != ethMinFrameLen {
		t.Fatalf("buildARPReply = %d bytes, want %d", n, ethMinFrameLen)
	}
	if !bytes.Equal(dst[:len(replyFrame)], replyFrame) {
		t.Errorf("reply differs from the kernel's:\n ours   % x\n kernel % x", dst[:len(replyFrame)], replyFrame)
	}
	if pad := dst[len(replyFrame):n]; !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Errorf("padding = % x, want zeros", pad)
	}
	if dst[n] != 0xee {
		t.Errorf("wrote past the frame")
	}
}

func TestBuildARPReply(t *testing.T) {
	tests := []struct {
		name  string
		vlans []uint16
	}{
		{"untagged", nil},
		{"vlan 5", []uint16{5}},
		{"qinq 100/5", []uint16{100, 5}},
		{"three tags", []uint16{7, 100, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqFrame := arpTestFrame{fdb.Broadcast, arpMAC1, tt.vlans, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}.build(t)
			c := arpTestClassify(t, reqFrame)
			req, _, ok := parseARP(reqFrame, c)
			if !ok {
				t.Fatal("parseARP rejected the request")
			}
			dst := bytes.Repeat([]byte{0xee}, 256)
			n := buildARPReply(dst, req, reqFrame, c, arpMAC2)
			if wantN := max(c.L2Len+arpLen, ethMinFrameLen); n != wantN {
				t.Fatalf("buildARPReply = %d, want %d", n, wantN)
			}
			// What gopacket writes for the same reply.
			want := arpTestFrame{arpMAC1, arpMAC2, tt.vlans, 2, arpMAC2, arpMAC1, arpIP2, arpIP1}.build(t)
			if !bytes.Equal(dst[:n], want) {
				t.Errorf("reply (-want +got):\n-% x\n+% x", want, dst[:n])
			}

			p := gopacket.NewPacket(dst[:n], layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("gopacket: %v", el.Error())
			}
			eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if fdb.MAC(eth.DstMAC) != arpMAC1 || fdb.MAC(eth.SrcMAC) != arpMAC2 {
				t.Errorf("Ethernet dst %v src %v", eth.DstMAC, eth.SrcMAC)
			}
			var vlans []uint16
			for _, l := range p.Layers() {
				if q, ok := l.(*layers.Dot1Q); ok {
					vlans = append(vlans, q.VLANIdentifier)
				}
			}
			if len(vlans) != len(tt.vlans) || (len(vlans) > 0 && !equalU16(vlans, tt.vlans)) {
				t.Errorf("VLANs %v, want %v", vlans, tt.vlans)
			}
			arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
			if !ok {
				t.Fatalf("no ARP layer in %v", p)
			}
			if arp.Operation != layers.ARPReply ||
				!bytes.Equal(arp.SourceHwAddress, arpMAC2[:]) || !bytes.Equal(arp.SourceProtAddress, arpIP2.AsSlice()) ||
				!bytes.Equal(arp.DstHwAddress, arpMAC1[:]) || !bytes.Equal(arp.DstProtAddress, arpIP1.AsSlice()) {
				t.Errorf("ARP op %d %v/%v -> %v/%v", arp.Operation, net.HardwareAddr(arp.SourceHwAddress), net.IP(arp.SourceProtAddress),
					net.HardwareAddr(arp.DstHwAddress), net.IP(arp.DstProtAddress))
			}

			// The requester can parse it, and the switch would learn the answer.
			rc := arpTestClassify(t, dst[:n])
			got, op, ok := parseARP(dst[:n], rc)
			if wantReq := (arpRequest{SenderMAC: arpMAC2, SenderIP: arpIP2, TargetIP: arpIP1}); !ok || op != arpOpReply || got != wantReq {
				t.Errorf("parseARP(reply) = %+v op %d ok %v, want %+v", got, op, ok, wantReq)
			}

			// Built in place, in the request's own buffer, as the switch does.
			buf := make([]byte, 256)
			copy(buf, reqFrame)
			in := buf[:len(reqFrame)]
			if n2 := buildARPReply(buf, req, in, c, arpMAC2); n2 != n || !bytes.Equal(buf[:n2], dst[:n]) {
				t.Errorf("in place: %d bytes % x, want % x", n2, buf[:n2], dst[:n])
			}
		})
	}
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBuildARPReplyRefuses(t *testing.T) {
	reqFrame := arpTestFrame{fdb.Broadcast, arpMAC1, []uint16{5}, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}.build(t)
	c := arpTestClassify(t, reqFrame)
	req, _, _ := parseARP(reqFrame, c)
	v6 := req
	v6.TargetIP = netip.MustParseAddr("fd77::2")
	badL2 := *c
	badL2.L2Len = len(reqFrame) + 1
	tests := []struct {
		name string
		dst  int
		req  arpRequest
		c    *frameClass
	}{
		{"dst one byte short", ethMinFrameLen - 1, req, c},
		{"dst empty", 0, req, c},
		{"IPv6 target", 128, v6, c},
		{"zero request", 128, arpRequest{}, c},
		{"L2Len beyond frame", 128, req, &badL2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := bytes.Repeat([]byte{0xee}, tt.dst)
			if n := buildARPReply(dst, tt.req, reqFrame, tt.c, arpMAC2); n != 0 {
				t.Errorf("buildARPReply = %d, want 0", n)
			}
			if !bytes.Equal(dst, bytes.Repeat([]byte{0xee}, tt.dst)) {
				t.Errorf("wrote to dst")
			}
		})
	}
}

func TestBuildGratuitousARP(t *testing.T) {
	for _, ip := range []netip.Addr{arpIP1, netip.MustParseAddr("::ffff:10.77.0.1")} {
		t.Run(ip.String(), func(t *testing.T) {
			dst := bytes.Repeat([]byte{0xee}, 100)
			n := buildGratuitousARP(dst, arpMAC1, ip)
			if n != ethMinFrameLen {
				t.Fatalf("buildGratuitousARP = %d, want %d", n, ethMinFrameLen)
			}
			want := arpTestFrame{fdb.Broadcast, arpMAC1, nil, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP1}.build(t)
			if !bytes.Equal(dst[:n], want) {
				t.Errorf("announcement (-want +got):\n-% x\n+% x", want, dst[:n])
			}
			p := gopacket.NewPacket(dst[:n], layers.LayerTypeEthernet, gopacket.Default)
			arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
			eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !ok || eth == nil || fdb.MAC(eth.DstMAC) != fdb.Broadcast || arp.Operation != layers.ARPRequest ||
				!bytes.Equal(arp.SourceProtAddress, arp.DstProtAddress) || !bytes.Equal(arp.DstHwAddress, make([]byte, 6)) {
				t.Errorf("gopacket decodes %v", p)
			}
			c := arpTestClassify(t, dst[:n])
			req, op, ok := parseARP(dst[:n], c)
			if wantReq := (arpRequest{SenderMAC: arpMAC1, SenderIP: arpIP1, TargetIP: arpIP1, Gratuitous: true}); !ok || op != arpOpRequest || req != wantReq {
				t.Errorf("parseARP = %+v op %d ok %v, want %+v", req, op, ok, wantReq)
			}
		})
	}
	for _, tt := range []struct {
		name string
		dst  int
		ip   netip.Addr
	}{
		{"dst short", ethMinFrameLen - 1, arpIP1},
		{"IPv6", 100, netip.MustParseAddr("fd77::1")},
		{"zero Addr", 100, netip.Addr{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n := buildGratuitousARP(make([]byte, tt.dst), arpMAC1, tt.ip); n != 0 {
				t.Errorf("buildGratuitousARP = %d, want 0", n)
			}
		})
	}
}

func TestARPAllocs(t *testing.T) {
	reqFrame := arpTestFrame{fdb.Broadcast, arpMAC1, []uint16{5}, 1, arpMAC1, fdb.MAC{}, arpIP1, arpIP2}.build(t)
	c := arpTestClassify(t, reqFrame)
	req, _, _ := parseARP(reqFrame, c)
	dst := make([]byte, 128)
	tests := []struct {
		name string
		fn   func()
	}{
		{"parseARP", func() { parseARP(reqFrame, c) }},
		{"buildARPReply", func() { buildARPReply(dst, req, reqFrame, c, arpMAC2) }},
		{"buildGratuitousARP", func() { buildGratuitousARP(dst, arpMAC1, arpIP1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
				t.Errorf("allocs = %v, want 0", n)
			}
		})
	}
}

// FuzzParseARP feeds arbitrary Ethernet frames to parseARP, as frames read
// from a port or decapsulated from a VTEP, cross-checks what it accepts with
// gopacket, and answers accepted requests. Seeds: testdata/fuzz/FuzzParseARP
// (the kernel's captured request and reply, tagged, probe, announcement and
// malformed frames).
func FuzzParseARP(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c frameClass
		if _, ok := classify(frame, &c); !ok {
			return
		}
		orig := bytes.Clone(frame)
		req, op, ok := parseARP(frame, &c)
		if !bytes.Equal(frame, orig) {
			t.Fatal("parseARP modified its input")
		}
		if !ok {
			return
		}
		if op != arpOpRequest && op != arpOpReply {
			t.Fatalf("op %d", op)
		}
		if !req.SenderIP.Is4() || !req.TargetIP.Is4() || req.SenderMAC.IsMulticast() || req.SenderMAC.IsZero() {
			t.Fatalf("accepted %+v", req)
		}
		if req.Probe != req.SenderIP.IsUnspecified() || req.Gratuitous != (!req.Probe && req.SenderIP == req.TargetIP) {
			t.Fatalf("flags of %+v", req)
		}
		a := frame[c.L2Len:]
		var g layers.ARP
		if err := g.DecodeFromBytes(a, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("gopacket rejects what parseARP accepts: %v", err)
		}
		if g.Operation != op || fdb.MAC(g.SourceHwAddress) != req.SenderMAC ||
			netip.AddrFrom4([4]byte(g.SourceProtAddress)) != req.SenderIP || netip.AddrFrom4([4]byte(g.DstProtAddress)) != req.TargetIP {
			t.Fatalf("parseARP %+v op %d, gopacket %+v", req, op, g)
		}

		dst := make([]byte, 128)
		n := buildARPReply(dst, req, frame, &c, arpMAC2)
		if n == 0 {
			if c.L2Len+arpLen <= len(dst) {
				t.Fatalf("buildARPReply refused a %d-byte L2 header", c.L2Len)
			}
			return
		}
		var rc frameClass
		if _, ok := classify(dst[:n], &rc); !ok || rc.L2Len != c.L2Len {
			t.Fatalf("reply classifies as %+v, request as %+v", rc, c)
		}
		rep, rop, ok := parseARP(dst[:n], &rc)
		if !ok || rop != arpOpReply || rep.SenderMAC != arpMAC2 || rep.SenderIP != req.TargetIP || rep.TargetIP != req.SenderIP {
			t.Fatalf("reply parses as %+v op %d ok %v", rep, rop, ok)
		}
		if fdb.MAC(dst[0:6]) != req.SenderMAC || !bytes.Equal(dst[12:c.L2Len], frame[12:c.L2Len]) {
			t.Fatalf("reply L2 header % x, request's % x", dst[:c.L2Len], frame[:c.L2Len])
		}
	})
}
