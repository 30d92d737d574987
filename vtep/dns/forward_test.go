package dns

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Modes of the fake upstream.
const (
	upAnswer     = "answer"      // answers every query
	upSlow       = "slow"        // reads queries, never answers
	upWrongID    = "wrong-id"    // answers with another ID
	upGarbage    = "garbage"     // answers bytes that are no DNS message
	upTruncated  = "truncated"   // answers UDP with TC set; TCP completely
	upBigAnswers = "big-answers" // answers 100 A records
	upRefused    = "refused"     // answers REFUSED
)

// upstream is a fake resolver on 127.0.0.1, UDP and TCP on one port.
type upstream struct {
	mode       string
	addr       netip.AddrPort
	udp        *net.UDPConn
	tcp        *net.TCPListener
	udpQueries atomic.Int32
	tcpQueries atomic.Int32
	wg         sync.WaitGroup
}

func startUpstream(t *testing.T, mode string) *upstream {
	t.Helper()
	u := &upstream{mode: mode}
	var err error
	for range 20 { // the TCP port may be taken; try another UDP port
		u.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		u.addr = u.udp.LocalAddr().(*net.UDPAddr).AddrPort()
		u.tcp, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(u.addr))
		if err == nil {
			break
		}
		u.udp.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.udp.Close()
		u.tcp.Close()
		u.wg.Wait()
	})
	u.wg.Add(2)
	go u.serveUDP()
	go u.serveTCP()
	return u
}

// deadUpstream returns an address nothing listens on.
func deadUpstream(t *testing.T) netip.AddrPort {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

func (u *upstream) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		u.udpQueries.Add(1)
		if ans := u.answer(buf[:n], false); ans != nil {
			u.udp.WriteToUDPAddrPort(ans, from)
		}
	}
}

func (u *upstream) serveTCP() {
	defer u.wg.Done()
	for {
		c, err := u.tcp.Accept()
		if err != nil {
			return
		}
		u.tcpQueries.Add(1)
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err == nil {
			msg := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, msg); err == nil {
				if ans := u.answer(msg, true); ans != nil {
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(ans))), ans...))
				}
			}
		}
		c.Close()
	}
}

// answer returns the fake's answer to msg, or nil for none.
func (u *upstream) answer(msg []byte, tcp bool) []byte {
	var d layers.DNS
	if d.DecodeFromBytes(msg, gopacket.NilDecodeFeedback) != nil || len(d.Questions) != 1 {
		return nil
	}
	a := layers.DNS{ID: d.ID, QR: true, RD: d.RD, RA: true, OpCode: d.OpCode, Questions: d.Questions}
	rr := layers.DNSResourceRecord{Name: d.Questions[0].Name, Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60}
	switch u.mode {
	case upSlow:
		return nil
	case upGarbage:
		return []byte("this is not a DNS message")
	case upWrongID:
		a.ID++
	case upRefused:
		a.ResponseCode = layers.DNSResponseCodeRefused
	case upTruncated:
		if !tcp {
			a.TC = true
			break
		}
		fallthrough
	case upBigAnswers:
		n := 3
		if u.mode == upBigAnswers {
			n = 100
		}
		for i := range n {
			rr.IP = net.IPv4(192, 0, 2, byte(i+1))
			a.Answers = append(a.Answers, rr)
		}
	default:
		rr.IP = net.IPv4(192, 0, 2, 1)
		a.Answers = []layers.DNSResourceRecord{rr}
	}
	sb := gopacket.NewSerializeBuffer()
	if a.SerializeTo(sb, gopacket.SerializeOptions{FixLengths: true}) != nil {
		return nil
	}
	return sb.Bytes()
}

func forwarder(t *testing.T, timeout time.Duration, ups ...netip.AddrPort) (*Responder, *delivered) {
	return newTestResponder(t, func(c *Config) {
		c.Upstreams = ups
		c.Timeout = timeout
	})
}

// waitTimeout bounds the polls of these tests: far above any Timeout they
// configure, it only stops a broken test from hanging.
const waitTimeout = 10 * time.Second

func TestForwardAnswered(t *testing.T) {
	for _, x := range []q{
		{name: "example.com", typ: layers.DNSTypeA},
		{name: "Example.COM", typ: layers.DNSTypeA, src: cli6, id: 77},
		{name: "nothere", typ: layers.DNSTypeA, edns: 1232},
		{name: "8.8.8.8.in-addr.arpa", typ: layers.DNSTypeA},
	} {
		t.Run(x.name, func(t *testing.T) {
			up := startUpstream(t, upAnswer)
			r, d := forwarder(t, 5*time.Second, up.addr)
			if v, _ := handle(r, 7, vniA, x.udpFrame(t, nil)); v != Forwarded {
				t.Fatalf("verdict %v, want forwarded", v)
			}
			frames := d.wait(t, 1, waitTimeout)
			if d.ports[0] != 7 {
				t.Errorf("delivered to port %d, want 7", d.ports[0])
			}
			ans, _ := udpAnswer(t, x, frames[0])
			if ans.ID != x.fill().id || ans.ResponseCode != 0 || len(ans.Answers) != 1 {
				t.Errorf("answer id %#x rcode %v with %d answers; want id %#x, one answer", ans.ID, ans.ResponseCode, len(ans.Answers), x.fill().id)
			}
			if st := r.Stats(); st.Forwarded != 1 || st.UpstreamAnswered != 1 || st.ServFail != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestForwardFailures(t *testing.T) {
	tests := []struct {
		name string
		ups  func(t *testing.T) []netip.AddrPort
	}{
		{name: "slow", ups: func(t *testing.T) []netip.AddrPort { return []netip.AddrPort{startUpstream(t, upSlow).addr} }},
		{name: "dead", ups: func(t *testing.T) []netip.AddrPort { return []netip.AddrPort{deadUpstream(t)} }},
		{name: "all dead", ups: func(t *testing.T) []netip.AddrPort { return []netip.AddrPort{deadUpstream(t), deadUpstream(t)} }},
		{name: "wrong ID", ups: func(t *testing.T) []netip.AddrPort { return []netip.AddrPort{startUpstream(t, upWrongID).addr} }},
		{name: "garbage", ups: func(t *testing.T) []netip.AddrPort { return []netip.AddrPort{startUpstream(t, upGarbage).addr} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			r, d := newTestResponder(t, func(c *Config) {
				c.Upstreams = tt.ups(t)
				c.Timeout = 300 * time.Millisecond
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			x := q{name: "example.com", typ: layers.DNSTypeA}
			if v, _ := handle(r, 1, vniA, x.udpFrame(t, nil)); v != Forwarded {
				t.Fatalf("verdict %v, want forwarded", v)
			}
			ans, _ := udpAnswer(t, x, d.wait(t, 1, waitTimeout)[0])
			if ans.ResponseCode != layers.DNSResponseCodeServFail || ans.ID != 0x1234 || len(ans.Questions) != 1 {
				t.Errorf("rcode %v id %#x, want SERVFAIL to id 0x1234 with the question", ans.ResponseCode, ans.ID)
			}
			if st := r.Stats(); st.ServFail != 1 || st.UpstreamAnswered != 0 {
				t.Errorf("stats %+v, want one SERVFAIL", st)
			}
			// A second failure within upstreamLogEvery is not logged.
			handle(r, 1, vniA, x.udpFrame(t, nil))
			d.wait(t, 2, waitTimeout)
			if n := strings.Count(logs.String(), "upstreams failed"); n != 1 {
				t.Errorf("%d log lines for 2 failures, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// TestForwardFailover checks a dead first upstream, or one answering
// REFUSED, gives way to the next; a REFUSED with no other answer is
// relayed.
func TestForwardFailover(t *testing.T) {
	tests := []struct {
		name  string
		ups   func(t *testing.T) []netip.AddrPort
		rcode layers.DNSResponseCode
	}{
		{name: "dead, then answering", ups: func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{deadUpstream(t), startUpstream(t, upAnswer).addr}
		}},
		{name: "refusing, then answering", ups: func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{startUpstream(t, upRefused).addr, startUpstream(t, upAnswer).addr}
		}},
		{name: "refusing, then dead", rcode: layers.DNSResponseCodeRefused, ups: func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{startUpstream(t, upRefused).addr, deadUpstream(t)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, d := forwarder(t, 5*time.Second, tt.ups(t)...)
			x := q{name: "example.com", typ: layers.DNSTypeA}
			handle(r, 1, vniA, x.udpFrame(t, nil))
			ans, _ := udpAnswer(t, x, d.wait(t, 1, waitTimeout)[0])
			wantAnswers := 1
			if tt.rcode != 0 {
				wantAnswers = 0
			}
			if ans.ResponseCode != tt.rcode || len(ans.Answers) != wantAnswers {
				t.Errorf("rcode %v with %d answers, want %v with %d", ans.ResponseCode, len(ans.Answers), tt.rcode, wantAnswers)
			}
		})
	}
}

// TestForwardTruncatedRetriesTCP checks a TC answer from the upstream is
// asked again over TCP and the complete answer relayed.
func TestForwardTruncatedRetriesTCP(t *testing.T) {
	up := startUpstream(t, upTruncated)
	r, d := forwarder(t, 5*time.Second, up.addr)
	x := q{name: "example.com", typ: layers.DNSTypeA}
	handle(r, 1, vniA, x.udpFrame(t, nil))
	ans, _ := udpAnswer(t, x, d.wait(t, 1, waitTimeout)[0])
	if ans.TC || len(ans.Answers) != 3 {
		t.Errorf("TC %v with %d answers, want the complete TCP answer of 3", ans.TC, len(ans.Answers))
	}
	if up.udpQueries.Load() != 1 || up.tcpQueries.Load() != 1 {
		t.Errorf("upstream saw %d UDP and %d TCP queries, want 1 and 1", up.udpQueries.Load(), up.tcpQueries.Load())
	}
}

// TestForwardBigAnswer checks an upstream answer too big for the client
// goes truncated over UDP, and complete over the stateless TCP responder,
// delivered as segments with the right sequence numbers.
func TestForwardBigAnswer(t *testing.T) {
	up := startUpstream(t, upBigAnswers)
	r, d := forwarder(t, 5*time.Second, up.addr)
	x := q{name: "big.example", typ: layers.DNSTypeA}
	handle(r, 1, vniA, x.udpFrame(t, nil))
	u, raw := udpAnswer(t, x, d.wait(t, 1, waitTimeout)[0])
	if !u.TC || len(u.Answers) != 0 || len(raw) > 512 {
		t.Fatalf("UDP answer TC %v, %d answers, %d bytes; want truncated within 512", u.TC, len(u.Answers), len(raw))
	}

	const cisn = 500
	_, sa := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, cisn, 0, 1000, nil))
	sisn := tcpReply(t, x, sa).Seq
	data := lengthPrefixed(x.dnsBytes(t))
	v, ack := handle(r, 1, vniA, x.tcpFrame(t, false, true, false, false, cisn+1, sisn+1, 0, data))
	if v != Answered {
		t.Fatalf("TCP query: verdict %v, want answered (a bare ACK; the query goes upstream)", v)
	}
	if a := tcpReply(t, x, ack); !a.ACK || a.FIN || len(a.Payload) != 0 || a.Seq != sisn+1 || a.Ack != cisn+1+uint32(len(data)) {
		t.Errorf("ACK of the forwarded query: ack %v fin %v %d bytes seq %d ack %d", a.ACK, a.FIN, len(a.Payload), a.Seq, a.Ack)
	}
	// 100 records of 27 bytes: 6 segments at the cookie's MSS of 536 (the
	// largest of mssTable not above the SYN's 1000).
	frames := d.wait(t, 7, waitTimeout)[1:]
	if len(frames) != 6 {
		t.Errorf("%d segments, want 6", len(frames))
	}
	var stream []byte
	next := sisn + 1
	for i, f := range frames {
		seg := tcpReply(t, x, f)
		if seg.Seq != next || seg.Ack != cisn+1+uint32(len(data)) || seg.FIN != (i == len(frames)-1) {
			t.Errorf("segment %d: seq %d ack %d fin %v, want seq %d ack %d", i, seg.Seq, seg.Ack, seg.FIN, next, cisn+1+len(data))
		}
		if len(seg.Payload) > 536 {
			t.Errorf("segment %d: %d bytes, more than the MSS", i, len(seg.Payload))
		}
		stream = append(stream, seg.Payload...)
		next += uint32(len(seg.Payload))
	}
	if len(stream) < 2 || int(binary.BigEndian.Uint16(stream)) != len(stream)-2 {
		t.Fatalf("TCP stream of %d bytes is not one message", len(stream))
	}
	if ans := decodeDNS(t, stream[2:]); ans.TC || len(ans.Answers) != 100 || ans.ID != 0x1234 {
		t.Errorf("TCP answer TC %v with %d answers id %#x, want 100", ans.TC, len(ans.Answers), ans.ID)
	}
	if st := r.Stats(); st.TCP != 1 || st.Forwarded != 2 || st.UpstreamAnswered != 2 || st.Truncated != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestForwardMaxInFlight checks queries beyond MaxInFlight are dropped and
// counted.
func TestForwardMaxInFlight(t *testing.T) {
	up := startUpstream(t, upSlow)
	r, d := newTestResponder(t, func(c *Config) {
		c.Upstreams = []netip.AddrPort{up.addr}
		c.Timeout = 300 * time.Millisecond
		c.MaxInFlight = 2
	})
	x := q{name: "example.com", typ: layers.DNSTypeA}
	var verdicts []Verdict
	for range 3 {
		v, _ := handle(r, 1, vniA, x.udpFrame(t, nil))
		verdicts = append(verdicts, v)
	}
	if verdicts[0] != Forwarded || verdicts[1] != Forwarded || verdicts[2] != Dropped {
		t.Errorf("verdicts %v, want forwarded, forwarded, dropped", verdicts)
	}
	if got := r.Stats().Dropped.InFlight; got != 1 {
		t.Errorf("dropped in flight %d, want 1", got)
	}
	d.wait(t, 2, waitTimeout) // the two SERVFAILs free the slots
	deadline := time.Now().Add(waitTimeout)
	for len(r.sem) != 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if v, _ := handle(r, 1, vniA, x.udpFrame(t, nil)); v != Forwarded {
		t.Errorf("after the SERVFAILs: verdict %v, want forwarded", v)
	}
}

// TestCloseStopsForwarding checks Close ends every goroutine, delivers
// nothing more and is idempotent; queries after it are dropped.
func TestCloseStopsForwarding(t *testing.T) {
	up := startUpstream(t, upSlow)
	before := runtime.NumGoroutine()
	r, d := forwarder(t, time.Hour, up.addr)
	x := q{name: "example.com", typ: layers.DNSTypeA}
	for range 5 {
		if v, _ := handle(r, 1, vniA, x.udpFrame(t, nil)); v != Forwarded {
			t.Fatalf("verdict %v", v)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := d.count(); n != 0 {
		t.Errorf("%d frames delivered after Close", n)
	}
	if v, _ := handle(r, 1, vniA, x.udpFrame(t, nil)); v != Dropped || r.Stats().Dropped.Closed != 1 {
		t.Errorf("after Close: verdict %v, closed drops %d", v, r.Stats().Dropped.Closed)
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
}
