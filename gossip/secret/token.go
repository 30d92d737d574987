// The join token: a cluster secret spelled for people to copy.
//
// Design notes: a token is
//
//	ovlsw1_<secret: 52 base32 characters>_<fingerprint: 16 hex digits>
//	ovlsw1_aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq_3242e30ff26f9cca
//
// (the second for the secret 00 01 02 ... 1f): 76 characters, one line
// even in an 80-column terminal. Every character is a letter, a digit or
// "_", so a double-click selects the whole token in a terminal or browser
// and a shell needs no quotes (".", "-", "=", "+" and "/" of base64 break
// one or the other). The secret is lowercase RFC 4648 base32 without
// padding: case does not matter (a token retyped in capitals parses), and
// its alphabet has no 0, 1, 8 or 9 to confuse with O, I, B or g. "ovlsw1"
// names the format and its version: a later format (carrying join
// addresses, say) will be ovlsw2, which this version reports as a version
// it does not know rather than as garbage. The trailing fingerprint is both
// the checksum (a mistyped token passes it with probability 2^-64; a
// truncated one fails the length check first) and the cluster's name: the
// joiner checks it matches the secret, and an operator can compare it with
// the fingerprint a running node logs and shows in status. Parsing drops
// all whitespace (a token wrapped by a mail client or a terminal still
// parses) and case, and otherwise accepts only the canonical spelling, so
// one secret has one token. Errors never repeat the token: it is the
// secret.

package secret

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ovlsw/ovlsw/gossip/internal/tokentext"
)

// Token format constants.
const (
	tokenPrefix  = "ovlsw"
	tokenVersion = "1"
	tokenSep     = "_"
	// secretChars is the length of the base32 secret: ceil(32*8/5) = 52.
	secretChars = tokentext.Chars32
	// fingerprintChars is the length of the hex fingerprint: 2 per byte.
	fingerprintChars = 2 * fingerprintSize
	// TokenLen is the length of a token: "ovlsw1", the secret and the
	// fingerprint, with two separators.
	TokenLen = len(tokenPrefix+tokenVersion) + 1 + secretChars + 1 + fingerprintChars
)

// Token returns s as a join token. Anyone holding it can join the cluster
// and read its gossip: hand it over like a password.
func (s Secret) Token() string {
	return tokenPrefix + tokenVersion + tokenSep + tokentext.Encoding.EncodeToString(s[:]) + tokenSep + s.Fingerprint()
}

// Errors of ParseToken and Load, one per thing that can be wrong. None is
// worth retrying with the same input.
var (
	// ErrNotToken: the text does not start with "ovlsw" and a version.
	ErrNotToken = errors.New("not an ovlsw join token (those start with \"ovlsw1_\")")
	// ErrTokenVersion: a token of a format version this build does not
	// read, written by a newer ovlsw.
	ErrTokenVersion = errors.New("unknown join token version")
	// ErrTokenLength: the token has the wrong number of characters: cut
	// short, or pasted with something else.
	ErrTokenLength = errors.New("join token has the wrong length")
	// ErrTokenEncoding: a character outside the alphabet of its part.
	ErrTokenEncoding = errors.New("join token has a bad character")
	// ErrTokenFingerprint: the fingerprint at the end does not match the
	// secret before it: a character of either was mistyped.
	ErrTokenFingerprint = errors.New("join token fingerprint does not match its secret: mistyped")
)

// ParseToken returns the secret a token carries. It ignores whitespace
// anywhere and the case of letters. Its errors wrap one of ErrNotToken,
// ErrTokenVersion, ErrTokenLength, ErrTokenEncoding or ErrTokenFingerprint,
// and never contain the token.
func ParseToken(tok string) (Secret, error) {
	s, err := parseToken(tok)
	if err != nil {
		return Secret{}, fmt.Errorf("secret: parse token: %w", err)
	}
	return s, nil
}

func parseToken(tok string) (Secret, error) {
	tok = tokentext.Canonical(tok)
	head, rest, _ := strings.Cut(tok, tokenSep)
	version, ok := strings.CutPrefix(head, tokenPrefix)
	if !ok || version == "" || strings.Trim(version, "0123456789") != "" {
		return Secret{}, ErrNotToken
	}
	if version != tokenVersion {
		return Secret{}, fmt.Errorf("%w %q: this ovlsw reads version %s only (upgrade it)", ErrTokenVersion, tokentext.Shorten(version), tokenVersion)
	}
	if why := tokentext.NonASCII(tok); why != "" {
		return Secret{}, fmt.Errorf("%w: %s", ErrTokenEncoding, why)
	}
	if why := tokentext.Length(len(tok), TokenLen); why != "" {
		return Secret{}, fmt.Errorf("%w: %s", ErrTokenLength, why)
	}
	body, fp := rest[:secretChars], rest[secretChars+len(tokenSep):]
	var s Secret
	if why := tokentext.Decode32((*[Size]byte)(&s), body, "the secret"); why != "" {
		return Secret{}, fmt.Errorf("%w: %s", ErrTokenEncoding, why)
	}
	if rest[secretChars:secretChars+len(tokenSep)] != tokenSep {
		return Secret{}, fmt.Errorf("%w: no %q after the %d characters of the secret", ErrTokenEncoding, tokenSep, secretChars)
	}
	if !tokentext.IsHex(fp) {
		return Secret{}, fmt.Errorf("%w: the fingerprint is not hex (0-9, a-f)", ErrTokenEncoding)
	}
	if fp != s.Fingerprint() {
		return Secret{}, ErrTokenFingerprint
	}
	return s, nil
}
