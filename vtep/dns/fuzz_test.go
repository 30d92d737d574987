package dns

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/ovlsw/ovlsw/fdb"
)

// The seed corpus is committed under testdata/fuzz/FuzzHandle; go test
// -run TestWriteFuzzSeeds -dns.writeseeds rewrites it.
var writeSeeds = flag.Bool("dns.writeseeds", false, "rewrite testdata/fuzz/FuzzHandle")

// FuzzHandle runs Handle over arbitrary frames: it never panics, never
// writes past the buffer or before off, and every reply it builds goes
// back to the asker (the frame's source MAC, IP and port, from port 53)
// with valid IPv4 header, UDP and TCP checksums.
func FuzzHandle(f *testing.F) {
	r, _ := newTestResponder(f, nil)
	const guard = 0xa5
	f.Fuzz(func(t *testing.T, frame []byte) {
		buf := make([]byte, testOff+max(len(frame), testMTU+ethHeaderLen))
		for i := range testOff {
			buf[i] = guard
		}
		copy(buf[testOff:], frame)
		v, n := r.Handle(1, vniA, buf, testOff, len(frame))
		for i := range testOff {
			if buf[i] != guard {
				t.Fatalf("headroom byte %d overwritten", i)
			}
		}
		if v != Answered {
			if n != 0 {
				t.Fatalf("verdict %v with length %d", v, n)
			}
			if v > Dropped {
				t.Fatalf("verdict %v", v)
			}
			return
		}
		if n < ethHeaderLen || n > len(buf)-testOff {
			t.Fatalf("reply length %d, buffer room %d", n, len(buf)-testOff)
		}
		// The reply goes to the frame's source.
		var x q
		copy(x.srcMAC[:], frame[6:12])
		copy(x.dstMAC[:], frame[0:6])
		if x.srcMAC[0]&1 != 0 || x.dstMAC[0]&1 != 0 {
			t.Fatalf("answered a query from %v to %v: a multicast MAC", x.srcMAC, x.dstMAC)
		}
		switch binary.BigEndian.Uint16(frame[12:14]) {
		case etherTypeIPv4:
			ihl := int(frame[ethHeaderLen]&0x0f) * 4
			x.src = netip.AddrFrom4([4]byte(frame[ethHeaderLen+12 : ethHeaderLen+16]))
			x.dst = netip.AddrFrom4([4]byte(frame[ethHeaderLen+16 : ethHeaderLen+20]))
			x.sport = binary.BigEndian.Uint16(frame[ethHeaderLen+ihl:])
		case etherTypeIPv6:
			x.src = netip.AddrFrom16([16]byte(frame[ethHeaderLen+8 : ethHeaderLen+24]))
			x.dst = netip.AddrFrom16([16]byte(frame[ethHeaderLen+24 : ethHeaderLen+40]))
			x.sport = binary.BigEndian.Uint16(frame[ethHeaderLen+ipv6HeaderLen:])
		default:
			t.Fatalf("answered a frame of EtherType %#x", binary.BigEndian.Uint16(frame[12:14]))
		}
		if !x.src.IsValid() || x.src.IsMulticast() || x.src.IsUnspecified() {
			t.Fatalf("answered a query from %v", x.src)
		}
		reply := buf[testOff : testOff+n]
		if x.dstMAC == (fdb.MAC{}) { // checkFrame would take gwMAC for it
			if fdb.MAC(reply[6:12]) != x.dstMAC {
				t.Fatalf("reply from %x, the query went to %v", reply[6:12], x.dstMAC)
			}
			x.dstMAC = gwMAC
			copy(reply[6:12], gwMAC[:])
		}
		checkFrame(t, x, reply)
	})
}

// fuzzSeeds are real query frames: UDP over IPv4 and IPv6, with EDNS0,
// PTR, an outside name, a TCP SYN, a TCP query and a FIN, and a cut one.
func fuzzSeeds(t testing.TB) [][]byte {
	a := q{name: "web.mynet", typ: layers.DNSTypeA}
	six := q{name: "web", typ: layers.DNSTypeAAAA, src: cli6, edns: 1232}
	ptr := q{name: "10.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR}
	svc := q{name: "websvc", typ: layers.DNSTypeA, edns: 4096}
	out := q{name: "example.com", typ: layers.DNSTypeMX}
	big := q{name: "many", typ: layers.DNSTypeA}
	return [][]byte{
		a.udpFrame(t, nil),
		six.udpFrame(t, nil),
		ptr.udpFrame(t, nil),
		svc.udpFrame(t, nil),
		out.udpFrame(t, nil),
		big.udpFrame(t, nil),
		a.tcpFrame(t, true, false, false, false, 100, 0, 1460, nil),
		a.tcpFrame(t, false, true, false, false, 101, 1, 0, lengthPrefixed(a.dnsBytes(t))),
		six.tcpFrame(t, false, true, true, false, 200, 7, 0, nil),
		a.udpFrame(t, nil)[:50],
	}
}

// TestWriteFuzzSeeds rewrites the committed seed corpus when asked to, and
// otherwise checks it is there.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzHandle")
	if !*writeSeeds {
		if ents, err := os.ReadDir(dir); err != nil || len(ents) == 0 {
			t.Fatalf("no seed corpus in %s (%v): run with -dns.writeseeds", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
