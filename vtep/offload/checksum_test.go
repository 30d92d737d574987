package offload

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/ovlsw/ovlsw/vtep/internal/csumref"
)

func TestChecksum(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		initial uint64
		want    uint16
	}{
		{"empty", nil, 0, 0},
		{"empty with initial", nil, 0x1_0002, 0x0003},
		{"RFC 1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0, 0xddf2},
		{"one byte", []byte{0xab}, 0, 0xab00},
		{"three bytes", []byte{0x01, 0x02, 0x03}, 0, 0x0402},
		{"carry wraps", []byte{0xff, 0xff, 0x00, 0x01}, 0, 0x0001},
		{"all ones", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, 0xffff},
		{"all ones, odd", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, 0xff00},
		{"nonzero data summing to zero is 0xffff", []byte{0x12, 0x34, 0xed, 0xcb}, 0, 0xffff},
		{"all-ones initial", []byte{0x00, 0x01}, ^uint64(0), 0x0001},
		{"zeros", make([]byte, 100), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(tt.in, tt.initial); got != tt.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tt.want)
			}
			if got := csumref.Sum(tt.in, tt.initial); got != tt.want {
				t.Errorf("reference = %#04x, want %#04x (bad test)", got, tt.want)
			}
		})
	}
}

// TestChecksumRandom compares Checksum with the reference over every length
// up to 2000 bytes, at unaligned starts, with random data and initial values,
// and with all-0xff data, which carries the most.
func TestChecksumRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2000+8)
	ones := make([]byte, 2000+8)
	for i := range ones {
		ones[i] = 0xff
	}
	for n := 0; n <= 2000; n++ {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		off := rng.IntN(8)
		initial := rng.Uint64()
		if n%3 == 0 {
			initial = 0
		}
		for _, b := range [][]byte{buf[off : off+n], ones[off : off+n]} {
			if got, want := Checksum(b, initial), csumref.Sum(b, initial); got != want {
				t.Fatalf("len %d offset %d initial %#x: Checksum = %#04x, reference %#04x", n, off, initial, got, want)
			}
		}
	}
}

// TestChecksumChain checks that summing a buffer in even-length pieces,
// passing each result on as the next initial value, equals summing it whole.
func TestChecksumChain(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 1501)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	want := Checksum(b, 0)
	for cut := 0; cut <= len(b); cut += 2 {
		if got := Checksum(b[cut:], uint64(Checksum(b[:cut], 0))); got != want {
			t.Fatalf("cut at %d: %#04x, want %#04x", cut, got, want)
		}
	}
}

func TestPseudoHeaderSum6(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		length   uint32
		proto    uint8
	}{
		{"ICMPv6", "fd77::1", "ff02::1:ff00:2", 32, 58},
		{"unspecified source", "::", "ff02::1:fffc:173c", 32, 58},
		{"all ones", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0xffffffff, 0xff},
		{"jumbo length", "2001:db8::1", "2001:db8::2", 0x12345678, 17},
		{"zero", "::", "::", 0, 0},
		{"IPv4 taken as mapped", "10.0.0.1", "10.0.0.2", 8, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
			// The pseudo-header as RFC 8200 section 8.1 draws it.
			var ph [40]byte
			s16, d16 := src.As16(), dst.As16()
			copy(ph[0:16], s16[:])
			copy(ph[16:32], d16[:])
			binary.BigEndian.PutUint32(ph[32:36], tt.length)
			ph[39] = tt.proto
			got := Checksum(nil, PseudoHeaderSum6(src, dst, tt.length, tt.proto))
			if want := csumref.Sum(ph[:], 0); got != want {
				t.Errorf("PseudoHeaderSum6 folds to %#04x, reference %#04x", got, want)
			}
		})
	}
}

// TestChecksumGopacket checks that a checksum gopacket computes for ICMPv6
// verifies with PseudoHeaderSum6 and Checksum, and that ours equals it.
func TestChecksumGopacket(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	src, dst := netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")
	for _, n := range []int{0, 1, 7, 64, 1001} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = byte(rng.Uint32())
			}
			ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			sb := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				ip, icmp, gopacket.Payload(payload)); err != nil {
				t.Fatal(err)
			}
			msg := sb.Bytes()[40:]
			pseudo := PseudoHeaderSum6(src, dst, uint32(len(msg)), 58)
			if got := Checksum(msg, pseudo); got != 0xffff {
				t.Errorf("gopacket's checksum %#04x does not verify: sum %#04x", icmp.Checksum, got)
			}
			zeroed := append([]byte(nil), msg...)
			zeroed[2], zeroed[3] = 0, 0
			if got := ^Checksum(zeroed, pseudo); got != icmp.Checksum {
				t.Errorf("our checksum %#04x, gopacket's %#04x", got, icmp.Checksum)
			}
		})
	}
}

func TestChecksumAllocs(t *testing.T) {
	b := make([]byte, 1500)
	src, dst := netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")
	if n := testing.AllocsPerRun(1000, func() {
		_ = Checksum(b[1:], PseudoHeaderSum6(src, dst, 1499, 58))
	}); n != 0 {
		t.Errorf("Checksum+PseudoHeaderSum6 allocs = %v", n)
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{40, 64, 1500, 9000, 65535} {
		buf := make([]byte, n+1)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for _, off := range []int{0, 1} {
			b.Run(fmt.Sprintf("%d/offset%d", n, off), func(b *testing.B) {
				p := buf[off : off+n]
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					_ = Checksum(p, 0)
				}
			})
		}
	}
}

// BenchmarkChecksumReference measures the RFC 1071 byte-pair loop, to show
// what the 64-bit adds buy.
func BenchmarkChecksumReference(b *testing.B) {
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		_ = csumref.Sum(buf, 0)
	}
}

func TestPseudoHeaderSum4(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		length   uint32
		proto    uint8
	}{
		{"TCP", "10.0.0.1", "10.0.0.2", 1420, 6},
		{"all ones", "255.255.255.255", "255.255.255.255", 0xffff, 0xff},
		{"zero", "0.0.0.0", "0.0.0.0", 0, 0},
		{"mapped", "::ffff:192.0.2.1", "::ffff:192.0.2.200", 8, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
			// The pseudo-header as RFC 793 section 3.1 draws it.
			var ph [12]byte
			s4, d4 := src.Unmap().As4(), dst.Unmap().As4()
			copy(ph[0:4], s4[:])
			copy(ph[4:8], d4[:])
			ph[9] = tt.proto
			binary.BigEndian.PutUint16(ph[10:12], uint16(tt.length))
			got := Checksum(nil, pseudoHeaderSum4(src, dst, tt.length, tt.proto))
			if want := csumref.Sum(ph[:], 0); got != want {
				t.Errorf("pseudoHeaderSum4 folds to %#04x, reference %#04x", got, want)
			}
		})
	}
}
