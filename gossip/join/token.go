// The join token: one node's join key and the name of its cluster, spelled
// for people to copy.
//
// Design notes: a token is
//
//	ovlswjoin1_<join key: 52 base32 characters>_<cluster: 16 hex digits>_<checksum: 8 hex digits>
//	ovlswjoin1_aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq_070fe1acae34b43d_5b0111f3
//
// (the second for the key 00 01 02 ... 1f and the cluster whose secret is
// 20 21 22 ... 3f): 89 characters. Like the cluster secret's token
// (secret.Secret.Token) it is letters, digits and "_" only, so a
// double-click selects all of it and a shell needs no quotes, and the key
// is lowercase RFC 4648 base32 without padding. It is longer than 80
// columns; a terminal that wraps it still copies one line, and parsing
// drops whitespace, so a token wrapped by a mail client parses too.
//
// "ovlswjoin1" names the format and its version, and keeps a join token
// apart from a cluster secret's "ovlsw1_" token: each parser recognises
// the other's and says which it was given. The cluster part is
// secret.Secret.Fingerprint of the cluster secret S, not of the key: it
// tells the joiner which cluster it must end up in (Request checks the
// secret it receives against it), and an operator can compare it with the
// fingerprint a running node shows. It checks nothing about the key, so
// the token ends with a checksum of its own: the first 4 bytes of
// SHA-256 of everything before the last "_", in hex. A mistyped token
// passes it with probability 2^-32, and then fails the exchange (refused,
// or another cluster) rather than joining anything it should not.
//
// Parsing drops whitespace and the case of ASCII letters, and otherwise
// accepts only the canonical spelling. Errors never repeat the token: it
// is a credential (see the package notes).

package join

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ovlsw/ovlsw/gossip/internal/tokentext"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

// Token format constants.
const (
	tokenPrefix  = "ovlswjoin"
	tokenVersion = "1"
	tokenSep     = "_"
	// keyChars is the length of the base32 key: ceil(32*8/5) = 52.
	keyChars = tokentext.Chars32
	// clusterChars is the length of a secret's fingerprint in hex.
	clusterChars = 16
	// checksumSize is the checksum's length in bytes: 32 bits catch all
	// but one in four billion typos, in 8 characters.
	checksumSize  = 4
	checksumChars = 2 * checksumSize
	// TokenLen is the length of a join token: "ovlswjoin1", the key, the
	// cluster fingerprint and the checksum, with three separators.
	TokenLen = len(tokenPrefix+tokenVersion) + 1 + keyChars + 1 + clusterChars + 1 + checksumChars
)

// Token is what a joiner needs to obtain the cluster secret from one
// member: that member's join key, and the name of the cluster it must
// end up in. Anyone holding it can join the cluster (until that member
// rotates its key): hand it over like a password.
type Token struct {
	// Key is the member's join key J.
	Key secret.Secret
	// Cluster is the fingerprint of the cluster secret
	// (secret.Secret.Fingerprint): 16 lowercase hex digits.
	Cluster string
}

// String returns the token spelled out, one line, as `ovlsw token` prints
// it. It contains the key: log/slog prints only fingerprints (LogValue),
// but fmt's %v and %s print this.
func (t Token) String() string {
	body := tokenPrefix + tokenVersion + tokenSep + tokentext.Encoding.EncodeToString(t.Key[:]) + tokenSep + t.Cluster
	return body + tokenSep + checksum(body)
}

// LogValue makes log/slog print the fingerprints of the key and the
// cluster, never the key.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key", t.Key.Fingerprint()), slog.String("cluster", t.Cluster))
}

var _ slog.LogValuer = Token{}

// checksum is the hex of the first checksumSize bytes of SHA-256(body).
func checksum(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:checksumSize])
}

// Errors of ParseToken, one per thing that can be wrong. None is worth
// retrying with the same input.
var (
	// ErrNotToken: the text does not start with "ovlswjoin" and a version.
	ErrNotToken = errors.New("not an ovlsw join token (those start with \"ovlswjoin1_\")")
	// ErrTokenVersion: a token of a format version this build does not
	// read, written by a newer ovlsw.
	ErrTokenVersion = errors.New("unknown join token version")
	// ErrTokenLength: the token has the wrong number of characters: cut
	// short, or pasted with something else.
	ErrTokenLength = errors.New("join token has the wrong length")
	// ErrTokenEncoding: a character outside the alphabet of its part, or a
	// separator missing.
	ErrTokenEncoding = errors.New("join token has a bad character")
	// ErrTokenChecksum: the checksum at the end does not match the rest:
	// a character was mistyped.
	ErrTokenChecksum = errors.New("join token checksum does not match: mistyped")
)

// ParseToken reads a token String wrote. It ignores whitespace anywhere
// and the case of letters. Its errors wrap one of ErrNotToken,
// ErrTokenVersion, ErrTokenLength, ErrTokenEncoding or ErrTokenChecksum,
// and never contain the token.
func ParseToken(s string) (Token, error) {
	t, err := parseToken(s)
	if err != nil {
		return Token{}, fmt.Errorf("join: parse token: %w", err)
	}
	return t, nil
}

func parseToken(tok string) (Token, error) {
	tok = tokentext.Canonical(tok)
	head, rest, _ := strings.Cut(tok, tokenSep)
	version, ok := strings.CutPrefix(head, tokenPrefix)
	if !ok || version == "" || strings.Trim(version, "0123456789") != "" {
		if v, ok := strings.CutPrefix(head, "ovlsw"); ok && v != "" && strings.Trim(v, "0123456789") == "" {
			return Token{}, fmt.Errorf("%w: this is a cluster secret token (\"ovlsw%s_\"), not a join token; print a join token with `ovlsw token` on a member", ErrNotToken, tokentext.Shorten(v))
		}
		return Token{}, ErrNotToken
	}
	if version != tokenVersion {
		return Token{}, fmt.Errorf("%w %q: this ovlsw reads version %s only (upgrade it)", ErrTokenVersion, tokentext.Shorten(version), tokenVersion)
	}
	if why := tokentext.NonASCII(tok); why != "" {
		return Token{}, fmt.Errorf("%w: %s", ErrTokenEncoding, why)
	}
	if why := tokentext.Length(len(tok), TokenLen); why != "" {
		return Token{}, fmt.Errorf("%w: %s", ErrTokenLength, why)
	}
	// rest is key _ cluster _ checksum, each part at a fixed offset.
	key := rest[:keyChars]
	sep1 := rest[keyChars : keyChars+1]
	cluster := rest[keyChars+1 : keyChars+1+clusterChars]
	sep2 := rest[keyChars+1+clusterChars : keyChars+2+clusterChars]
	sum := rest[keyChars+2+clusterChars:]
	var t Token
	if why := tokentext.Decode32((*[secret.Size]byte)(&t.Key), key, "the key"); why != "" {
		return Token{}, fmt.Errorf("%w: %s", ErrTokenEncoding, why)
	}
	if sep1 != tokenSep || sep2 != tokenSep {
		return Token{}, fmt.Errorf("%w: the parts are not separated by %q at characters %d and %d", ErrTokenEncoding, tokenSep, len(head)+1+keyChars+1, len(head)+1+keyChars+1+clusterChars+1)
	}
	if !tokentext.IsHex(cluster) {
		return Token{}, fmt.Errorf("%w: the cluster fingerprint is not hex (0-9, a-f)", ErrTokenEncoding)
	}
	if !tokentext.IsHex(sum) {
		return Token{}, fmt.Errorf("%w: the checksum is not hex (0-9, a-f)", ErrTokenEncoding)
	}
	if sum != checksum(tok[:len(tok)-checksumChars-1]) {
		return Token{}, ErrTokenChecksum
	}
	t.Cluster = cluster
	return t, nil
}
