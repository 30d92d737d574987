// Package csumref is the RFC 1071 Internet checksum written the slow,
// obvious way, for tests of vtep and vtep/offload to check the fast one
// (and the frames built with it) against. Only tests import it.
package csumref

// Sum adds big-endian byte pairs of b (a trailing odd byte as the high byte
// of a pair) and the four 16-bit words of initial into a wide accumulator,
// then folds the carries back in. Like offload.Checksum, the result is not
// complemented.
func Sum(b []byte, initial uint64) uint16 {
	var s uint64
	for i := 0; i < 64; i += 16 {
		s += initial >> i & 0xffff
	}
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
