package seal

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addrC = netip.MustParseAddr("192.0.2.3")
)

// fixedKey returns a 32-byte key of b repeated.
func fixedKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// pair returns the registries of two nodes A and B that know each other's
// public keys, with the given suite and the same secret, and each one's
// Peer for the other.
func pair(t testing.TB, suite Suite) (a, b *Keys, aToB, bFromA *Peer) {
	t.Helper()
	a = mustKeys(t, Config{Private: fixedKey(1), Secret: [32]byte{9}, Suite: suite, Session: 0xa1a1a1a1})
	b = mustKeys(t, Config{Private: fixedKey(2), Secret: [32]byte{9}, Suite: suite, Session: 0xb2b2b2b2})
	if err := a.SetPeerKey(addrB, b.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeerKey(addrA, a.PublicKey()); err != nil {
		t.Fatal(err)
	}
	return a, b, a.Peer(addrB), b.Peer(addrA)
}

func mustKeys(t testing.TB, cfg Config) *Keys {
	t.Helper()
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// at is a Time in epoch e of the default interval, 1 s into it.
func at(e uint64) Time {
	n := int64(e)*int64(DefaultInterval) + int64(time.Second)
	return Time{Epoch: e, Nano: n}
}

// sealed returns plaintext pt sealed by p at t, in a new buffer.
func sealed(t testing.TB, p *Peer, pt []byte, tm Time) []byte {
	t.Helper()
	b := make([]byte, len(pt)+Overhead)
	if err := p.SealFrom(b, pt, tm); err != nil {
		t.Fatal(err)
	}
	return b
}

// payload returns a VXLAN-looking plaintext of n bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	if n > 0 {
		b[0] = 0x08
	}
	return b
}

var suites = []Suite{AES256GCM, ChaCha20Poly1305}
