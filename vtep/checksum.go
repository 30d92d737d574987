package vtep

// This file keeps the Internet checksum under the names the rest of vtep
// uses (neighbour advertisements today). The implementation, its design
// notes, tests and benchmarks live in package offload, which the fast path
// shares.

import (
	"net/netip"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

// checksum returns the 16-bit one's-complement sum of b (big-endian words, a
// trailing odd byte padded with zero) added to the partial sum initial, not
// complemented. It is offload.Checksum; see there for chaining and how to fill
// or verify a checksum field. It does not allocate.
func checksum(b []byte, initial uint64) uint16 {
	return offload.Checksum(b, initial)
}

// pseudoHeaderSum6 returns the partial one's-complement sum of the IPv6
// pseudo-header (RFC 8200 section 8.1) for checksum's initial value. It is
// offload.PseudoHeaderSum6.
func pseudoHeaderSum6(src, dst netip.Addr, length uint32, proto uint8) uint64 {
	return offload.PseudoHeaderSum6(src, dst, length, proto)
}
