//go:build !amd64 || purego

package offload

// Without the amd64 assembly, sumLE never calls sumAVX2.
const (
	avx2    = false
	minAVX2 = 0
)

func sumAVX2([]byte) uint64 { panic("offload: sumAVX2 without AVX2") }
