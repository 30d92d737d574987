package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// segmentAll runs s over frame and h and returns copies of the segments.
func segmentAll(tb testing.TB, s *Segmenter, frame []byte, h *VirtioNetHdr) ([][]byte, error) {
	tb.Helper()
	if err := s.Reset(frame, h); err != nil {
		if s.Count() != 0 || s.Next(make([]byte, 100)) != 0 {
			tb.Fatalf("failed Reset left Count %d or a segment", s.Count())
		}
		return nil, err
	}
	var out [][]byte
	dst := make([]byte, s.FullLen())
	for {
		n := s.Next(dst)
		if n == 0 {
			break
		}
		out = append(out, bytes.Clone(dst[:n]))
	}
	if len(out) != s.Count() {
		tb.Fatalf("Next gave %d segments, Count %d", len(out), s.Count())
	}
	return out, nil
}

// wantSegments builds with gopacket the frames TSO of super should give.
func wantSegments(tb testing.TB, super pkt, mss int) [][]byte {
	tb.Helper()
	var out [][]byte
	n := max(1, (len(super.payload)+mss-1)/mss)
	for k := range n {
		p := super
		p.seq += uint32(k * mss)
		p.id += uint16(k)
		p.payload = super.payload[k*mss : min(len(super.payload), (k+1)*mss)]
		if k != n-1 {
			p.flags &^= tcpFIN | tcpPSH
		}
		if k != 0 {
			p.flags &^= tcpCWR
		}
		out = append(out, p.build(tb))
	}
	return out
}

func TestSegment(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	big := randBytes(rng, 65000)
	tests := []struct {
		name   string
		v6     bool
		vlan   uint16
		opts   bool // TCP timestamps
		ipOpts []layers.IPv4Option
		flags  uint8
		ecn    bool
		n, mss int // payload and gso_size
	}{
		{name: "v4 64KB", n: 65000, mss: 1398, opts: true},
		{name: "v6 64KB", v6: true, n: 65000, mss: 1398, opts: true},
		{name: "v4 exact multiple", n: 1448 * 10, mss: 1448},
		{name: "v6 last short by one", v6: true, n: 1440*10 - 1, mss: 1440},
		{name: "v4 last one byte", n: 1000*3 + 1, mss: 1000},
		{name: "v4 VLAN", vlan: 100, n: 9000, mss: 1398, opts: true},
		{name: "v6 VLAN", v6: true, vlan: 4094, n: 9000, mss: 1378},
		{name: "v4 IP options", ipOpts: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}, n: 5000, mss: 1300},
		{name: "v4 FIN PSH last only", flags: tcpACK | tcpPSH | tcpFIN, n: 4000, mss: 1398},
		{name: "v6 PSH last only", v6: true, flags: tcpACK | tcpPSH, n: 4000, mss: 1398},
		{name: "v4 CWR first only", flags: tcpACK | tcpCWR | tcpECE, ecn: true, n: 4000, mss: 1398},
		{name: "v6 CWR first only", v6: true, flags: tcpACK | tcpCWR, ecn: true, n: 4000, mss: 1398, opts: true},
		{name: "v4 URG kept", flags: tcpACK | tcpURG, n: 3000, mss: 1398},
		{name: "payload below mss", n: 100, mss: 1398},
		{name: "payload equals mss", v6: true, n: 1398, mss: 1398},
		{name: "no payload", flags: tcpACK | tcpFIN, n: 0, mss: 1398},
		{name: "mss 1", n: 7, mss: 1, flags: tcpACK | tcpPSH},
		{name: "v6 largest segment", v6: true, n: 65515, mss: 65515},
	}
	for _, tt := range tests {
		for _, partial := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/partial=%v", tt.name, partial), func(t *testing.T) {
				p := basePkt(tt.v6)
				p.vlan, p.ipOpts = tt.vlan, tt.ipOpts
				if tt.opts {
					p.opts = tsoOpts()
				}
				if tt.flags != 0 {
					p.flags = tt.flags
				}
				if tt.n > len(big) {
					p.payload = randBytes(rng, tt.n)
				} else {
					p.payload = big[:tt.n]
				}
				frame := p.build(t)
				l3, l4 := p.offsets()
				gso := uint8(GSOTCPv4)
				if tt.v6 {
					gso = GSOTCPv6
				}
				if tt.ecn {
					gso |= GSOECN
				}
				// hdr_len and the csum fields are deliberately wrong
				// without partial: Reset must not use them.
				h := VirtioNetHdr{GSOType: gso, GSOSize: uint16(tt.mss), HdrLen: 3, CsumStart: 1, CsumOffset: 1}
				if partial {
					h = partialize(frame, l3, l4, 16, tt.v6, protoTCP)
					h.GSOType, h.GSOSize = gso, uint16(tt.mss)
					h.HdrLen = uint16(len(frame) - tt.n)
				}
				orig := bytes.Clone(frame)
				var s Segmenter
				got, err := segmentAll(t, &s, frame, &h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(frame, orig) {
					t.Error("Segmenter changed the super-frame")
				}
				want := wantSegments(t, p, tt.mss)
				if len(got) != len(want) {
					t.Fatalf("%d segments, want %d", len(got), len(want))
				}
				if s.FullLen() != len(want[0]) {
					t.Errorf("FullLen %d, first segment %d bytes", s.FullLen(), len(want[0]))
				}
				for k := range want {
					if !bytes.Equal(got[k], want[k]) {
						t.Fatalf("segment %d of %d differs from gopacket's:\n got % x\nwant % x", k, len(want),
							got[k][:min(len(got[k]), 80)], want[k][:min(len(want[k]), 80)])
					}
				}
			})
		}
	}
}

// TestSegmentNone: without GSO a frame of any protocol is one segment, a
// copy, its checksum completed when NEEDS_CSUM asks.
func TestSegmentNone(t *testing.T) {
	udp := basePkt(true)
	udp.udp, udp.payload = true, []byte("hello, world")
	tests := []struct {
		name    string
		p       pkt
		partial bool
		csumOff int
	}{
		{"TCPv4 complete", func() pkt { p := basePkt(false); p.payload = make([]byte, 1000); return p }(), false, 16},
		{"TCPv4 needs csum", func() pkt { p := basePkt(false); p.payload = make([]byte, 1000); return p }(), true, 16},
		{"UDPv6 needs csum", udp, true, 6},
		{"TCPv6 VLAN needs csum", func() pkt { p := basePkt(true); p.vlan = 3; p.payload = []byte{1}; return p }(), true, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.p.build(t)
			frame := bytes.Clone(want)
			var h VirtioNetHdr
			if tt.partial {
				l3, l4 := tt.p.offsets()
				proto := uint8(protoTCP)
				if tt.p.udp {
					proto = 17
				}
				h = partialize(frame, l3, l4, tt.csumOff, tt.p.v6, proto)
			}
			var s Segmenter
			got, err := segmentAll(t, &s, frame, &h)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !bytes.Equal(got[0], want) || s.FullLen() != len(want) {
				t.Errorf("got %d segments, FullLen %d; want the frame as gopacket builds it", len(got), s.FullLen())
			}
		})
	}
	// Not IP at all: an ARP frame is copied as it is.
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	var s Segmenter
	if got, err := segmentAll(t, &s, arp, &VirtioNetHdr{}); err != nil || len(got) != 1 || !bytes.Equal(got[0], arp) {
		t.Errorf("ARP: %d segments, %v", len(got), err)
	}
}

func TestSegmentErrors(t *testing.T) {
	v4 := basePkt(false)
	v4.payload = make([]byte, 3000)
	v4f := v4.build(t)
	v6 := basePkt(true)
	v6.payload = make([]byte, 3000)
	v6f := v6.build(t)
	tso4 := VirtioNetHdr{GSOType: GSOTCPv4, GSOSize: 1398}
	tso6 := VirtioNetHdr{GSOType: GSOTCPv6, GSOSize: 1398}

	mod := func(f []byte, fn func(b []byte)) []byte {
		b := bytes.Clone(f)
		fn(b)
		return b
	}
	udp := basePkt(false)
	udp.udp, udp.payload = true, make([]byte, 3000)
	// An IPv6 segment whose TCP header and payload exceed 65535 bytes.
	huge := append(bytes.Clone(v6f), make([]byte, 65536-3000)...)

	tests := []struct {
		name  string
		frame []byte
		h     VirtioNetHdr
		err   error
	}{
		{"UDP GSO", udp.build(t), VirtioNetHdr{GSOType: GSOUDP, GSOSize: 1000}, ErrUnsupported},
		{"USO", udp.build(t), VirtioNetHdr{GSOType: GSOUDPL4, GSOSize: 1000}, ErrUnsupported},
		{"unknown GSO type", v4f, VirtioNetHdr{GSOType: 2, GSOSize: 1000}, ErrUnsupported},
		{"gso_size 0", v4f, VirtioNetHdr{GSOType: GSOTCPv4}, ErrMalformed},
		{"TCPv6 type on IPv4", v4f, tso6, ErrMalformed},
		{"TCPv4 type on IPv6", v6f, tso4, ErrMalformed},
		{"TSO of ARP", mod(v4f, func(b []byte) { b[12], b[13] = 0x08, 0x06 }), tso4, ErrMalformed},
		{"IPv4 version 6", mod(v4f, func(b []byte) { b[14] = 0x65 }), tso4, ErrMalformed},
		{"IPv6 version 4", mod(v6f, func(b []byte) { b[14] = 0x40 }), tso6, ErrMalformed},
		{"IHL 4", mod(v4f, func(b []byte) { b[14] = 0x44 }), tso4, ErrMalformed},
		{"IHL beyond frame", mod(v4f[:40], func(b []byte) { b[14] = 0x4f }), tso4, ErrShort},
		{"fragment MF", mod(v4f, func(b []byte) { b[20] |= 0x20 }), tso4, ErrMalformed},
		{"fragment offset", mod(v4f, func(b []byte) { b[21] = 1 }), tso4, ErrMalformed},
		{"IPv4 UDP", udp.build(t), tso4, ErrMalformed},
		{"IPv6 hop-by-hop", mod(v6f, func(b []byte) { b[20] = 0 }), tso6, ErrUnsupported},
		{"IPv6 UDP", mod(v6f, func(b []byte) { b[20] = 17 }), tso6, ErrUnsupported},
		{"data offset 4", mod(v4f, func(b []byte) { b[46] = 0x40 }), tso4, ErrMalformed},
		{"data offset beyond", mod(v4f[:60], func(b []byte) { b[46] = 0xf0 }), tso4, ErrShort},
		{"QinQ", mod(v4f, func(b []byte) { b[12], b[13] = 0x88, 0xa8 }), tso4, ErrUnsupported},
		{"two 802.1Q tags", append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0}, v4f[14:]...), tso4, ErrUnsupported},
		{"segment beyond 65535", huge, VirtioNetHdr{GSOType: GSOTCPv6, GSOSize: 65535}, ErrMalformed},
		{"ECN without GSO", v4f, VirtioNetHdr{GSOType: GSOECN}, ErrMalformed},
		{"no GSO, csum beyond", v4f, VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(len(v4f) - 1)}, ErrShort},
		{"empty", nil, VirtioNetHdr{}, ErrShort},
		{"13 bytes", v4f[:13], VirtioNetHdr{}, ErrShort},
		{"VLAN tag cut", mod(v4f[:16], func(b []byte) { b[12], b[13] = 0x81, 0 }), tso4, ErrShort},
	}
	// Every truncation of the headers.
	for n := 14; n < 54; n++ {
		tests = append(tests, struct {
			name  string
			frame []byte
			h     VirtioNetHdr
			err   error
		}{fmt.Sprintf("IPv4 cut at %d", n), v4f[:n], tso4, ErrShort})
	}
	for n := 14; n < 74; n++ {
		tests = append(tests, struct {
			name  string
			frame []byte
			h     VirtioNetHdr
			err   error
		}{fmt.Sprintf("IPv6 cut at %d", n), v6f[:n], tso6, ErrShort})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Segmenter
			_, err := segmentAll(t, &s, tt.frame, &tt.h)
			if !errors.Is(err, tt.err) {
				t.Errorf("Reset = %v, want %v", err, tt.err)
			}
		})
	}
}

// TestSegmentGopacket parses every segment with gopacket: a cross-check of
// lengths and checksums independent of wantSegments.
func TestSegmentGopacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := basePkt(v6)
		p.opts = tsoOpts()
		p.payload = randBytes(rand.New(rand.NewPCG(1, 1)), 20000)
		frame := p.build(t)
		h := VirtioNetHdr{GSOType: GSOTCPv4, GSOSize: 1398}
		if v6 {
			h.GSOType = GSOTCPv6
		}
		var s Segmenter
		segs, err := segmentAll(t, &s, frame, &h)
		if err != nil {
			t.Fatal(err)
		}
		var payload []byte
		for k, seg := range segs {
			checkSegment(t, seg)
			pk := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
			tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.Seq != p.seq+uint32(k*1398) {
				t.Errorf("segment %d: seq %#x", k, tcp.Seq)
			}
			payload = append(payload, tcp.Payload...)
		}
		if !bytes.Equal(payload, p.payload) {
			t.Errorf("v6=%v: segments' payloads do not add up to the super-frame's", v6)
		}
	}
}

// checkSegment fails tb unless seg parses with gopacket without errors as
// Ethernet (optionally 802.1Q), IP and TCP with correct lengths and checksums.
func checkSegment(tb testing.TB, seg []byte) {
	tb.Helper()
	pk := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	if el := pk.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket: %v", el.Error())
	}
	tcp, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		tb.Fatalf("no TCP layer in % x", seg[:min(len(seg), 80)])
	}
	l3 := 14
	if binary.BigEndian.Uint16(seg[12:14]) == 0x8100 {
		l3 = 18
	}
	if !tcpChecksumOK(seg, l3) {
		tb.Fatalf("bad checksum %#04x", tcp.Checksum)
	}
	var ipLen int
	if ip4, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		ipLen = int(ip4.Length)
	} else if ip6, ok := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		ipLen = 40 + int(ip6.Length)
	}
	if l3+ipLen != len(seg) {
		tb.Fatalf("IP length %d in a %d-byte frame", ipLen, len(seg))
	}
}

func TestSegmentAllocs(t *testing.T) {
	p := basePkt(false)
	p.opts = tsoOpts()
	p.payload = make([]byte, 65000)
	frame := p.build(t)
	h := VirtioNetHdr{GSOType: GSOTCPv4, GSOSize: 1398}
	dst := make([]byte, 1500)
	var s Segmenter
	if n := testing.AllocsPerRun(100, func() {
		if err := s.Reset(frame, &h); err != nil {
			t.Fatal(err)
		}
		for s.Next(dst) != 0 {
		}
		_ = s.Reset(frame[:20], &h) // error path
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func BenchmarkSegment(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		b.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(b *testing.B) {
			p := basePkt(v6)
			p.opts = tsoOpts()
			p.payload = make([]byte, 65483-40*btoi(v6)) // the largest IPv4 super-frame with timestamps
			frame := p.build(b)
			h := VirtioNetHdr{GSOType: GSOTCPv4, GSOSize: 1398}
			if v6 {
				h.GSOType = GSOTCPv6
			}
			dst := make([]byte, 1600)
			var s Segmenter
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var segs int
			for b.Loop() {
				if err := s.Reset(frame, &h); err != nil {
					b.Fatal(err)
				}
				for s.Next(dst) != 0 {
					segs++
				}
			}
			b.ReportMetric(float64(segs)/b.Elapsed().Seconds(), "segs/s")
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
