// Package tokentext holds what the two one-line token formats of gossip
// share (a cluster secret's, package secret, and a join token, package
// join): the base32 spelling of a 32-byte value, the canonical form a
// pasted token is read in, and the checks of its characters and length.
// Each returns what is wrong in words; the caller wraps that in its own
// sentinel error.
package tokentext

import (
	"encoding/base32"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Alphabet is lowercase RFC 4648 base32: no 0, 1, 8 or 9 to misread.
const Alphabet = "abcdefghijklmnopqrstuvwxyz234567"

// Encoding is base32 in Alphabet, without padding.
var Encoding = base32.NewEncoding(Alphabet).WithPadding(base32.NoPadding)

// Chars32 is the length of the base32 of 32 bytes: ceil(32*8/5) = 52.
const Chars32 = (32*8 + 4) / 5

// Canonical drops whitespace from tok and lowers ASCII letters (only
// those: strings.ToLower would turn the Kelvin sign into a "k").
func Canonical(tok string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return -1
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		}
		return r
	}, tok)
}

// Shorten cuts a version number someone may have typed at length.
func Shorten(v string) string {
	if len(v) > 4 {
		return v[:4] + "..."
	}
	return v
}

// NonASCII says which character of tok is not ASCII, or "" if all are.
func NonASCII(tok string) string {
	if i := strings.IndexFunc(tok, func(r rune) bool { return r >= utf8.RuneSelf }); i >= 0 {
		return fmt.Sprintf("character %d is not ASCII", utf8.RuneCountInString(tok[:i])+1)
	}
	return ""
}

// Length says why a token of n characters is not want long, or "" if it
// is.
func Length(n, want int) string {
	if n == want {
		return ""
	}
	hint := "cut short?"
	if n > want {
		hint = "pasted twice, or something else pasted with it?"
	}
	return fmt.Sprintf("%d characters, want %d (%s)", n, want, hint)
}

// Decode32 decodes text, Chars32 characters of base32, into dst, or says
// what is wrong with it, naming part ("the key", "the secret").
func Decode32(dst *[32]byte, text, part string) string {
	if i := strings.IndexFunc(text, func(r rune) bool { return !strings.ContainsRune(Alphabet, r) }); i >= 0 {
		return fmt.Sprintf("character %d of %s is not base32 (a-z, 2-7)", i+1, part)
	}
	if n, err := Encoding.Decode(dst[:], []byte(text)); err != nil || n != len(dst) || Encoding.EncodeToString(dst[:]) != text {
		// Only the last character can get here: its low 4 bits are padding
		// and must be zero.
		return fmt.Sprintf("the last character of %s cannot end one (mistyped?)", part)
	}
	return ""
}

// IsHex reports whether s is lowercase hex digits only.
func IsHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }
