package vtep

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/ovlsw/ovlsw/vtep/internal/csumref"
	"github.com/ovlsw/ovlsw/vtep/offload"
)

// The checksum itself is tested and benchmarked in package offload, against
// the reference in vtep/internal/csumref, which nd_test.go uses too; this
// file keeps what needs vtep: the wrappers and the kernel capture.

// TestChecksumWrappers checks that vtep's names give offload's results.
func TestChecksumWrappers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	b := make([]byte, 301)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	src, dst := netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")
	for n := 0; n <= len(b); n += 37 {
		initial := rng.Uint64()
		if got, want := checksum(b[:n], initial), offload.Checksum(b[:n], initial); got != want {
			t.Errorf("len %d: checksum = %#04x, offload.Checksum = %#04x", n, got, want)
		}
		if got, want := checksum(b[:n], initial), csumref.Sum(b[:n], initial); got != want {
			t.Errorf("len %d: checksum = %#04x, reference = %#04x", n, got, want)
		}
	}
	if got, want := pseudoHeaderSum6(src, dst, 32, 58), offload.PseudoHeaderSum6(src, dst, 32, 58); got != want {
		t.Errorf("pseudoHeaderSum6 = %#x, offload's %#x", got, want)
	}
}

// TestChecksumKernelCapture verifies checksums the Linux kernel computed in
// software: inner IPv4 headers, ICMP and ICMPv6 (the inner TCP checksums of
// this capture are left to offload and are not checked).
func TestChecksumKernelCapture(t *testing.T) {
	var nIPv4, nICMP, nICMPv6 int
	for i, payload := range kernelPayloads(t) {
		_, inner, _, ok := decap(payload)
		if !ok {
			t.Fatalf("packet %d: decap failed", i)
		}
		var c frameClass
		if _, ok := classify(inner, &c); !ok {
			t.Fatalf("packet %d: classify failed", i)
		}
		l3 := inner[c.L2Len:]
		switch c.EtherType {
		case 0x0800:
			ihl := int(l3[0]&0xf) * 4
			if got := checksum(l3[:ihl], 0); got != 0xffff {
				t.Errorf("packet %d: IPv4 header sums to %#04x", i, got)
			}
			nIPv4++
			if l3[9] == 1 {
				total := int(binary.BigEndian.Uint16(l3[2:4]))
				if got := checksum(l3[ihl:total], 0); got != 0xffff {
					t.Errorf("packet %d: ICMP sums to %#04x", i, got)
				}
				nICMP++
			}
		case 0x86dd:
			if l3[6] != 58 {
				continue // hop-by-hop options (MLD reports)
			}
			plen := uint32(binary.BigEndian.Uint16(l3[4:6]))
			src := netip.AddrFrom16([16]byte(l3[8:24]))
			dst := netip.AddrFrom16([16]byte(l3[24:40]))
			if got := checksum(l3[40:40+plen], pseudoHeaderSum6(src, dst, plen, 58)); got != 0xffff {
				t.Errorf("packet %d: ICMPv6 sums to %#04x", i, got)
			}
			nICMPv6++
		}
	}
	if nIPv4 == 0 || nICMP == 0 || nICMPv6 == 0 {
		t.Errorf("checked %d IPv4 headers, %d ICMP, %d ICMPv6 messages; want some of each", nIPv4, nICMP, nICMPv6)
	}
}
