// Package secret holds a cluster's secret and what is derived from it: the
// join token that carries it to new nodes, the fingerprint that names it in
// logs, the state file that keeps it on the founding node's disk, and the
// schedule of gossip encryption keys that every member computes from it and
// the time, so keys rotate with no distribution.
//
// Design notes: one 32-byte random secret S per cluster is the only thing
// that must be shared. Everything else is derived one way, each use with its
// own label (domain separation), so learning one derived value (a
// fingerprint, a gossip key) reveals neither S nor the others:
//
//	fingerprint     first 8 bytes of SHA-256("ovlsw fingerprint" || S)
//	gossip key K(n) HKDF-SHA256(secret S, salt "ovlsw gossip key", info n as 8 bytes big-endian), 32 bytes
//
// Rotation is not revocation: whoever holds S (every member, and every copy
// of the join token) can compute every past and future key. Rotating keys
// bounds what a leaked gossip key alone is worth (one epoch's traffic, three
// epochs of forged messages); removing a node for good needs a new secret.
//
// Files: secret.go the Secret and its fingerprint; token.go the join token;
// file.go the state file; schedule.go the key schedule.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// Size is the length of a Secret in bytes: 256 bits, the key size of the
// AES-256 that gossip uses, so guessing S is no easier than guessing a key.
const Size = 32

// Secret is a cluster secret. fmt and log/slog print only its fingerprint,
// so a Secret logged by mistake does not leak; Token is the way to spell
// it out. (encoding/json would still write its bytes: do not marshal one.)
type Secret [Size]byte

// Generate returns a new random Secret from crypto/rand.
func Generate() (Secret, error) {
	var s Secret
	if _, err := rand.Read(s[:]); err != nil {
		return Secret{}, fmt.Errorf("secret: generate: %w", err)
	}
	return s, nil
}

// IsZero reports whether s is the zero Secret, which no cluster uses (the
// zero value of a Config field meaning "no secret").
func (s Secret) IsZero() bool { return s == Secret{} }

// fingerprintLabel separates the fingerprint hash from every other use of S.
const fingerprintLabel = "ovlsw fingerprint"

// fingerprintSize is the length of a fingerprint in bytes: 64 bits name a
// cluster among any number an operator will meet, and make a mistyped
// token pass the check with probability 2^-64.
const fingerprintSize = 8

// Fingerprint returns 16 lowercase hex digits naming s, safe to show in logs
// and status: it is a one-way hash of s, useless for finding s. The join
// token ends with the same 16 digits, so an operator can check a token
// against a running node's status by eye.
func (s Secret) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(s[:])
	return hex.EncodeToString(h.Sum(nil)[:fingerprintSize])
}

// String returns "secret:" and the fingerprint, never the secret itself.
func (s Secret) String() string { return "secret:" + s.Fingerprint() }

// Format makes every fmt verb (%v, %x, %d, %#v, ...) print String, so that
// no formatting of a Secret reveals its bytes.
func (s Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// LogValue makes log/slog print String with every handler.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)
