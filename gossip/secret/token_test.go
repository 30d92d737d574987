package secret

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/gossip/internal/tokentext"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

func TestToken(t *testing.T) {
	if got := testSecret.Token(); got != testToken {
		t.Fatalf("Token() =\n%s\nwant\n%s", got, testToken)
	}
	if len(testToken) != TokenLen {
		t.Fatalf("TokenLen = %d, token has %d", TokenLen, len(testToken))
	}
	for range 100 {
		s, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		tok := s.Token()
		if len(tok) != TokenLen || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("token %q: not %d characters of [a-z0-9_]", tok, TokenLen)
		}
		got, err := ParseToken(tok)
		if err != nil || got != s {
			t.Fatalf("ParseToken(Token()) = %v, %v; want %v", got, err, s)
		}
	}
}

// TestParseTokenLenient accepts what copying and pasting do to a token.
func TestParseTokenLenient(t *testing.T) {
	for _, tc := range []struct {
		name, tok string
	}{
		{"canonical", testToken},
		{"upper case", strings.ToUpper(testToken)},
		{"surrounding space", "  \t" + testToken + "\r\n"},
		{"wrapped", testToken[:40] + "\n  " + testToken[40:]},
		{"spaces in groups", strings.Join(strings.SplitAfter(testToken, "e"), " ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.tok)
			if err != nil || got != testSecret {
				t.Fatalf("ParseToken = %v, %v; want %v", got, err, testSecret)
			}
		})
	}
}

func TestParseTokenErrors(t *testing.T) {
	prefix, body, fp := testToken[:7], testToken[7:7+secretChars], testToken[len(testToken)-fingerprintChars:]
	typo := []byte(body)
	typo[10] = 'a' + (typo[10]-'a'+1)%26 // another letter
	for _, tc := range []struct {
		name, tok string
		want      error
		says      string
	}{
		{"empty", "", ErrNotToken, "ovlsw1_"},
		{"other text", "hello world", ErrNotToken, ""},
		{"other prefix", "wgsw1_" + body + "_" + fp, ErrNotToken, ""},
		{"no version", "ovlsw_" + body + "_" + fp, ErrNotToken, ""},
		{"letter version", "ovlswx_" + body + "_" + fp, ErrNotToken, ""},
		{"base64 key", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=", ErrNotToken, ""},
		{"version 2", "ovlsw2_" + body + "_" + fp, ErrTokenVersion, `"2"`},
		{"version 10", "ovlsw10_" + body + "_" + fp, ErrTokenVersion, "reads version 1"},
		{"long version", "ovlsw123456789_" + body, ErrTokenVersion, `"1234..."`},
		{"version only", "ovlsw1", ErrTokenLength, "6 characters, want 76 (cut short?)"},
		{"truncated secret", testToken[:40], ErrTokenLength, "40 characters, want 76"},
		{"doubled", testToken + testToken, ErrTokenLength, "pasted twice"},
		{"dot separators", strings.ReplaceAll(testToken, "_", "."), ErrNotToken, ""},
		{"bad character", prefix + "0" + body[1:] + "_" + fp, ErrTokenEncoding, "character 1 "},
		{"base64 character", prefix + body[:51] + "-_" + fp, ErrTokenEncoding, "character 52 "},
		{"misplaced separator", prefix + body[:51] + "_a" + fp, ErrTokenEncoding, "character 52 "},
		{"other separator", prefix + body + "." + fp, ErrTokenEncoding, `no "_" after`},
		{"non-canonical last", prefix + body[:51] + "r_" + fp, ErrTokenEncoding, "last character of the secret cannot end"},
		{"non-ascii", prefix + body[:51] + "\u212a_" + fp, ErrTokenEncoding, "character 59 is not ASCII"},
		{"invalid utf-8", prefix + body + "_\xff" + fp[1:], ErrTokenEncoding, "character 61 is not ASCII"},
		{"no fingerprint", prefix + body, ErrTokenLength, "59 characters"},
		{"empty fingerprint", prefix + body + "_", ErrTokenLength, "60 characters"},
		{"truncated fingerprint", testToken[:len(testToken)-3], ErrTokenLength, "73 characters"},
		{"long fingerprint", testToken + "0", ErrTokenLength, "77 characters"},
		{"fingerprint not hex", prefix + body + "_" + fp[:15] + "g", ErrTokenEncoding, "not hex"},
		{"typo in secret", prefix + string(typo) + "_" + fp, ErrTokenFingerprint, "mistyped"},
		{"typo in fingerprint", testToken[:len(testToken)-1] + "b", ErrTokenFingerprint, "mistyped"},
		{"other cluster's fingerprint", prefix + body + "_0123456789abcdef", ErrTokenFingerprint, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseToken(tc.tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseToken = %v, %v; want an error wrapping %q", s, err, tc.want)
			}
			if !s.IsZero() {
				t.Errorf("secret %v returned with the error", s)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "secret: parse token: ") || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not say %q", msg, tc.says)
			}
			if strings.Contains(msg, body[:8]) {
				t.Errorf("error %q repeats the secret", msg)
			}
			if testing.Verbose() {
				t.Log(msg)
			}
		})
	}
}

// tokenSeeds are FuzzParseToken's seed corpus: valid tokens and one of each
// error.
func tokenSeeds() []string {
	var s Secret
	for i := range s {
		s[i] = 0xff
	}
	body := testToken[7 : 7+secretChars]
	return []string{
		testToken,
		(Secret{}).Token(),
		s.Token(),
		strings.ToUpper(testToken),
		" " + testToken[:30] + "\n" + testToken[30:] + "\n",
		"",
		"ovlsw",
		"ovlsw1",
		"ovlsw1_",
		"ovlsw2_" + body + "_" + testFingerprint,
		testToken[:40],
		testToken[:len(testToken)-1],
		testToken[:len(testToken)-1] + "0",
		"ovlsw1_" + body[:51] + "r_" + testFingerprint,
		"ovlsw1_" + body + "_" + testFingerprint[:15] + "z",
		"ovlsw1_" + body[:51] + "\u212a_" + testFingerprint,
	}
}

// FuzzParseToken checks that ParseToken classifies every error, and that a
// token it accepts is the canonical spelling of what it returns.
func FuzzParseToken(f *testing.F) {
	for _, s := range tokenSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := ParseToken(tok)
		if err != nil {
			known := []error{ErrNotToken, ErrTokenVersion, ErrTokenLength, ErrTokenEncoding, ErrTokenFingerprint}
			if !isAny(err, known) {
				t.Fatalf("error %q wraps none of the token errors", err)
			}
			if !s.IsZero() {
				t.Fatalf("secret returned with error %v", err)
			}
			return
		}
		if got := s.Token(); got != tokentext.Canonical(tok) {
			t.Fatalf("accepted %q, which is not the canonical %q", tok, got)
		}
	})
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestUpdateCorpus writes the seed corpus under testdata/fuzz with
// -update-corpus.
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseToken")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range tokenSeeds() {
		body := fmt.Sprintf("go test fuzz v1\nstring(%+q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
