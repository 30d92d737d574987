package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket/layers"
)

// groBufSize lets any merge reach 64 KB.
const groBufSize = VirtioNetHdrLen + 65535 + 18

// flowSegs returns n segment specs of a flow: base, payloads of size each,
// sequence numbers adjacent.
func flowSegs(base pkt, n, size int, rng *rand.Rand) []pkt {
	out := make([]pkt, n)
	for i := range out {
		p := base
		p.seq = base.seq + uint32(i*size)
		p.id = base.id + uint16(i)
		p.payload = randBytes(rng, size)
		out[i] = p
	}
	return out
}

// groIn is one frame a GRO test adds.
type groIn struct {
	p      pkt
	key    int
	mangle func(b []byte) // changes the built frame, or nil
}

// groOutputs adds ins to a GRO and checks its outputs against want: for each
// output, the indices of the inputs it should hold, in order. A one-input
// output must be that input's frame, byte for byte; a merged one must be the
// frame gopacket builds from the first input with all the payloads, once
// completeChecksum has run on it.
func groOutputs(t *testing.T, ins []groIn, want [][]int) {
	t.Helper()
	frames := make([][]byte, len(ins))
	for i, in := range ins {
		frames[i] = in.p.build(t)
		if in.mangle != nil {
			in.mangle(frames[i])
		}
	}
	g := NewGRO(len(ins)+1, groBufSize)
	for i, f := range frames {
		if !g.Add(ins[i].key, f) {
			t.Fatalf("Add %d: no room", i)
		}
	}
	if g.Len() != len(want) {
		for i := range g.Len() {
			_, buf := g.Frame(i)
			var h VirtioNetHdr
			_ = h.Decode(buf)
			t.Logf("output %d: %d bytes, %+v", i, len(buf), h)
		}
		t.Fatalf("%d outputs, want %d", g.Len(), len(want))
	}
	for i, idx := range want {
		key, buf := g.Frame(i)
		if key != ins[idx[0]].key {
			t.Errorf("output %d: key %d, want %d", i, key, ins[idx[0]].key)
		}
		var h VirtioNetHdr
		if err := h.Decode(buf); err != nil {
			t.Fatal(err)
		}
		frame := buf[VirtioNetHdrLen:]
		if len(idx) == 1 {
			if h.GSOType != GSONone || h.Flags&^FlagDataValid != 0 || h.HdrLen|h.GSOSize|h.CsumStart|h.CsumOffset != 0 {
				t.Errorf("output %d: header %+v for an unmerged frame", i, h)
			}
			if h.Flags&FlagDataValid != 0 && !tcpChecksumOK(frame, 14) {
				t.Errorf("output %d: DataValid on a frame with a bad checksum", i)
			}
			if !bytes.Equal(frame, frames[idx[0]]) {
				t.Errorf("output %d: not input %d's frame", i, idx[0])
			}
			continue
		}
		first := ins[idx[0]].p
		exp := first
		exp.payload = nil
		for _, j := range idx {
			exp.payload = append(exp.payload, ins[j].p.payload...)
		}
		exp.flags |= ins[idx[len(idx)-1]].p.flags & tcpPSH
		wantFrame := exp.build(t)
		l3, l4 := first.offsets()
		hdrLen := len(frames[idx[0]]) - len(first.payload)
		wantH := VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(hdrLen),
			GSOSize: uint16(len(first.payload)), CsumStart: uint16(l4), CsumOffset: 16}
		if first.v6 {
			wantH.GSOType = GSOTCPv6
		}
		if h != wantH {
			t.Errorf("output %d: header %+v, want %+v", i, h, wantH)
		}
		// The checksum field holds the pseudo-header sum.
		ps := tcpPseudo(frame[l3:], first.v6, len(frame)-l4)
		if got := binary.BigEndian.Uint16(frame[l4+16:]); got != fold64(ps) {
			t.Errorf("output %d: TCP checksum field %#04x, pseudo-header sum %#04x", i, got, fold64(ps))
		}
		done := bytes.Clone(frame)
		if err := completeChecksum(done, &h); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(done, wantFrame) {
			t.Errorf("output %d (inputs %v): merged frame differs from gopacket's", i, idx)
		}
	}
}

func TestGROMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	v4, v6 := basePkt(false), basePkt(true)
	v4ts, v6ts := v4, v6
	v4ts.opts, v6ts.opts = tsoOpts(), tsoOpts()
	seq := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		return s
	}
	tests := []struct {
		name string
		ins  []groIn
		want [][]int
	}{
		{"v4 two", groIns(flowSegs(v4, 2, 1448, rng), 0), [][]int{{0, 1}}},
		{"v6 two", groIns(flowSegs(v6, 2, 1440, rng), 0), [][]int{{0, 1}}},
		{"v4 45 with timestamps", groIns(flowSegs(v4ts, 45, 1436, rng), 0), [][]int{seq(45)}},
		{"v6 45 with timestamps", groIns(flowSegs(v6ts, 45, 1416, rng), 0), [][]int{seq(45)}},
		{"single segment", groIns(flowSegs(v4, 1, 1448, rng), 3), [][]int{{0}}},
		{"last shorter", func() []groIn {
			s := flowSegs(v4, 4, 1000, rng)
			s[3].payload = s[3].payload[:10]
			return groIns(s, 0)
		}(), [][]int{{0, 1, 2, 3}}},
		{"PSH on the last", func() []groIn {
			s := flowSegs(v6, 3, 1000, rng)
			s[2].flags |= tcpPSH
			return groIns(s, 0)
		}(), [][]int{{0, 1, 2}}},
		{"interleaved flows", func() []groIn {
			a := flowSegs(v4, 3, 500, rng)
			b := v4
			b.sport++
			bs := flowSegs(b, 3, 500, rng)
			return groIns([]pkt{a[0], bs[0], a[1], bs[1], a[2], bs[2]}, 0)
		}(), [][]int{{0, 2, 4}, {1, 3, 5}}},
		{"v4 and v6 flows", func() []groIn {
			a, b := flowSegs(v4, 2, 700, rng), flowSegs(v6, 2, 700, rng)
			return groIns([]pkt{a[0], b[0], b[1], a[1]}, 1)
		}(), [][]int{{0, 3}, {1, 2}}},
		{"seq wraps", func() []groIn {
			p := v4
			p.seq = 0xffffffff - 700
			return groIns(flowSegs(p, 3, 500, rng), 0)
		}(), [][]int{{0, 1, 2}}},
		{"ids not consecutive (DF)", func() []groIn {
			s := flowSegs(v4, 3, 500, rng)
			s[1].id, s[2].id = 7, 3
			return groIns(s, 0)
		}(), [][]int{{0, 1, 2}}},
		{"over 64 KB starts a second frame", groIns(flowSegs(v4ts, 60, 1436, rng), 0), [][]int{seq(45), seq(60)[45:]}},
		{"v6 over 64 KB", groIns(flowSegs(v6, 50, 1440, rng), 0), [][]int{seq(45), seq(50)[45:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { groOutputs(t, tt.ins, tt.want) })
	}
}

func groIns(ps []pkt, key int) []groIn {
	out := make([]groIn, len(ps))
	for i, p := range ps {
		out[i] = groIn{p: p, key: key}
	}
	return out
}

// TestGRORefuse: what must not merge comes out as separate frames, and a
// flow never merges past a frame of its own that was not merged.
func TestGRORefuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	v4, v6 := basePkt(false), basePkt(true)
	v4.opts, v6.opts = tsoOpts(), tsoOpts()
	// five segments of 1000 bytes, changed by fn (segment 2 unless it says otherwise)
	five := func(base pkt, fn func(s []groIn)) []groIn {
		s := groIns(flowSegs(base, 5, 1000, rng), 0)
		fn(s)
		return s
	}
	tests := []struct {
		name string
		ins  []groIn
		want [][]int
	}{
		{"gap in seq", func() []groIn {
			s := groIns(flowSegs(v4, 5, 1000, rng), 0)
			return append(s[:2:2], s[3:]...)
		}(), [][]int{{0, 1}, {2, 3}}},
		{"different ACK", five(v4, func(s []groIn) { s[2].p.ack++ }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different window", five(v6, func(s []groIn) { s[2].p.window++ }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different options", five(v4, func(s []groIn) {
			s[2].p.opts = tsoOpts()
			s[2].p.opts[2].OptionData[3]++
		}), [][]int{{0, 1}, {2}, {3, 4}}},
		{"no options", five(v6, func(s []groIn) { s[2].p.opts = nil }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"bad TCP checksum", five(v4, func(s []groIn) { s[2].mangle = func(b []byte) { b[len(b)-1]++ } }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"bad v6 TCP checksum", five(v6, func(s []groIn) { s[2].mangle = func(b []byte) { b[60] ^= 0x80 } }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"bad IPv4 header checksum", five(v4, func(s []groIn) { s[2].mangle = func(b []byte) { b[24] ^= 1 } }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"PSH in the middle", five(v4, func(s []groIn) { s[2].p.flags |= tcpPSH }), [][]int{{0, 1, 2}, {3, 4}}},
		{"PSH on the first", five(v6, func(s []groIn) { s[0].p.flags |= tcpPSH }), [][]int{{0}, {1, 2, 3, 4}}},
		{"FIN", five(v4, func(s []groIn) { s[2].p.flags |= tcpFIN }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"FIN on the last", five(v4, func(s []groIn) { s[4].p.flags |= tcpFIN }), [][]int{{0, 1, 2, 3}, {4}}},
		{"CWR", five(v4, func(s []groIn) { s[2].p.flags |= tcpCWR }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"ECE", five(v6, func(s []groIn) { s[2].p.flags |= tcpECE }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"URG", five(v4, func(s []groIn) { s[2].p.flags |= tcpURG; s[2].p.urgent = 1 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different urgent pointer without URG", five(v4, func(s []groIn) { s[2].p.urgent = 7 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"RST", five(v4, func(s []groIn) { s[2].p.flags = tcpRST | tcpACK }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"SYN", five(v4, func(s []groIn) { s[0].p.flags = tcpSYN | tcpACK }), [][]int{{0}, {1, 2, 3, 4}}},
		{"no ACK", five(v4, func(s []groIn) { s[2].p.flags = 0 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different key", five(v4, func(s []groIn) { s[2].key = 9 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different TTL", five(v4, func(s []groIn) { s[2].p.ttl-- }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different hop limit", five(v6, func(s []groIn) { s[2].p.ttl-- }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different TOS", five(v4, func(s []groIn) { s[2].p.tos = 0 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different traffic class", five(v6, func(s []groIn) { s[2].p.tclass = 1 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different flow label", five(v6, func(s []groIn) { s[2].p.flowLabel = 1 }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"no DF", five(v4, func(s []groIn) {
			for i := range s {
				s[i].p.df = false
			}
		}), [][]int{{0}, {1}, {2}, {3}, {4}}},
		{"IPv4 options", five(v4, func(s []groIn) {
			for i := range s {
				s[i].p.ipOpts = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
			}
		}), [][]int{{0}, {1}, {2}, {3}, {4}}},
		{"IPv4 fragment", five(v4, func(s []groIn) { s[2].mangle = func(b []byte) { b[20] |= 0x20; setIPv4Checksum(b[14:34]) } }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"different source MAC", five(v4, func(s []groIn) { s[2].p.srcMAC = []byte{2, 0, 0, 0, 0, 9} }), [][]int{{0, 1}, {2}, {3, 4}}},
		{"VLAN tagged", five(v4, func(s []groIn) {
			for i := range s {
				s[i].p.vlan = 5
			}
		}), [][]int{{0}, {1}, {2}, {3}, {4}}},
		{"shorter in the middle", five(v4, func(s []groIn) {
			s[2].p.payload = s[2].p.payload[:500]
			s[3].p.seq -= 500
			s[4].p.seq -= 500
		}), [][]int{{0, 1, 2}, {3, 4}}},
		{"longer than the first", five(v6, func(s []groIn) {
			s[1].p.payload = append(s[1].p.payload, 1)
			s[2].p.seq++
			s[3].p.seq++
			s[4].p.seq++
		}), [][]int{{0}, {1, 2}, {3, 4}}}, // 2 is shorter than 1, so it closes 1's merge
		{"pure ACK of the flow in between", func() []groIn {
			s := groIns(flowSegs(v4, 4, 1000, rng), 0)
			ack := s[2]
			ack.p.payload = nil
			return []groIn{s[0], s[1], ack, s[2], s[3]}
		}(), [][]int{{0, 1}, {2}, {3, 4}}},
		{"retransmission", func() []groIn {
			s := groIns(flowSegs(v6, 4, 1000, rng), 0)
			return []groIn{s[0], s[1], s[1], s[2], s[3]}
		}(), [][]int{{0, 1}, {2, 3, 4}}},
		{"IPv4 padding", five(v4, func(s []groIn) {
			s[2].mangle = func(b []byte) {
				ip := b[14:34]
				binary.BigEndian.PutUint16(ip[2:4], binary.BigEndian.Uint16(ip[2:4])-1)
				setIPv4Checksum(ip)
			}
		}), [][]int{{0, 1}, {2}, {3, 4}}},
		{"other traffic does not stop a merge", func() []groIn {
			s := groIns(flowSegs(v4, 3, 1000, rng), 0)
			u := v4
			u.udp, u.payload = true, []byte("dns")
			o := v6
			o.payload = []byte("x")
			return []groIn{s[0], {p: u}, s[1], {p: o}, s[2]}
		}(), [][]int{{0, 2, 4}, {1}, {3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { groOutputs(t, tt.ins, tt.want) })
	}
}

// TestGROPassThrough: frames that are not TCP, or too short to parse, come
// out byte-identical behind a zero header.
func TestGROPassThrough(t *testing.T) {
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	v4 := basePkt(false)
	v4.payload = []byte("abc")
	f4 := v4.build(t)
	frames := [][]byte{nil, {1, 2, 3}, arp, f4[:14], f4[:33], f4[:36], f4[:40], f4[:len(f4)-1]}
	g := NewGRO(len(frames), 2048)
	for i, f := range frames {
		if !g.Add(i%3, f) {
			t.Fatalf("Add %d: no room", i)
		}
	}
	if g.Len() != len(frames) {
		t.Fatalf("%d outputs, want %d", g.Len(), len(frames))
	}
	for i, f := range frames {
		key, buf := g.Frame(i)
		if key != i%3 || !bytes.Equal(buf[:VirtioNetHdrLen], make([]byte, VirtioNetHdrLen)) || !bytes.Equal(buf[VirtioNetHdrLen:], f) {
			t.Errorf("output %d: key %d, % x", i, key, buf)
		}
	}
}

// TestGRORoundTrip: GRO of the segments of a super-frame gives the
// super-frame back, and segmenting that gives the segments back.
func TestGRORoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, tt := range []struct {
		v6    bool
		n     int
		flags uint8
	}{{false, 65000, tcpACK}, {true, 30001, tcpACK | tcpPSH}, {false, 1449, tcpACK | tcpPSH}, {true, 2896, tcpACK}} {
		t.Run(fmt.Sprintf("v6=%v/%d", tt.v6, tt.n), func(t *testing.T) {
			p := basePkt(tt.v6)
			p.opts = tsoOpts()
			p.flags = tt.flags
			p.payload = randBytes(rng, tt.n)
			super := p.build(t)
			h := VirtioNetHdr{GSOType: GSOTCPv4, GSOSize: 1448}
			if tt.v6 {
				h.GSOType = GSOTCPv6
			}
			var s Segmenter
			segs, err := segmentAll(t, &s, super, &h)
			if err != nil {
				t.Fatal(err)
			}
			g := NewGRO(4, groBufSize)
			for _, seg := range segs {
				if !g.Add(1, seg) {
					t.Fatal("no room")
				}
			}
			if g.Len() != 1 {
				t.Fatalf("%d outputs of %d segments", g.Len(), len(segs))
			}
			_, buf := g.Frame(0)
			var gh VirtioNetHdr
			_ = gh.Decode(buf)
			merged := bytes.Clone(buf[VirtioNetHdrLen:])
			if err := completeChecksum(merged, &gh); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(merged, super) {
				t.Errorf("GRO(Segment(x)) != x")
			}
			again, err := segmentAll(t, &s, buf[VirtioNetHdrLen:], &gh)
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != len(segs) {
				t.Fatalf("Segment(GRO(segments)) gives %d segments, want %d", len(again), len(segs))
			}
			for k := range segs {
				if !bytes.Equal(again[k], segs[k]) {
					t.Fatalf("segment %d differs after the round trip", k)
				}
			}
		})
	}
}

func TestGROFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	a := flowSegs(basePkt(false), 4, 1000, rng)
	b := flowSegs(basePkt(true), 2, 1000, rng)
	var fa, fb [][]byte
	for _, p := range a {
		fa = append(fa, p.build(t))
	}
	for _, p := range b {
		fb = append(fb, p.build(t))
	}
	g := NewGRO(2, 3000)
	steps := []struct {
		frame []byte
		ok    bool
		len   int
	}{
		{fa[0], true, 1},
		{fb[0], true, 2},
		{fa[1], true, 2},  // joins output 0 although every buffer is used
		{fa[2], false, 2}, // would make output 0 longer than its buffer
		{fb[1], true, 2},  // joins output 1
		{make([]byte, 60), false, 2},
		{make([]byte, 2991), false, 2}, // no buffer ever holds it
	}
	for i, st := range steps {
		if ok := g.Add(0, st.frame); ok != st.ok || g.Len() != st.len {
			t.Fatalf("step %d: Add = %v, Len %d; want %v, %d", i, ok, g.Len(), st.ok, st.len)
		}
	}
	g.Reset()
	if g.Len() != 0 {
		t.Fatalf("Len after Reset = %d", g.Len())
	}
	// After Reset the flow is forgotten: a frame that follows on does not
	// join anything.
	for i, f := range [][]byte{fa[2], fa[3], make([]byte, 2990)} {
		if !g.Add(0, f) {
			t.Fatalf("after Reset: Add %d refused", i)
		}
	}
	if g.Len() != 2 {
		t.Errorf("after Reset: %d outputs, want 2", g.Len())
	}
}

// TestGROManyFlows fills the flow table with many flows and keys.
func TestGROManyFlows(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	const flows, per = 300, 3
	var ins []groIn
	var want [][]int
	segs := make([][]pkt, flows)
	for f := range flows {
		p := basePkt(f%2 == 1)
		p.sport = uint16(1000 + f)
		segs[f] = flowSegs(p, per, 100, rng)
		want = append(want, nil)
	}
	for k := range per {
		for f := range flows {
			want[f] = append(want[f], len(ins))
			ins = append(ins, groIn{p: segs[f][k], key: f % 7})
		}
	}
	groOutputs(t, ins, want)
}

func TestGROAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	p := basePkt(false)
	p.opts = tsoOpts()
	var frames [][]byte
	for _, s := range flowSegs(p, 45, 1436, rng) {
		frames = append(frames, s.build(t))
	}
	udp := basePkt(true)
	udp.udp, udp.payload = true, []byte("x")
	frames = append(frames, udp.build(t))
	g := NewGRO(8, groBufSize)
	if n := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			g.Add(1, f)
		}
		for i := range g.Len() {
			_, _ = g.Frame(i)
		}
		g.Reset()
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func BenchmarkGRO(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		b.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(b *testing.B) {
			rng := rand.New(rand.NewPCG(33, 34))
			p := basePkt(v6)
			p.opts = tsoOpts()
			var frames [][]byte
			var total int
			for _, s := range flowSegs(p, 45, 1398, rng) {
				f := s.build(b)
				frames = append(frames, f)
				total += len(f)
			}
			g := NewGRO(4, groBufSize)
			b.ReportAllocs()
			b.SetBytes(int64(total))
			for b.Loop() {
				for _, f := range frames {
					g.Add(0, f)
				}
				if g.Len() != 1 {
					b.Fatalf("%d outputs", g.Len())
				}
				g.Reset()
			}
			b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "segs/s")
		})
	}
}

// TestGROGenerationWrap: when the table's generation number wraps, Reset
// empties the table, so no flow of an old batch is found.
func TestGROGenerationWrap(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	var frames [][]byte
	for _, p := range flowSegs(basePkt(false), 2, 500, rng) {
		frames = append(frames, p.build(t))
	}
	g := NewGRO(2, 4096)
	g.gen = ^uint32(0)
	g.Add(0, frames[0])
	g.Reset()
	if g.gen != 1 {
		t.Fatalf("generation after wrap = %d, want 1", g.gen)
	}
	for i, sl := range g.table {
		if sl != (groSlot{}) {
			t.Fatalf("slot %d survived the wrap: %+v", i, sl)
		}
	}
	g.Add(0, frames[1])
	if g.Len() != 1 {
		t.Fatalf("Len %d", g.Len())
	}
	if _, buf := g.Frame(0); !bytes.Equal(buf[VirtioNetHdrLen:], frames[1]) {
		t.Error("frame of the new batch changed")
	}
}
