package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The seed corpora are committed under testdata/fuzz/<FuzzName>/.

// FuzzVirtioNetHdr: Decode and Encode round-trip, and completeChecksum with
// any header either fails cleanly or leaves a checksum that verifies.
func FuzzVirtioNetHdr(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var h VirtioNetHdr
		err := h.Decode(b)
		if len(b) < VirtioNetHdrLen {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("Decode(%d bytes) = %v", len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var re [VirtioNetHdrLen]byte
		h.Encode(re[:])
		if !bytes.Equal(re[:], b[:VirtioNetHdrLen]) {
			t.Fatalf("Encode(Decode(% x)) = % x", b[:VirtioNetHdrLen], re)
		}
		frame := bytes.Clone(b[VirtioNetHdrLen:])
		field := int(h.CsumStart) + int(h.CsumOffset)
		var partial uint16 // what the field held: the pseudo-header sum
		if field+2 <= len(frame) {
			partial = binary.BigEndian.Uint16(frame[field:])
		}
		err = completeChecksum(frame, &h)
		switch {
		case h.Flags&FlagNeedsCsum == 0:
			if err != nil || !bytes.Equal(frame, b[VirtioNetHdrLen:]) {
				t.Fatalf("without NEEDS_CSUM: %v, frame changed", err)
			}
		case field+2 > len(frame):
			if !errors.Is(err, ErrShort) || !bytes.Equal(frame, b[VirtioNetHdrLen:]) {
				t.Fatalf("field at %d of %d bytes: %v", field, len(frame), err)
			}
		default:
			if err != nil {
				t.Fatal(err)
			}
			// With the pseudo-header sum the field held, the covered bytes
			// verify (when the field is word-aligned in them).
			if h.CsumOffset%2 == 0 && Checksum(frame[h.CsumStart:], uint64(partial)) != 0xffff {
				t.Fatalf("completed checksum does not verify")
			}
		}
	})
}

// FuzzSegment: the first VirtioNetHdrLen bytes are the header, the rest the
// frame. Reset never panics; when it succeeds, the segments of a TCP
// super-frame each parse with gopacket, have valid IP and TCP checksums and
// lengths, and their payloads add up to the super-frame's.
func FuzzSegment(f *testing.F) {
	dst := make([]byte, 70000)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h VirtioNetHdr
		if h.Decode(b) != nil {
			return
		}
		frame := b[VirtioNetHdrLen:]
		orig := bytes.Clone(frame)
		var s Segmenter
		if err := s.Reset(frame, &h); err != nil {
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Reset error of no kind: %v", err)
			}
			if s.Count() != 0 || s.Next(dst) != 0 {
				t.Fatal("a failed Reset produces segments")
			}
			return
		}
		full := s.FullLen()
		if full > len(frame) || s.Count() < 1 {
			t.Fatalf("FullLen %d of a %d-byte frame, Count %d", full, len(frame), s.Count())
		}
		gso := h.GSOType&^GSOECN != GSONone
		var payload []byte
		var hdrLen int
		for k := 0; ; k++ {
			n := s.Next(dst[:full])
			if n == 0 {
				if k != s.Count() {
					t.Fatalf("%d segments, Count %d", k, s.Count())
				}
				break
			}
			if n > full || (k < s.Count()-1 && n != full) {
				t.Fatalf("segment %d: %d bytes, FullLen %d", k, n, full)
			}
			seg := dst[:n]
			if !gso {
				if n != len(frame) {
					t.Fatalf("GSONone: %d bytes of %d", n, len(frame))
				}
				continue
			}
			l3, l4, hl := checkSegmentFuzz(t, seg)
			if !tcpChecksumOK(seg, l3) {
				t.Fatalf("segment %d: bad checksum", k)
			}
			_ = l4
			hdrLen = hl
			payload = append(payload, seg[hl:]...)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("Segmenter changed its input")
		}
		if gso && !bytes.Equal(payload, frame[hdrLen:]) {
			t.Fatalf("payloads add up to %d bytes, want %d", len(payload), len(frame)-hdrLen)
		}
	})
}

// checkSegmentFuzz parses seg with gopacket's Ethernet, 802.1Q, IPv4, IPv6
// and TCP decoders and returns the IP and TCP offsets and the headers'
// length. Malformed IPv4 or TCP options are tolerated: the Segmenter copies
// options as the sender wrote them, as the kernel does.
func checkSegmentFuzz(tb testing.TB, seg []byte) (l3, l4, hdrLen int) {
	tb.Helper()
	var (
		eth  layers.Ethernet
		vlan layers.Dot1Q
		ip4  layers.IPv4
		ip6  layers.IPv6
		tcp  layers.TCP
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &vlan, &ip4, &ip6, &tcp)
	p.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	if err := p.DecodeLayers(seg, &decoded); err != nil && !strings.Contains(err.Error(), "option") {
		tb.Fatalf("gopacket: %v\n% x", err, seg[:min(len(seg), 100)])
	}
	l3 = 14
	if binary.BigEndian.Uint16(seg[12:14]) == 0x8100 {
		l3 = 18
	}
	ip := seg[l3:]
	var ipEnd int
	if ip[0]>>4 == 4 {
		l4 = l3 + int(ip[0]&0xf)*4
		ipEnd = l3 + int(binary.BigEndian.Uint16(ip[2:4]))
	} else {
		l4 = l3 + 40
		ipEnd = l4 + int(binary.BigEndian.Uint16(ip[4:6]))
	}
	if ipEnd != len(seg) {
		tb.Fatalf("IP length ends at %d of %d bytes", ipEnd, len(seg))
	}
	return l3, l4, l4 + int(seg[l4+12]>>4)*4
}

// groFuzzSegments returns the segments FuzzGRO's op mode picks from: a v4
// flow with timestamps and a v6 flow, 9 segments of 64 bytes and a short
// one.
func groFuzzSegments(tb testing.TB) [2][][]byte {
	var out [2][][]byte
	rng := rand.New(rand.NewPCG(41, 42))
	for i, v6 := range []bool{false, true} {
		p := basePkt(v6)
		if !v6 {
			p.opts = tsoOpts()
		}
		for _, s := range flowSegs(p, 10, 64, rng) {
			if len(out[i]) == 9 {
				s.payload = s.payload[:17]
			}
			out[i] = append(out[i], s.build(tb))
		}
	}
	return out
}

// FuzzGRO feeds frames to a small GRO and checks what comes out: the TCP
// payload bytes that went in all come out, merged frames segment back into
// exactly as many segments as were merged, each frame of a flow (and each
// untracked frame of a key) keeps its order, and a merged frame's checksum
// completes to a valid one. Input: if b[0]&0x80, raw frames, each a length
// byte, a key byte and that many bytes; else pairs of bytes (a, c) picking a
// segment of groFuzzSegments (a&1 the flow, a>>1&15 the segment, a>>5&1 the
// key) and a mutation (a>>6: none, flip a bit chosen by c, TCP flags := c,
// ACK += c; the last two with the checksum fixed).
func FuzzGRO(f *testing.F) {
	segs := groFuzzSegments(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		var keys []int
		var frames [][]byte
		if b[0]&0x80 != 0 {
			for r := b[1:]; len(r) >= 2; {
				n := min(int(r[0]), len(r)-2)
				keys = append(keys, int(r[1]&3))
				frames = append(frames, bytes.Clone(r[2:2+n]))
				r = r[2+n:]
			}
		} else {
			for r := b[1:]; len(r) >= 2; r = r[2:] {
				a, c := r[0], r[1]
				src := segs[a&1]
				fr := bytes.Clone(src[int(a>>1&15)%len(src)])
				l4 := 14 + 20
				if a&1 == 1 {
					l4 = 14 + 40
				}
				switch a >> 6 {
				case 1:
					i := int(c) * 7 % len(fr)
					fr[i] ^= 1 << (c % 8)
				case 2:
					fr[l4+13] = c
					fixTCPChecksum(fr, l4)
				case 3:
					binary.BigEndian.PutUint32(fr[l4+8:], binary.BigEndian.Uint32(fr[l4+8:])+uint32(c))
					fixTCPChecksum(fr, l4)
				}
				keys = append(keys, int(a>>5&1))
				frames = append(frames, fr)
			}
		}

		g := NewGRO(4, 2000)
		var outs [][]byte // virtio header and frame
		var outKeys []int
		flush := func() {
			for i := range g.Len() {
				k, buf := g.Frame(i)
				outs = append(outs, bytes.Clone(buf))
				outKeys = append(outKeys, k)
			}
			g.Reset()
		}
		for i, fr := range frames {
			orig := bytes.Clone(fr)
			if !g.Add(keys[i], fr) {
				flush()
				if !g.Add(keys[i], fr) {
					t.Fatalf("an empty GRO refused a %d-byte frame", len(fr))
				}
			}
			if !bytes.Equal(fr, orig) {
				t.Fatal("Add changed its input")
			}
		}
		flush()

		// Expand merged outputs into their segments.
		var exp [][]byte
		var expKeys []int
		var seg Segmenter
		for i, buf := range outs {
			var h VirtioNetHdr
			if err := h.Decode(buf); err != nil {
				t.Fatal(err)
			}
			fr := buf[VirtioNetHdrLen:]
			if h.GSOType == GSONone {
				if h.Flags&FlagDataValid != 0 && !tcpChecksumOK(fr, 14) {
					t.Fatalf("output %d: DataValid with a bad checksum", i)
				}
				exp = append(exp, fr)
				expKeys = append(expKeys, outKeys[i])
				continue
			}
			done := bytes.Clone(fr)
			if err := completeChecksum(done, &h); err != nil || !tcpChecksumOK(done, 14) {
				t.Fatalf("output %d: merged frame's checksum does not complete: %v", i, err)
			}
			if err := seg.Reset(fr, &h); err != nil {
				t.Fatalf("output %d: merged frame does not segment: %v", i, err)
			}
			if seg.Count() < 2 {
				t.Fatalf("output %d: a merged frame of %d segments", i, seg.Count())
			}
			dst := make([]byte, seg.FullLen())
			for n := seg.Next(dst); n != 0; n = seg.Next(dst) {
				exp = append(exp, bytes.Clone(dst[:n]))
				expKeys = append(expKeys, outKeys[i])
			}
		}
		if len(exp) != len(frames) {
			t.Fatalf("%d frames in, %d out after segmenting the merged ones", len(frames), len(exp))
		}
		var in, out int
		for i := range frames {
			in += tcpPayloadLen(frames[i])
			out += tcpPayloadLen(exp[i])
		}
		if in != out {
			t.Fatalf("TCP payload: %d bytes in, %d out", in, out)
		}
		// Per flow (and per key for untracked frames) the order is kept.
		want := groupByFlow(frames, keys)
		got := groupByFlow(exp, expKeys)
		if len(want) != len(got) {
			t.Fatalf("%d flows in, %d out", len(want), len(got))
		}
		for id, ws := range want {
			gs := got[id]
			if len(gs) != len(ws) {
				t.Fatalf("flow %q: %d frames in, %d out", id, len(ws), len(gs))
			}
			for j := range ws {
				if !bytes.Equal(ws[j], gs[j]) {
					t.Fatalf("flow %q: frame %d differs or moved:\n in % x\nout % x", id, j, ws[j], gs[j])
				}
			}
		}
	})
}

// fixTCPChecksum recomputes the TCP checksum of frame (TCP at l4, untagged).
func fixTCPChecksum(fr []byte, l4 int) {
	ip := fr[14:l4]
	tcp := fr[l4:]
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], ^Checksum(tcp, tcpPseudo(ip, ip[0]>>4 == 6, len(tcp))))
}

// tcpPayloadLen returns the TCP payload length of an untagged TCP frame by
// its IP length, 0 for anything else.
func tcpPayloadLen(fr []byte) int {
	var seg tcpSeg
	if !parseTCP(fr, &seg) {
		return 0
	}
	ip := fr[14:]
	var end int
	if seg.v6 {
		end = 54 + int(binary.BigEndian.Uint16(ip[4:6]))
	} else {
		end = 14 + int(binary.BigEndian.Uint16(ip[2:4]))
	}
	if end > len(fr) || seg.l4+20 > end {
		return 0
	}
	hl := seg.l4 + int(fr[seg.l4+12]>>4)*4
	if hl > end {
		return 0
	}
	return end - hl
}

// groupByFlow groups frames by key and TCP flow (untracked frames by key
// alone), keeping their order, each with the fields a merge and
// re-segmentation may change zeroed: IPv4 id and header checksum, TCP
// checksum.
func groupByFlow(frames [][]byte, keys []int) map[string][][]byte {
	m := make(map[string][][]byte)
	for i, fr := range frames {
		id := string(rune('0' + keys[i]))
		var seg tcpSeg
		fr = bytes.Clone(fr)
		if parseTCP(fr, &seg) {
			ip := fr[14:]
			if seg.v6 {
				id += "6" + string(ip[8:40])
			} else {
				id += "4" + string(ip[12:20])
				ip[4], ip[5], ip[10], ip[11] = 0, 0, 0, 0
			}
			id += string(fr[seg.l4 : seg.l4+4])
			if seg.l4+18 <= len(fr) {
				fr[seg.l4+16], fr[seg.l4+17] = 0, 0
			}
		}
		m[id] = append(m[id], fr)
	}
	return m
}
