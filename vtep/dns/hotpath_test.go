package dns

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"
)

// hotQueries are the answered paths that must not allocate.
var hotQueries = []struct {
	name string
	x    q
}{
	{"A", q{name: "web.mynet", typ: layers.DNSTypeA}},
	{"AAAA", q{name: "web", typ: layers.DNSTypeAAAA, src: cli6}},
	{"PTR", q{name: "10.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR}},
	{"PTR6", q{name: reverse6("fd00::10"), typ: layers.DNSTypePTR}},
	{"tasks", q{name: "tasks.websvc", typ: layers.DNSTypeA}},
	{"service", q{name: "websvc", typ: layers.DNSTypeA}},
	{"NODATA", q{name: "db_1", typ: layers.DNSTypeAAAA}},
	{"NXDOMAIN", q{name: "nope.mynet", typ: layers.DNSTypeA}},
	{"EDNS0", q{name: "web", typ: layers.DNSTypeA, edns: 1232}},
	{"truncated", q{name: "many", typ: layers.DNSTypeA}},
}

// TestAllocs guards the answered path (a local name over UDP, rate limit
// included): it must not allocate.
func TestAllocs(t *testing.T) {
	r, _ := newTestResponder(t, func(c *Config) { c.RatePerPort, c.Burst = 1e12, 1e9 })
	for _, hq := range hotQueries {
		t.Run(hq.name, func(t *testing.T) {
			frame := hq.x.udpFrame(t, nil)
			buf := make([]byte, testOff+testMTU+ethHeaderLen)
			allocs := testing.AllocsPerRun(1000, func() {
				copy(buf[testOff:], frame)
				if v, _ := r.Handle(1, vniA, buf, testOff, len(frame)); v != Answered {
					t.Fatalf("verdict %v", v)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per query, want 0", allocs)
			}
		})
	}
	t.Run("NotDNS", func(t *testing.T) {
		frame := q{name: "web", typ: layers.DNSTypeA, dst: addrs("10.0.0.3")[0]}.udpFrame(t, nil)
		buf := make([]byte, testOff+testMTU+ethHeaderLen)
		copy(buf[testOff:], frame)
		if allocs := testing.AllocsPerRun(1000, func() { r.Handle(1, vniA, buf, testOff, len(frame)) }); allocs != 0 {
			t.Errorf("%v allocations per frame, want 0", allocs)
		}
	})
}

func BenchmarkHandle(b *testing.B) {
	r, _ := newTestResponder(b, func(c *Config) { c.RatePerPort, c.Burst = 1e12, 1e9 })
	for _, hq := range hotQueries {
		b.Run(hq.name, func(b *testing.B) {
			frame := hq.x.udpFrame(b, nil)
			buf := make([]byte, testOff+testMTU+ethHeaderLen)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				copy(buf[testOff:], frame)
				if v, _ := r.Handle(1, vniA, buf, testOff, len(frame)); v != Answered {
					b.Fatalf("verdict %v", v)
				}
			}
		})
	}
	b.Run("NotDNS", func(b *testing.B) {
		frame := q{name: "web", typ: layers.DNSTypeA, dst: addrs("10.0.0.3")[0]}.udpFrame(b, nil)
		buf := make([]byte, testOff+testMTU+ethHeaderLen)
		copy(buf[testOff:], frame)
		b.ReportAllocs()
		for b.Loop() {
			r.Handle(1, vniA, buf, testOff, len(frame))
		}
	})
}

// tcpQuery returns the segment carrying x's query on a connection whose
// SYN r has answered, as a client sends it.
func tcpQuery(tb testing.TB, r *Responder, x q) []byte {
	tb.Helper()
	buf := make([]byte, testOff+testMTU+ethHeaderLen)
	syn := x.tcpFrame(tb, true, false, false, false, 10, 0, 1460, nil)
	copy(buf[testOff:], syn)
	if v, _ := r.Handle(1, vniA, buf, testOff, len(syn)); v != Answered {
		tb.Fatalf("SYN: verdict %v", v)
	}
	sisn := binary.BigEndian.Uint32(buf[testOff+x.fill().hdrLen()-tcpHeaderLen+4:])
	return x.tcpFrame(tb, false, true, false, false, 11, sisn+1, 0, lengthPrefixed(x.dnsBytes(tb)))
}

// TestAllocsTCP checks a local answer over TCP (one segment) does not
// allocate either.
func TestAllocsTCP(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	x := q{name: "web", typ: layers.DNSTypeA}
	frame := tcpQuery(t, r, x)
	buf := make([]byte, testOff+testMTU+ethHeaderLen)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf[testOff:], frame)
		if v, _ := r.Handle(1, vniA, buf, testOff, len(frame)); v != Answered {
			t.Fatalf("verdict %v", v)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per TCP query, want 0", allocs)
	}
}

func BenchmarkHandleTCP(b *testing.B) {
	r, _ := newTestResponder(b, nil)
	x := q{name: "web", typ: layers.DNSTypeA}
	frame := tcpQuery(b, r, x)
	buf := make([]byte, testOff+testMTU+ethHeaderLen)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[testOff:], frame)
		if v, _ := r.Handle(1, vniA, buf, testOff, len(frame)); v != Answered {
			b.Fatalf("verdict %v", v)
		}
	}
}
