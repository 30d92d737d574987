package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
)

func sortedAddrs(a []netip.Addr) []netip.Addr {
	a = slices.Clone(a)
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return a
}

func TestLocalAnswers(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	tests := []struct {
		name  string
		q     q
		vni   uint32
		rcode layers.DNSResponseCode
		ips   []netip.Addr // compared as a set
		ptr   string
	}{
		{name: "A", q: q{name: "web", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "AAAA", q: q{name: "web", typ: layers.DNSTypeAAAA}, ips: addrs("fd00::10")},
		{name: "AAAA over IPv6", q: q{name: "web", typ: layers.DNSTypeAAAA, src: cli6}, ips: addrs("fd00::10")},
		{name: "ANY dual stack", q: q{name: "web", typ: layers.DNSType(255)}, ips: addrs("10.0.0.10", "fd00::10")},
		{name: "NAME.NETWORK", q: q{name: "web.mynet", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "NAME.NETWORK.", q: q{name: "web.mynet.", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "trailing dot", q: q{name: "web.", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "alias", q: q{name: "www", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "alias.NETWORK", q: q{name: "www.mynet", typ: layers.DNSTypeAAAA}, ips: addrs("fd00::10")},
		{name: "case", q: q{name: "WeB.MyNeT", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "alias with _ and case", q: q{name: "front_end", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10")},
		{name: "name with _", q: q{name: "db_1.mynet", typ: layers.DNSTypeA}, ips: addrs("10.0.0.20")},
		{name: "tasks", q: q{name: "tasks.websvc", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10", "10.0.0.11", "10.0.0.12")},
		{name: "tasks.NETWORK", q: q{name: "tasks.websvc.mynet.", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10", "10.0.0.11", "10.0.0.12")},
		{name: "service", q: q{name: "websvc", typ: layers.DNSTypeA}, ips: addrs("10.0.0.10", "10.0.0.11", "10.0.0.12")},
		{name: "service AAAA", q: q{name: "websvc.mynet", typ: layers.DNSTypeAAAA}, ips: addrs("fd00::10")},
		{name: "endpoint wins over service", q: q{name: "api", typ: layers.DNSTypeA}, ips: addrs("10.0.0.30")},
		{name: "tasks of the shadowed service", q: q{name: "tasks.api", typ: layers.DNSTypeA}, ips: addrs("10.0.0.31")},
		{name: "NODATA AAAA of IPv4-only", q: q{name: "db_1", typ: layers.DNSTypeAAAA}},
		{name: "NODATA MX", q: q{name: "web", typ: layers.DNSTypeMX}},
		{name: "NODATA TXT under network", q: q{name: "web.mynet", typ: layers.DNSTypeTXT}},
		{name: "NODATA network apex", q: q{name: "mynet.", typ: layers.DNSTypeA}},
		{name: "NXDOMAIN under network", q: q{name: "nope.mynet", typ: layers.DNSTypeA}, rcode: layers.DNSResponseCodeNXDomain},
		{name: "NXDOMAIN under network any type", q: q{name: "x.y.MYNET.", typ: layers.DNSTypeMX}, rcode: layers.DNSResponseCodeNXDomain},
		{name: "PTR v4", q: q{name: "10.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR}, ptr: "web.mynet"},
		{name: "PTR v4 case and dot", q: q{name: "20.0.0.10.IN-ADDR.ARPA.", typ: layers.DNSTypePTR}, ptr: "db_1.mynet"},
		{name: "PTR v6", q: q{name: reverse6("fd00::10"), typ: layers.DNSTypePTR}, ptr: "web.mynet"},
		{name: "PTR A-type is NODATA", q: q{name: "10.0.0.10.in-addr.arpa", typ: layers.DNSTypeA}},
		{name: "PTR NXDOMAIN in subnet", q: q{name: "99.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR}, rcode: layers.DNSResponseCodeNXDomain},
		{name: "PTR NXDOMAIN v6 in subnet", q: q{name: reverse6("fd00::99"), typ: layers.DNSTypePTR}, rcode: layers.DNSResponseCodeNXDomain},
		{name: "outside name without upstreams", q: q{name: "example.com", typ: layers.DNSTypeA}, rcode: layers.DNSResponseCodeRefused},
		{name: "PTR outside subnets without upstreams", q: q{name: "8.8.8.8.in-addr.arpa", typ: layers.DNSTypePTR}, rcode: layers.DNSResponseCodeRefused},
		// Isolation: network other sees none of mynet's names, and its own.
		{name: "other: own name", vni: vniB, q: q{name: "secret", typ: layers.DNSTypeA, src: cliB4, dst: dnsB4}, ips: addrs("10.1.0.10")},
		{name: "other: own web", vni: vniB, q: q{name: "web", typ: layers.DNSTypeA, src: cliB4, dst: dnsB4}, ips: addrs("10.1.0.10")},
		{name: "other: mynet's name", vni: vniB, q: q{name: "db_1", typ: layers.DNSTypeA, src: cliB4, dst: dnsB4}, rcode: layers.DNSResponseCodeRefused},
		{name: "other: mynet's qualified name", vni: vniB, q: q{name: "db_1.mynet", typ: layers.DNSTypeA, src: cliB4, dst: dnsB4}, rcode: layers.DNSResponseCodeRefused},
		{name: "other: mynet's reverse", vni: vniB, q: q{name: "20.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR, src: cliB4, dst: dnsB4}, rcode: layers.DNSResponseCodeRefused},
		{name: "other: own reverse", vni: vniB, q: q{name: "10.0.1.10.in-addr.arpa", typ: layers.DNSTypePTR, src: cliB4, dst: dnsB4}, ptr: "secret.other"},
		{name: "mynet: other's name", q: q{name: "secret.other", typ: layers.DNSTypeA}, rcode: layers.DNSResponseCodeRefused},
		{name: "mynet: other's reverse", q: q{name: "10.0.1.10.in-addr.arpa", typ: layers.DNSTypePTR}, rcode: layers.DNSResponseCodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vni := uint32(vniA)
			if tt.vni != 0 {
				vni = tt.vni
			}
			v, frame := handle(r, 1, vni, tt.q.udpFrame(t, nil))
			if v != Answered {
				t.Fatalf("verdict %v, want answered", v)
			}
			d, _ := udpAnswer(t, tt.q, frame)
			if d.ID != 0x1234 || !d.QR || !d.RD || !d.RA || d.TC {
				t.Errorf("header id %#x qr %v rd %v ra %v tc %v", d.ID, d.QR, d.RD, d.RA, d.TC)
			}
			if d.ResponseCode != tt.rcode {
				t.Errorf("rcode %v, want %v", d.ResponseCode, tt.rcode)
			}
			if want := tt.rcode != layers.DNSResponseCodeRefused; d.AA != want {
				t.Errorf("AA %v, want %v", d.AA, want)
			}
			if len(d.Questions) != 1 || string(d.Questions[0].Name) != strings.TrimSuffix(tt.q.name, ".") {
				t.Errorf("question %+v, want %q", d.Questions, tt.q.name)
			}
			got := sortedAddrs(answerIPs(d))
			if !slices.Equal(got, sortedAddrs(tt.ips)) {
				t.Errorf("addresses (-want +got):\n- %v\n+ %v", sortedAddrs(tt.ips), got)
			}
			var ptr string
			for _, a := range d.Answers {
				if a.TTL != 0 {
					t.Errorf("TTL %d, want 0", a.TTL)
				}
				if !strings.EqualFold(string(a.Name), strings.TrimSuffix(tt.q.name, ".")) {
					t.Errorf("record name %q, want %q", a.Name, tt.q.name)
				}
				if a.Type == layers.DNSTypePTR {
					ptr = string(a.PTR)
				}
			}
			if ptr != tt.ptr {
				t.Errorf("PTR %q, want %q", ptr, tt.ptr)
			}
		})
	}
	st := r.Stats()
	if st.Answered == 0 || st.NoData != 5 || st.NXDomain != 4 || st.Refused != 7 {
		t.Errorf("stats %+v: want answered > 0, nodata 5, nxdomain 4, refused 7", st)
	}
}

// reverse6 returns the ip6.arpa name of s.
func reverse6(s string) string {
	a := netip.MustParseAddr(s).As16()
	var b strings.Builder
	for i := 15; i >= 0; i-- {
		fmt.Fprintf(&b, "%x.%x.", a[i]&0xf, a[i]>>4)
	}
	return b.String() + "ip6.arpa"
}

func TestTTL(t *testing.T) {
	r, _ := newTestResponder(t, func(c *Config) { c.TTL = 30 })
	x := q{name: "web", typ: layers.DNSTypeA}
	_, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
	d, _ := udpAnswer(t, x, frame)
	if len(d.Answers) != 1 || d.Answers[0].TTL != 30 {
		t.Errorf("answers %+v, want one with TTL 30", d.Answers)
	}
}

func TestServiceRoundRobin(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	want := sortedAddrs(addrs("10.0.0.10", "10.0.0.11", "10.0.0.12"))
	for _, name := range []string{"websvc", "tasks.websvc"} {
		orders := map[string]int{}
		for range 200 {
			x := q{name: name, typ: layers.DNSTypeA}
			_, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
			d, _ := udpAnswer(t, x, frame)
			got := answerIPs(d)
			if !slices.Equal(sortedAddrs(got), want) {
				t.Fatalf("%s: answer %v, want the set %v", name, got, want)
			}
			orders[fmt.Sprint(got)]++
		}
		if name == "websvc" && len(orders) < 2 {
			t.Errorf("%s: one order in 200 answers: %v", name, orders)
		}
		if name == "tasks.websvc" && len(orders) != 1 {
			t.Errorf("%s: orders %v, want a stable one", name, orders)
		}
	}
}

func TestEDNS0AndTruncation(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	tests := []struct {
		name    string
		edns    int
		wantTC  bool
		wantOPT bool
	}{
		{name: "no OPT: 512", wantTC: true},
		{name: "OPT 512", edns: 512, wantTC: true, wantOPT: true},
		{name: "OPT 1232", edns: 1232, wantOPT: true},
		{name: "OPT 4096 capped to MaxUDPSize", edns: 4096, wantOPT: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := q{name: "many.mynet", typ: layers.DNSTypeA, edns: tt.edns}
			_, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
			d, raw := udpAnswer(t, x, frame)
			if d.TC != tt.wantTC {
				t.Errorf("TC %v, want %v", d.TC, tt.wantTC)
			}
			var opt *layers.DNSResourceRecord
			for i := range d.Additionals {
				if d.Additionals[i].Type == layers.DNSTypeOPT {
					opt = &d.Additionals[i]
				}
			}
			if (opt != nil) != tt.wantOPT {
				t.Errorf("OPT %v, want %v", opt, tt.wantOPT)
			}
			if opt != nil && int(opt.Class) != 1232 {
				t.Errorf("OPT payload size %d, want 1232", opt.Class)
			}
			limit := 512
			if tt.edns > 0 {
				limit = min(max(tt.edns, 512), 1232)
			}
			if len(raw) > limit {
				t.Errorf("answer %d bytes, limit %d", len(raw), limit)
			}
			if tt.wantTC {
				if len(d.Answers) != 0 || len(d.Questions) != 1 {
					t.Errorf("truncated answer has %d answers, %d questions; want 0, 1", len(d.Answers), len(d.Questions))
				}
			} else if len(d.Answers) != 40 {
				t.Errorf("%d answers, want 40", len(d.Answers))
			}
		})
	}
	if got := r.Stats().Truncated; got != 2 {
		t.Errorf("truncated counter %d, want 2", got)
	}
}

// TestSmallBuffer checks an answer bigger than the frame buffer goes
// truncated rather than past the buffer.
func TestSmallBuffer(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	x := q{name: "many", typ: layers.DNSTypeA, edns: 1232}
	frame := x.udpFrame(t, nil)
	buf := make([]byte, testOff+400)
	copy(buf[testOff:], frame)
	v, n := r.Handle(1, vniA, buf[:testOff+400:testOff+400], testOff, len(frame))
	if v != Answered {
		t.Fatalf("verdict %v", v)
	}
	d, _ := udpAnswer(t, x, buf[testOff:testOff+n])
	if !d.TC || len(d.Answers) != 0 {
		t.Errorf("TC %v with %d answers, want a truncated answer", d.TC, len(d.Answers))
	}
}
