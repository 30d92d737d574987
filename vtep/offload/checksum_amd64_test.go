//go:build amd64 && !purego

package offload

import (
	"math/rand/v2"
	"testing"

	"github.com/ovlsw/ovlsw/vtep/internal/csumref"
)

// TestChecksumAVX2 compares Checksum with and without the AVX2 loop, and
// with the reference, over lengths around the loop's threshold and block
// size, up to 64 KB, at unaligned starts, on random and all-0xff data.
func TestChecksumAVX2(t *testing.T) {
	if !avx2 {
		t.Skip("no AVX2 on this CPU")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 65536+8)
	ones := make([]byte, len(buf))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
		ones[i] = 0xff
	}
	lengths := []int{minAVX2 - 1, minAVX2, minAVX2 + 1, 191, 192, 193, 1448, 1500, 9000, 65507, 65535, 65536}
	for range 200 {
		lengths = append(lengths, rng.IntN(65536))
	}
	for _, n := range lengths {
		off := rng.IntN(8)
		initial := rng.Uint64()
		for _, b := range [][]byte{buf[off : off+n], ones[off : off+n]} {
			want := csumref.Sum(b, initial)
			got := Checksum(b, initial)
			avx2 = false
			scalar := Checksum(b, initial)
			avx2 = true
			if got != want || scalar != want {
				t.Fatalf("len %d offset %d: AVX2 %#04x, scalar %#04x, reference %#04x", n, off, got, scalar, want)
			}
		}
	}
}
