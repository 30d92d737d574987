// Package join hands the cluster secret to a new node. A member prints a
// join token (Token) carrying its own join key J and the fingerprint of
// the cluster secret S; the new node, which has no gossip keys yet,
// Requests S from that member over TCP on the member's gossip port, proving
// it holds J without sending it, and checks that the S it gets is the
// cluster the token names. The member runs a Server for each such stream.
//
// Design notes. The exchange (all HKDF and HMAC with SHA-256):
//
//	joiner -> member, 66 bytes:
//	  0xF7 | version 1 | nonceC (32 random bytes) | mac (32)
//	  mac   = HMAC(kAuth, "ovlsw join request" || version || nonceC)
//	  kAuth = HKDF(J, salt none, info "ovlsw join auth"), 32 bytes
//	member -> joiner, 1 byte, or 81 if accepted:
//	  status 0 (accepted) | nonceS (32 random bytes) | sealed S (32 + 16-byte tag)
//	  sealed = AES-256-GCM under k, nonce 12 zero bytes,
//	           additional data 0xF7 || version || nonceC || nonceS
//	  k     = HKDF(J, salt nonceC || nonceS, info "ovlsw join seal"), 32 bytes
//	  status 1: refused (a bad request, or not this node's key)
//	  status 2: a protocol version this member does not speak
//
// and the member closes. The magic 0xF7 is what memberlist never sends as
// the first byte of a stream (its message types are 0 to 13, and 244 for
// a label header), so the gossip listener tells join streams from gossip
// by that byte; see gossip.Config.JoinServer. Each label (info) keys one
// use of J, so the MAC key and the sealing keys are unrelated.
//
// What each side learns. The member learns that the request was made by a
// holder of J (or is a replay of one): the request is a random nonce and
// its MAC, nothing about who sends it. A refused joiner learns one byte,
// that its key is not this node's current one (nothing about which keys
// or secrets the node has). An accepted joiner learns S, and, since only a
// holder of J can derive k, that the answer came from a holder of J: the
// node that printed the token. An eavesdropper sees nonces and a
// ciphertext, worthless without J. An active attacker without J can
// neither make a request the member accepts nor an answer the joiner
// accepts (the GCM tag fails and Request reports no join service): it can
// only deny service. There is no forward secrecy for token holders: with
// J and a recorded exchange one can open S, but a holder of J could have
// asked for S anyway.
//
// Replay: a recorded request replayed passes the MAC, but the member
// answers with a fresh nonceS, so k is new (which is also why a fixed GCM
// nonce is safe: no key seals twice) and the replayer, without J, cannot
// open the answer. It learns only that the token is still current at
// that node. The additional data binds the ciphertext to this exchange's
// nonces and version, so it cannot be spliced into another.
//
// Why per-node join keys rather than S in the token: every member holds S,
// so a token carrying S could only be revoked by re-keying the whole
// cluster. A join key is one node's own: rotating it (`ovlsw token
// --rotate`) needs no distribution, and from then on that node refuses the
// old token, which no other node ever accepted. A token therefore works
// only against the node that printed it. A leaked token that has not been
// used is worth nothing after rotation; a leaked S is the cluster.
//
// What a holder of a token can do: until the node that printed it rotates
// its key, obtain S from it, that is, become a member: read all gossip
// and send any (including bindings that divert traffic). Rotation does not
// undo that: a node that joined holds S, and removing it needs a new S.
//
// Files: join.go the wire format and key derivation; client.go Request;
// server.go the Server; token.go the Token.
package join

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

// Protocol constants.
const (
	// Magic is the first byte of every join request: not a memberlist
	// message type, so a gossip listener can tell join streams apart.
	Magic byte = 0xF7
	// Version is the protocol version this package speaks.
	Version byte = 1
	// DefaultTimeout bounds each read and write of the exchange when no
	// other bound is given: the exchange is two messages of under 100
	// bytes, so a few seconds is ample on any network that gossip works
	// on, and short enough that a stalled peer costs little.
	DefaultTimeout = 5 * time.Second
)

// Message layout.
const (
	nonceSize    = 32                               // nonceC and nonceS: 256 random bits each
	macSize      = sha256.Size                      // HMAC-SHA256
	headerSize   = 2                                // magic, version
	requestSize  = headerSize + nonceSize + macSize // 66
	tagSize      = 16                               // GCM tag
	sealedSize   = secret.Size + tagSize            // 48
	acceptSize   = nonceSize + sealedSize           // what follows status 0: 80
	adSize       = headerSize + 2*nonceSize         // additional data: 66
	gcmNonceSize = 12
)

// Status bytes, the first byte of an answer.
const (
	statusOK      byte = 0
	statusRefused byte = 1
	statusVersion byte = 2
)

// Labels: each use of J has its own.
const (
	authInfo   = "ovlsw join auth"
	sealInfo   = "ovlsw join seal"
	requestTag = "ovlsw join request"
)

// requestMAC returns the MAC of a request with version v and nonce nonceC
// under join key j.
func requestMAC(j *secret.Secret, v byte, nonceC []byte) []byte {
	kAuth := derive(j, nil, authInfo)
	h := hmac.New(sha256.New, kAuth)
	h.Write([]byte(requestTag))
	h.Write([]byte{v})
	h.Write(nonceC)
	return h.Sum(nil)
}

// sealer returns the AEAD sealing this exchange's answer, and its
// additional data. It fails only where GCM with a caller's nonce is
// forbidden: in Go's FIPS 140-only mode (GODEBUG=fips140=only).
func sealer(j *secret.Secret, nonceC, nonceS []byte) (cipher.AEAD, []byte, error) {
	salt := make([]byte, 0, 2*nonceSize)
	salt = append(append(salt, nonceC...), nonceS...)
	block, err := aes.NewCipher(derive(j, salt, sealInfo))
	if err != nil {
		return nil, nil, err // unreachable: the key is 32 bytes
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err // only in FIPS 140-only mode
	}
	ad := make([]byte, 0, adSize)
	ad = append(append(append(ad, Magic, Version), nonceC...), nonceS...)
	return aead, ad, nil
}

// derive is HKDF-SHA256 of j with salt and info, 32 bytes.
func derive(j *secret.Secret, salt []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, j[:], salt, info, 32)
	if err != nil {
		panic(err) // unreachable: 32 bytes is far below HKDF's limit
	}
	return k
}

// zeroNonce is the GCM nonce: fixed, since every key seals once.
var zeroNonce [gcmNonceSize]byte
