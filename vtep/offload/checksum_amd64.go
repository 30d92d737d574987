//go:build amd64 && !purego

package offload

import "golang.org/x/sys/cpu"

// avx2 is whether sumLE may use sumAVX2.
var avx2 = cpu.X86.HasAVX2

// minAVX2 is the shortest input sumLE hands to sumAVX2: below it the
// vector set-up costs more than it saves.
const minAVX2 = 128

// sumAVX2 returns the sum of the little-endian 32-bit words of b, each
// zero-extended to 64 bits: a 64-bit partial one's-complement sum of b
// (2^32 and 2^16 are both 1 mod 2^16-1), which cannot overflow for any b
// shorter than 2^31 bytes. len(b) must be a multiple of 64. It needs AVX2.
//
//go:noescape
func sumAVX2(b []byte) uint64
