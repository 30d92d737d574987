package dns

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// tcpReply checks the TCP reply frame to x and returns its TCP layer.
func tcpReply(t *testing.T, x q, frame []byte) *layers.TCP {
	t.Helper()
	pkt := checkFrame(t, x, frame)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil {
		t.Fatalf("reply is not TCP: %v", pkt)
	}
	return tcp
}

// lengthPrefixed returns the DNS message b with its TCP length prefix.
func lengthPrefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// tcpExchange drives one query over the stateless TCP responder segment by
// segment, as a client would, and returns the answer's stream bytes (in
// order, from all segments) and the number of segments they came in.
func tcpExchange(t *testing.T, r *Responder, d *delivered, x q, mss uint16) []byte {
	t.Helper()
	const cisn = 1000

	// SYN -> SYN-ACK with an MSS option.
	v, frame := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, cisn, 0, mss, nil))
	if v != Answered {
		t.Fatalf("SYN: verdict %v", v)
	}
	sa := tcpReply(t, x, frame)
	if !sa.SYN || !sa.ACK || sa.FIN || sa.RST || sa.Ack != cisn+1 {
		t.Fatalf("SYN-ACK flags syn %v ack %v fin %v rst %v, ack %d; want SYN|ACK acking %d", sa.SYN, sa.ACK, sa.FIN, sa.RST, sa.Ack, cisn+1)
	}
	if len(sa.Options) == 0 || sa.Options[0].OptionType != layers.TCPOptionKindMSS {
		t.Errorf("SYN-ACK options %v, want MSS", sa.Options)
	}
	sisn := sa.Seq

	// The handshake's ACK: nothing to send.
	if v, _ := handle(r, 1, vniA, x.tcpFrame(t, false, true, false, false, cisn+1, sisn+1, 0, nil)); v != Dropped {
		t.Fatalf("bare ACK: verdict %v, want dropped (consumed)", v)
	}

	// The query: the answer in segments, the last with FIN.
	data := lengthPrefixed(x.dnsBytes(t))
	before := d.count()
	v, frame = handle(r, 1, vniA, x.tcpFrame(t, false, true, false, false, cisn+1, sisn+1, 0, data))
	if v != Answered {
		t.Fatalf("query: verdict %v", v)
	}
	segs := [][]byte{frame}
	segs = append(segs, d.wait(t, before, 0)[before:]...)
	var stream []byte
	next := sisn + 1
	fin := false
	for i, s := range segs {
		seg := tcpReply(t, x, s)
		if seg.Seq != next || !seg.ACK || seg.Ack != cisn+1+uint32(len(data)) {
			t.Fatalf("segment %d: seq %d ack %v/%d, want seq %d acking %d", i, seg.Seq, seg.ACK, seg.Ack, next, cisn+1+len(data))
		}
		if int(mss) != 0 && len(seg.Payload) > int(mss) {
			t.Errorf("segment %d: %d bytes, more than MSS %d", i, len(seg.Payload), mss)
		}
		if seg.FIN != (i == len(segs)-1) {
			t.Errorf("segment %d of %d: FIN %v", i, len(segs), seg.FIN)
		}
		fin = seg.FIN
		stream = append(stream, seg.Payload...)
		next += uint32(len(seg.Payload))
	}
	if !fin {
		t.Fatal("no FIN")
	}

	// The client's FIN -> ACK.
	v, frame = handle(r, 1, vniA, x.tcpFrame(t, false, true, true, false, cisn+1+uint32(len(data)), next+1, 0, nil))
	if v != Answered {
		t.Fatalf("FIN: verdict %v", v)
	}
	fa := tcpReply(t, x, frame)
	if !fa.ACK || fa.FIN || fa.Ack != cisn+2+uint32(len(data)) || fa.Seq != next+1 {
		t.Errorf("ACK of FIN: ack %v/%d seq %d, want ack %d seq %d", fa.ACK, fa.Ack, fa.Seq, cisn+2+len(data), next+1)
	}

	// RST -> nothing.
	if v, _ := handle(r, 1, vniA, x.tcpFrame(t, false, false, false, true, cisn+2+uint32(len(data)), 0, 0, nil)); v != Dropped {
		t.Errorf("RST: verdict %v, want dropped", v)
	}
	if len(stream) < 2 || int(binary.BigEndian.Uint16(stream)) != len(stream)-2 {
		t.Fatalf("stream of %d bytes is not one length-prefixed message", len(stream))
	}
	return stream[2:]
}

func TestTCP(t *testing.T) {
	tests := []struct {
		name string
		x    q
		mss  uint16
		ips  int
		segs int
	}{
		{name: "IPv4 A", x: q{name: "web.mynet", typ: layers.DNSTypeA}, mss: 1460, ips: 1},
		{name: "IPv6 AAAA", x: q{name: "web", typ: layers.DNSTypeAAAA, src: cli6}, mss: 1440, ips: 1},
		{name: "no MSS option", x: q{name: "websvc", typ: layers.DNSTypeA}, ips: 3},
		{name: "large answer in segments", x: q{name: "many", typ: layers.DNSTypeA}, mss: 536, ips: 40},
		{name: "IPv6 large answer", x: q{name: "many", typ: layers.DNSTypeA, src: cli6}, mss: 600, ips: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, d := newTestResponder(t, nil)
			msg := tcpExchange(t, r, d, tt.x, tt.mss)
			ans := decodeDNS(t, msg)
			if ans.TC || ans.ResponseCode != 0 || len(answerIPs(ans)) != tt.ips {
				t.Errorf("answer TC %v rcode %v with %d addresses, want %d", ans.TC, ans.ResponseCode, len(answerIPs(ans)), tt.ips)
			}
			if st := r.Stats(); st.TCP != 1 || st.Answered != 1 {
				t.Errorf("stats %+v, want tcp 1 answered 1", st)
			}
		})
	}
}

// TestTruncatedThenTCP asks over UDP, gets TC, and asks again over TCP as a
// resolver does: the TCP answer is complete.
func TestTruncatedThenTCP(t *testing.T) {
	r, d := newTestResponder(t, nil)
	x := q{name: "many.mynet", typ: layers.DNSTypeA}
	_, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
	u, _ := udpAnswer(t, x, frame)
	if !u.TC || len(u.Answers) != 0 {
		t.Fatalf("UDP answer TC %v with %d answers, want truncated", u.TC, len(u.Answers))
	}
	ans := decodeDNS(t, tcpExchange(t, r, d, x, 1460))
	if ans.TC || len(ans.Answers) != 40 || ans.ID != x.fill().id {
		t.Errorf("TCP answer TC %v with %d answers, id %#x; want complete, 40", ans.TC, len(ans.Answers), ans.ID)
	}
	got := sortedAddrs(answerIPs(ans))
	if !slices.Equal(got, sortedAddrs(bigIPs())) {
		t.Errorf("TCP answer addresses %v", got)
	}
}

func TestTCPUnsupported(t *testing.T) {
	x := q{name: "web", typ: layers.DNSTypeA}
	msg := x.dnsBytes(t)
	tests := []struct {
		name    string
		payload []byte
		goodAck bool
		verdict Verdict
		stat    func(Stats) uint64
	}{
		{name: "stale ACK gets RST", payload: lengthPrefixed(msg), verdict: Answered, stat: func(s Stats) uint64 { return s.Dropped.TCPStale }},
		{name: "split query", payload: lengthPrefixed(msg)[:10], goodAck: true, verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.TCPUnsupported }},
		{name: "five pipelined queries", payload: bytes.Repeat(lengthPrefixed(msg), 5), goodAck: true, verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.TCPUnsupported }},
		{name: "zero-length query", payload: []byte{0, 0}, goodAck: true, verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.TCPUnsupported }},
		{name: "one byte", payload: []byte{0}, goodAck: true, verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.TCPUnsupported }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResponder(t, nil)
			_, sa := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, 5, 0, 1460, nil))
			sisn := tcpReply(t, x, sa).Seq
			ack := sisn + 1
			if !tt.goodAck {
				ack += 1000
			}
			v, frame := handle(r, 1, vniA, x.tcpFrame(t, false, true, false, false, 6, ack, 0, tt.payload))
			if v != tt.verdict {
				t.Fatalf("verdict %v, want %v", v, tt.verdict)
			}
			if v == Answered {
				if rst := tcpReply(t, x, frame); !rst.RST || rst.Seq != ack {
					t.Errorf("reply RST %v seq %d, want RST seq %d", rst.RST, rst.Seq, ack)
				}
			}
			if got := tt.stat(r.Stats()); got != 1 {
				t.Errorf("counter %d, want 1 (%+v)", got, r.Stats())
			}
		})
	}
}

// TestSYNRetransmit checks the SYN-ACK depends on the 4-tuple alone.
func TestSYNRetransmit(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	x := q{name: "web", typ: layers.DNSTypeA}
	_, a := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, 5, 0, 1460, nil))
	_, b := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, 5, 0, 1460, nil))
	y := x
	y.sport = 40001
	_, c := handle(r, 1, vniA, y.tcpFrame(t, true, false, false, false, 5, 0, 1460, nil))
	sa, sb, sc := tcpReply(t, x, a).Seq, tcpReply(t, x, b).Seq, tcpReply(t, y, c).Seq
	if sa != sb {
		t.Errorf("retransmitted SYN: ISN %d then %d", sa, sb)
	}
	if sa == sc {
		t.Errorf("another source port got the same ISN %d", sa)
	}
}

// readStream splits a TCP answer stream into its DNS messages.
func readStream(t *testing.T, stream []byte) []*layers.DNS {
	t.Helper()
	var out []*layers.DNS
	for len(stream) > 0 {
		if len(stream) < 2 || int(binary.BigEndian.Uint16(stream))+2 > len(stream) {
			t.Fatalf("stream does not split into length-prefixed messages: % x", stream)
		}
		l := int(binary.BigEndian.Uint16(stream))
		out = append(out, decodeDNS(t, stream[2:2+l]))
		stream = stream[2+l:]
	}
	return out
}

// segmentStream collects the payloads of the TCP segments to x (the first
// of them in frames[0]), checking their sequence numbers from seq on.
func segmentStream(t *testing.T, x q, frames [][]byte, seq uint32) []byte {
	t.Helper()
	var stream []byte
	for i, f := range frames {
		seg := tcpReply(t, x, f)
		if seg.Seq != seq || seg.FIN != (i == len(frames)-1) {
			t.Errorf("segment %d: seq %d fin %v, want seq %d", i, seg.Seq, seg.FIN, seq)
		}
		stream = append(stream, seg.Payload...)
		seq += uint32(len(seg.Payload))
	}
	return stream
}

// TestTCPPipelined sends the A and AAAA queries in one segment, as glibc's
// resolver does over TCP: both are answered, in order.
func TestTCPPipelined(t *testing.T) {
	a := q{name: "web", typ: layers.DNSTypeA, id: 1}
	aaaa := q{name: "web", typ: layers.DNSTypeAAAA, id: 2}
	outside := q{name: "example.com", typ: layers.DNSTypeA, id: 3}
	tests := []struct {
		name    string
		qs      []q
		verdict Verdict
	}{
		{name: "local A and AAAA", qs: []q{a, aaaa}, verdict: Answered},
		{name: "local and forwarded", qs: []q{outside, aaaa}, verdict: Answered}, // a bare ACK, the answers later
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, upAnswer)
			r, d := forwarder(t, 5*time.Second, up.addr)
			_, sa := handle(r, 1, vniA, a.tcpFrame(t, true, false, false, false, 10, 0, 1460, nil))
			sisn := tcpReply(t, a, sa).Seq
			var data []byte
			for _, x := range tt.qs {
				data = append(data, lengthPrefixed(x.dnsBytes(t))...)
			}
			v, frame := handle(r, 1, vniA, a.tcpFrame(t, false, true, false, false, 11, sisn+1, 0, data))
			if v != tt.verdict {
				t.Fatalf("verdict %v, want %v", v, tt.verdict)
			}
			frames := [][]byte{frame}
			if seg := tcpReply(t, a, frame); len(seg.Payload) == 0 { // a bare ACK: the answers come later
				frames = d.wait(t, 1, waitTimeout)
			}
			ans := readStream(t, segmentStream(t, a, frames, sisn+1))
			if len(ans) != len(tt.qs) {
				t.Fatalf("%d answers, want %d", len(ans), len(tt.qs))
			}
			for i, x := range tt.qs {
				if ans[i].ID != x.id || ans[i].ResponseCode != 0 || len(ans[i].Answers) != 1 {
					t.Errorf("answer %d: id %d rcode %v, %d records; want id %d, one record", i, ans[i].ID, ans[i].ResponseCode, len(ans[i].Answers), x.id)
				}
			}
			if st := r.Stats(); st.TCP != uint64(len(tt.qs)) {
				t.Errorf("tcp counter %d, want %d", st.TCP, len(tt.qs))
			}
		})
	}
}
