// Package seal is the datagram sealing of encrypted networks: the sealed
// header, the AEAD suites, the derivation of directional keys from a peer
// pair (X25519 and the cluster secret, or a static network key), the
// counters used as nonces and the replay window. It knows nothing of
// sockets, ports or gossip: the switch calls Seal and Open on datagrams in
// place, the control plane feeds it public keys and secrets.
//
// Files: header.go the wire header; suite.go the AEADs; kdf.go key
// derivation; replay.go the replay window; peer.go the per-peer send and
// receive state; keys.go the registry of peers. The wire format is
// specified in docs/encryption.md.
//
// Design notes (after WireGuard, without its handshake):
//   - Keys are derived, not negotiated: both ends of a pair compute the same
//     directional key from the pair's X25519 shared secret, the cluster
//     secret, the sender's session, the epoch (unix time / rekey interval)
//     and the generation (the counter's top bits). No message is exchanged,
//     so a rekey cannot be lost or get out of step, and old and new epochs
//     overlap on the receiver (it accepts epochs e-1, e and e+1).
//   - A key must never see a nonce twice. The nonce is a 64-bit counter per
//     key that only goes up; a new key starts it at 0. A process restart
//     would restart the counter under the same static-derived key, so each
//     process picks a random 32-bit session that is part of the key: a new
//     process, a new key. Keys are directional (sender's public key first),
//     so the two directions of a pair never share a key even if their
//     sessions happen to be equal.
//   - Volume rekey: the counter's top bits are the generation, which is part
//     of the key, so every 2^GenBits datagrams the key changes by itself.
package seal

import (
	"encoding/binary"
	"errors"
	"io"
)

// Wire constants.
const (
	// Type is the first byte of a sealed datagram. Plain VXLAN starts with
	// its flags byte, 0x08 (the I flag) or 0x0c (VXLAN-GPE): a receiver
	// tells them apart by this byte alone.
	Type = 0x01

	// HeaderLen is the sealed header's length: type (1), epoch phase (1),
	// suite (1), reserved (1), session (4), counter (8).
	HeaderLen = 16
	// TagLen is the AEAD tag's length (16 for both suites).
	TagLen = 16
	// Overhead is what sealing adds to a VXLAN datagram: the sealed
	// header in front and the tag behind, 32 bytes. An encrypted
	// network's inner MTU is the plain one minus this (1418 on a 1500 IPv4
	// underlay).
	Overhead = HeaderLen + TagLen

	// GenBits is how many low bits of the counter a generation spans: the
	// key changes every 2^28 (268 million) datagrams, far below the 2^32
	// that AES-GCM's bounds ask for, and 4.5 minutes at a million
	// datagrams a second.
	GenBits = 28
	// MaxCounter is the largest counter a sender uses: 2^60 - 1. The
	// counter never wraps: past it a sender refuses to seal (ErrExhausted),
	// which at 10^8 datagrams a second takes 365 years within one epoch.
	MaxCounter = 1<<60 - 1
)

// Header is the clear part of a sealed datagram, authenticated as the
// AEAD's additional data:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Type (0x01)  |  Epoch phase  |     Suite     |  Reserved (0) |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Sender session                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                     Counter (big-endian)                      +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The key id is (session, epoch, suite, generation = Counter >> GenBits).
type Header struct {
	Phase   uint8  // the epoch's low 8 bits
	Suite   Suite  // the AEAD
	Session uint32 // the sender process's random session
	Counter uint64 // the nonce: at most MaxCounter
}

// Errors of Decode.
var (
	// ErrNotSealed: the first byte is not Type (a plain VXLAN datagram,
	// say).
	ErrNotSealed = errors.New("seal: not a sealed datagram")
	// ErrBadHeader: reserved bits set, an unknown suite, a counter over
	// MaxCounter.
	ErrBadHeader = errors.New("seal: malformed sealed header")
)

// Encode writes h into b[:HeaderLen].
func (h Header) Encode(b []byte) error {
	if len(b) < HeaderLen {
		return io.ErrShortBuffer
	}
	b[0], b[1], b[2], b[3] = Type, h.Phase, byte(h.Suite), 0
	binary.BigEndian.PutUint32(b[4:8], h.Session)
	binary.BigEndian.PutUint64(b[8:16], h.Counter)
	return nil
}

// Decode reads a header from b. It returns io.ErrShortBuffer if b cannot
// hold a header and a tag, ErrNotSealed if b is not sealed, ErrBadHeader
// if the header breaks the format.
func (h *Header) Decode(b []byte) error {
	if len(b) < Overhead {
		return io.ErrShortBuffer
	}
	if b[0] != Type {
		return ErrNotSealed
	}
	*h = Header{Phase: b[1], Suite: Suite(b[2]), Session: binary.BigEndian.Uint32(b[4:8]), Counter: binary.BigEndian.Uint64(b[8:16])}
	if b[3] != 0 || !h.Suite.valid() || h.Counter > MaxCounter {
		return ErrBadHeader
	}
	return nil
}

// IsSealed reports whether datagram b claims to be sealed (its first byte
// is Type).
func IsSealed(b []byte) bool { return len(b) > 0 && b[0] == Type }

// nonceOf returns the AEAD nonce of the sealed datagram b: its session and
// counter, header bytes 4 to 16, as they are on the wire. The counter makes
// it unique under a key (the session is part of the key too). Taking it
// from the header rather than a local array keeps it off the heap.
func nonceOf(b []byte) []byte { return b[4:HeaderLen] }
