package seal

// This file holds key derivation (docs/encryption.md, "Keys"):
//
//	shared  = X25519(own private key, peer's public key)        (DH mode)
//	        = the 32-byte network key                           (static mode)
//	PRK     = HKDF-Extract(SHA-256, salt "ovlsw data v1", shared || S)
//	K       = HKDF-Expand(SHA-256, PRK, info, 32)
//	info    = "ovlsw data v1 key" || suite (1) || sender public key (32)
//	          || receiver public key (32) || session (4) || epoch (8)
//	          || generation (8)
//
// S is the cluster secret (32 zero bytes without one), so a host must be a
// member (hold S) and hold one of the pair's private keys to derive a key:
// a member cannot read another pair's traffic, a stranger who stole a
// private key cannot either. In static mode both public keys are 32 zero
// bytes. Integers are big-endian.

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Labels that separate this use of the secrets from every other.
const (
	extractSalt = "ovlsw data v1"
	expandLabel = "ovlsw data v1 key"
)

// PublicKeyLen is the length of an X25519 public (and private) key.
const PublicKeyLen = 32

// errLowOrder: the peer's public key gives an all-zero shared secret.
var errLowOrder = errors.New("seal: peer public key is of low order")

// material is what a pair's keys are derived from: the PRK and both public
// keys. It is immutable; a new public key or secret makes a new one.
type material struct {
	prk        []byte
	self, peer [PublicKeyLen]byte // zero in static mode
}

// newMaterial extracts the PRK from shared and the cluster secret.
func newMaterial(shared []byte, secret *[32]byte, self, peer [PublicKeyLen]byte) *material {
	ikm := make([]byte, 0, len(shared)+len(secret))
	ikm = append(append(ikm, shared...), secret[:]...)
	prk, err := hkdf.Extract(sha256.New, ikm, []byte(extractSalt))
	if err != nil {
		panic(err) // unreachable: HMAC-SHA256 takes any key
	}
	return &material{prk: prk, self: self, peer: peer}
}

// dhMaterial computes the pair's material from our private key and the
// peer's public key.
func dhMaterial(priv *ecdh.PrivateKey, peerPub []byte, secret *[32]byte) (*material, error) {
	pub, err := ecdh.X25519().NewPublicKey(peerPub)
	if err != nil {
		return nil, fmt.Errorf("seal: peer public key: %w", err)
	}
	shared, err := priv.ECDH(pub) // refuses a low-order point (all-zero result)
	if err != nil {
		return nil, errLowOrder
	}
	return newMaterial(shared, secret, [PublicKeyLen]byte(priv.PublicKey().Bytes()), [PublicKeyLen]byte(peerPub)), nil
}

// keyID is what names one key of a pair: the direction (out: we are the
// sender), the suite, the sender's session, the epoch and the generation.
type keyID struct {
	out     bool
	suite   Suite
	session uint32
	epoch   uint64
	gen     uint64
}

// derive returns the key id names.
func (m *material) derive(id keyID) []byte {
	sender, receiver := m.peer, m.self
	if id.out {
		sender, receiver = m.self, m.peer
	}
	info := make([]byte, 0, len(expandLabel)+1+2*PublicKeyLen+4+8+8)
	info = append(info, expandLabel...)
	info = append(info, byte(id.suite))
	info = append(info, sender[:]...)
	info = append(info, receiver[:]...)
	info = binary.BigEndian.AppendUint32(info, id.session)
	info = binary.BigEndian.AppendUint64(info, id.epoch)
	info = binary.BigEndian.AppendUint64(info, id.gen)
	k, err := hkdf.Expand(sha256.New, m.prk, string(info), KeyLen)
	if err != nil {
		panic(err) // unreachable: 32 bytes is far below HKDF's limit
	}
	return k
}

// DefaultInterval is the default rekey interval: a new key every hour, as
// the issue asks; WireGuard rekeys every two minutes, but it must also
// renew an ephemeral handshake, which derived keys need not.
const DefaultInterval = time.Hour

// MinInterval is the shortest rekey interval: receivers accept the epochs
// either side of theirs, so clocks must agree to well within one interval.
// Short intervals are for tests.
const MinInterval = time.Second

// Epoch returns the epoch of unix time now (nanoseconds) for interval: the
// whole intervals since the Unix epoch; 0 before it.
func Epoch(now int64, interval time.Duration) uint64 {
	if now < 0 || interval <= 0 {
		return 0
	}
	return uint64(now / int64(interval))
}
