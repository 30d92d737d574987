package dns

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"
)

func TestMalformedAndNotOurs(t *testing.T) {
	good := q{name: "web", typ: layers.DNSTypeA}
	msg := good.dnsBytes(t)
	with := func(f func(m []byte) []byte) []byte { return f(append([]byte(nil), msg...)) }
	// ip returns offset of the IPv4 header, udp of the UDP header.
	const ip, udp = ethHeaderLen, ethHeaderLen + ipv4HeaderLen
	frame := func(mut func(f []byte) []byte) []byte { return mut(good.udpFrame(t, nil)) }
	tests := []struct {
		name    string
		frame   []byte
		verdict Verdict
		rcode   layers.DNSResponseCode // when answered
		stat    func(Stats) uint64     // must be 1
	}{
		{name: "short DNS header", frame: good.udpFrame(t, msg[:11]), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "empty payload", frame: good.udpFrame(t, []byte{}), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "a response", frame: good.udpFrame(t, with(func(m []byte) []byte { m[2] |= 0x80; return m })), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "two questions", frame: good.udpFrame(t, with(func(m []byte) []byte { m[5] = 2; return m })), verdict: Answered, rcode: layers.DNSResponseCodeFormErr, stat: func(s Stats) uint64 { return s.FormErr }},
		{name: "no question", frame: good.udpFrame(t, with(func(m []byte) []byte { m[5] = 0; return m[:12] })), verdict: Answered, rcode: layers.DNSResponseCodeFormErr, stat: func(s Stats) uint64 { return s.FormErr }},
		{name: "cut question", frame: good.udpFrame(t, msg[:15]), verdict: Answered, rcode: layers.DNSResponseCodeFormErr, stat: func(s Stats) uint64 { return s.FormErr }},
		{name: "bad label length", frame: good.udpFrame(t, with(func(m []byte) []byte { m[12] = 0x7f; return m })), verdict: Answered, rcode: layers.DNSResponseCodeFormErr, stat: func(s Stats) uint64 { return s.FormErr }},
		{name: "additional count past the end", frame: good.udpFrame(t, with(func(m []byte) []byte { m[11] = 3; return m })), verdict: Answered, rcode: layers.DNSResponseCodeFormErr, stat: func(s Stats) uint64 { return s.FormErr }},
		{name: "opcode status", frame: good.udpFrame(t, with(func(m []byte) []byte { m[2] |= 2 << 3; return m })), verdict: Answered, rcode: layers.DNSResponseCodeNotImp, stat: func(s Stats) uint64 { return s.NotImp }},
		{name: "UDP length past IP length", frame: frame(func(f []byte) []byte { binary.BigEndian.PutUint16(f[udp+4:], 2000); return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "UDP length below 8", frame: frame(func(f []byte) []byte { binary.BigEndian.PutUint16(f[udp+4:], 7); return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "IP length past frame", frame: frame(func(f []byte) []byte { binary.BigEndian.PutUint16(f[ip+2:], 3000); return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Malformed }},
		{name: "first fragment", frame: frame(func(f []byte) []byte { f[ip+6] = 0x20; return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Fragment }},
		{name: "later fragment", frame: frame(func(f []byte) []byte { f[ip+6], f[ip+7] = 0, 0x10; f[udp+2] = 0; return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.Fragment }},
		{name: "from 255.255.255.255", frame: q{name: "web", typ: layers.DNSTypeA, src: addrs("255.255.255.255")[0]}.udpFrame(t, nil), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "from the subnet broadcast", frame: q{name: "web", typ: layers.DNSTypeA, src: addrs("10.0.255.255")[0]}.udpFrame(t, nil), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "from 0.0.0.0", frame: q{name: "web", typ: layers.DNSTypeA, src: addrs("0.0.0.0")[0]}.udpFrame(t, nil), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "from a multicast MAC", frame: q{name: "web", typ: layers.DNSTypeA, srcMAC: [6]byte{0x01, 0, 0x5e, 0, 0, 1}}.udpFrame(t, nil), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "to the broadcast MAC", frame: q{name: "web", typ: layers.DNSTypeA, dstMAC: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}.udpFrame(t, nil), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "from source port 0", frame: frame(func(f []byte) []byte { f[udp], f[udp+1] = 0, 0; return f }), verdict: Dropped, stat: func(s Stats) uint64 { return s.Dropped.NotUnicast }},
		{name: "another port", frame: frame(func(f []byte) []byte { f[udp+3] = 54; return f }), verdict: NotDNS},
		{name: "another address", frame: q{name: "web", typ: layers.DNSTypeA, dst: addrs("10.0.0.3")[0]}.udpFrame(t, nil), verdict: NotDNS},
		{name: "another network's DNS address", frame: q{name: "web", typ: layers.DNSTypeA, dst: dnsB4}.udpFrame(t, nil), verdict: NotDNS},
		{name: "ICMP", frame: frame(func(f []byte) []byte { f[ip+9] = 1; return f }), verdict: NotDNS},
		{name: "ARP", frame: frame(func(f []byte) []byte { f[12], f[13] = 0x08, 0x06; return f }), verdict: NotDNS},
		{name: "IPv4 version 5", frame: frame(func(f []byte) []byte { f[ip] = 0x55; return f }), verdict: NotDNS},
		{name: "short frame", frame: good.udpFrame(t, nil)[:30], verdict: NotDNS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResponder(t, nil)
			v, reply := handle(r, 1, vniA, tt.frame)
			if v != tt.verdict {
				t.Fatalf("verdict %v, want %v (stats %+v)", v, tt.verdict, r.Stats())
			}
			if v == Answered {
				d, _ := udpAnswer(t, good, reply)
				if d.ResponseCode != tt.rcode || !d.QR || d.ID != 0x1234 {
					t.Errorf("rcode %v qr %v id %#x, want %v", d.ResponseCode, d.QR, d.ID, tt.rcode)
				}
			}
			if tt.stat != nil {
				if got := tt.stat(r.Stats()); got != 1 {
					t.Errorf("counter %d, want 1 (%+v)", got, r.Stats())
				}
			}
		})
	}
}

// TestHandleBounds checks Handle refuses offsets and sizes outside buf.
func TestHandleBounds(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	buf := make([]byte, 100)
	for _, c := range []struct{ off, size int }{{-1, 10}, {0, -1}, {90, 20}, {101, 0}, {0, 101}} {
		if v, n := r.Handle(1, vniA, buf, c.off, c.size); v != NotDNS || n != 0 {
			t.Errorf("off %d size %d: %v %d", c.off, c.size, v, n)
		}
	}
}

// TestEDNSBadVersion checks an EDNS version other than 0 is answered
// BADVERS: RCODE 16, its upper bits in the OPT record (RFC 6891 6.1.3).
func TestEDNSBadVersion(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	x := q{name: "web", typ: layers.DNSTypeA, edns: 1232}
	msg := x.dnsBytes(t)
	msg[len(msg)-5] = 1 // the OPT record's TTL: extended RCODE, version, flags
	_, frame := handle(r, 1, vniA, x.udpFrame(t, msg))
	d, raw := udpAnswer(t, x, frame)
	// gopacket joins the header's 4 bits and the OPT record's upper 8.
	if d.ResponseCode != 16 || raw[3]&0xf != 0 || len(d.Answers) != 0 || len(d.Additionals) != 1 {
		t.Fatalf("rcode %v (header bits %d), %d answers, %d additionals; want BADVERS, 0 in the header, no answer, an OPT",
			d.ResponseCode, raw[3]&0xf, len(d.Answers), len(d.Additionals))
	}
	if opt := d.Additionals[0]; opt.Type != layers.DNSTypeOPT || opt.TTL>>24 != 1 {
		t.Errorf("OPT %v TTL %#x, want the extended RCODE 1 (16 >> 4)", opt.Type, opt.TTL)
	}
}

// TestIPv4Options checks a query whose IPv4 header carries options is
// answered with a plain 20-byte header, the answer where it belongs.
func TestIPv4Options(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	x := q{name: "web", typ: layers.DNSTypeA}
	plain := x.udpFrame(t, nil)
	const l4 = ethHeaderLen + ipv4HeaderLen
	frame := append(append(append([]byte(nil), plain[:l4]...), 1, 1, 1, 1), plain[l4:]...) // four NOPs
	frame[ethHeaderLen] = 0x46
	binary.BigEndian.PutUint16(frame[ethHeaderLen+2:], binary.BigEndian.Uint16(plain[ethHeaderLen+2:])+4)
	v, reply := handle(r, 1, vniA, frame)
	if v != Answered {
		t.Fatalf("verdict %v", v)
	}
	d, _ := udpAnswer(t, x, reply)
	if got := answerIPs(d); len(got) != 1 || got[0] != addrs("10.0.0.10")[0] {
		t.Errorf("answer %v", got)
	}
}
