package join

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/gossip/internal/tokentext"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

// The test key is 00 01 ... 1f, the test cluster secret 20 21 ... 3f.
var (
	testKey     = seq(0x00)
	testSecret  = seq(0x20)
	testCluster = "070fe1acae34b43d"
	testTok     = Token{Key: testKey, Cluster: testCluster}
	// testToken is testTok spelled out, as in the notes in token.go.
	testToken = "ovlswjoin1_aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq_070fe1acae34b43d_5b0111f3"
)

// seq returns the secret first, first+1, ..., first+31.
func seq(first byte) secret.Secret {
	var s secret.Secret
	for i := range s {
		s[i] = first + byte(i)
	}
	return s
}

func TestTokenString(t *testing.T) {
	if got := testSecret.Fingerprint(); got != testCluster {
		t.Fatalf("test cluster fingerprint = %s, want %s", got, testCluster)
	}
	if got := testTok.String(); got != testToken {
		t.Fatalf("String() =\n%s\nwant\n%s", got, testToken)
	}
	if len(testToken) != TokenLen {
		t.Fatalf("TokenLen = %d, token has %d", TokenLen, len(testToken))
	}
	for range 100 {
		j, err := secret.Generate()
		if err != nil {
			t.Fatal(err)
		}
		s, err := secret.Generate()
		if err != nil {
			t.Fatal(err)
		}
		tok := Token{Key: j, Cluster: s.Fingerprint()}
		str := tok.String()
		if len(str) != TokenLen || strings.Trim(str, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("token %q: not %d characters of [a-z0-9_]", str, TokenLen)
		}
		got, err := ParseToken(str)
		if err != nil || got != tok {
			t.Fatalf("ParseToken(String()) = %v, %v; want %v", got, err, tok)
		}
		if _, err := secret.ParseToken(str); !errors.Is(err, secret.ErrNotToken) {
			t.Fatalf("secret.ParseToken of a join token = %v, want ErrNotToken", err)
		}
	}
}

// TestTokenLog checks that log/slog shows fingerprints, not the key.
func TestTokenLog(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("token", "tok", testTok)
	out := buf.String()
	if strings.Contains(out, testToken[11:30]) || !strings.Contains(out, "tok.cluster="+testCluster) || !strings.Contains(out, "tok.key="+testKey.Fingerprint()) {
		t.Fatalf("slog wrote %q", out)
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
		{"wrapped", testToken[:60] + "\n  " + testToken[60:]},
		{"spaces in groups", strings.Join(strings.SplitAfter(testToken, "e"), " ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.tok)
			if err != nil || got != testTok {
				t.Fatalf("ParseToken = %v, %v; want %v", got, err, testTok)
			}
		})
	}
}

func TestParseTokenErrors(t *testing.T) {
	const prefix = "ovlswjoin1_"
	key := testToken[len(prefix) : len(prefix)+keyChars]
	cluster, sum := testCluster, testToken[len(testToken)-checksumChars:]
	typo := []byte(key)
	typo[10] = 'a' + (typo[10]-'a'+1)%26 // another letter
	for _, tc := range []struct {
		name, tok string
		want      error
		says      string
	}{
		{"empty", "", ErrNotToken, "ovlswjoin1_"},
		{"other text", "hello world", ErrNotToken, ""},
		{"secret token", testSecret.Token(), ErrNotToken, `cluster secret token ("ovlsw1_")`},
		{"future secret token", "ovlsw2_" + key, ErrNotToken, `cluster secret token ("ovlsw2_")`},
		{"no version", "ovlswjoin_" + key + "_" + cluster + "_" + sum, ErrNotToken, ""},
		{"letter version", "ovlswjoinx_" + key + "_" + cluster + "_" + sum, ErrNotToken, ""},
		{"version 2", "ovlswjoin2_" + key + "_" + cluster + "_" + sum, ErrTokenVersion, `"2"`},
		{"long version", "ovlswjoin123456789_" + key, ErrTokenVersion, `"1234..."`},
		{"version only", "ovlswjoin1", ErrTokenLength, "10 characters, want 89 (cut short?)"},
		{"truncated", testToken[:40], ErrTokenLength, "40 characters"},
		{"no checksum", prefix + key + "_" + cluster, ErrTokenLength, "80 characters"},
		{"doubled", testToken + testToken, ErrTokenLength, "pasted twice"},
		{"long checksum", testToken + "0", ErrTokenLength, "90 characters"},
		{"dot separators", strings.ReplaceAll(testToken, "_", "."), ErrNotToken, ""},
		{"bad character", prefix + "0" + key[1:] + "_" + cluster + "_" + sum, ErrTokenEncoding, "character 1 of the key"},
		{"base64 character", prefix + key[:51] + "-_" + cluster + "_" + sum, ErrTokenEncoding, "character 52 of the key"},
		{"non-canonical last", prefix + key[:51] + "r_" + cluster + "_" + sum, ErrTokenEncoding, "last character of the key"},
		{"other separator", prefix + key + "." + cluster + "_" + sum, ErrTokenEncoding, "characters 64 and 81"},
		{"misplaced separator", prefix + key + "_" + cluster[:15] + "_0" + sum, ErrTokenEncoding, "characters 64 and 81"},
		{"non-ascii", prefix + key[:51] + "\u212a_" + cluster + "_" + sum, ErrTokenEncoding, "character 63 is not ASCII"},
		{"cluster not hex", prefix + key + "_" + cluster[:15] + "g_" + sum, ErrTokenEncoding, "cluster fingerprint is not hex"},
		{"checksum not hex", prefix + key + "_" + cluster + "_" + sum[:7] + "x", ErrTokenEncoding, "checksum is not hex"},
		{"typo in key", prefix + string(typo) + "_" + cluster + "_" + sum, ErrTokenChecksum, "mistyped"},
		{"typo in cluster", prefix + key + "_" + "170fe1acae34b43d" + "_" + sum, ErrTokenChecksum, "mistyped"},
		{"typo in checksum", testToken[:len(testToken)-1] + "4", ErrTokenChecksum, "mistyped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.tok)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseToken = %v, %v; want an error wrapping %q", got, err, tc.want)
			}
			if got != (Token{}) {
				t.Errorf("token %v returned with the error", got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "join: parse token: ") || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not say %q", msg, tc.says)
			}
			if strings.Contains(msg, key[:8]) {
				t.Errorf("error %q repeats the key", msg)
			}
			if testing.Verbose() {
				t.Log(msg)
			}
		})
	}
}

// tokenSeeds are FuzzParseToken's seed corpus: valid tokens and one of
// each error.
func tokenSeeds() []string {
	const prefix = "ovlswjoin1_"
	key := testToken[len(prefix) : len(prefix)+keyChars]
	sum := testToken[len(testToken)-checksumChars:]
	return []string{
		testToken,
		Token{}.String(),
		Token{Key: seq(0xe0), Cluster: "ffffffffffffffff"}.String(),
		strings.ToUpper(testToken),
		" " + testToken[:30] + "\n" + testToken[30:] + "\n",
		testSecret.Token(),
		"",
		"ovlswjoin",
		"ovlswjoin1",
		"ovlswjoin1_",
		"ovlswjoin2_" + key + "_" + testCluster + "_" + sum,
		testToken[:40],
		testToken[:len(testToken)-1],
		testToken[:len(testToken)-1] + "0",
		prefix + key[:51] + "r_" + testCluster + "_" + sum,
		prefix + key + "_" + testCluster[:15] + "z_" + sum,
		prefix + key[:51] + "\u212a_" + testCluster + "_" + sum,
	}
}

// FuzzParseToken checks that ParseToken classifies every error, and that a
// token it accepts is the canonical spelling of what it returns.
func FuzzParseToken(f *testing.F) {
	for _, s := range tokenSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !isAny(err, ErrNotToken, ErrTokenVersion, ErrTokenLength, ErrTokenEncoding, ErrTokenChecksum) {
				t.Fatalf("error %q wraps none of the token errors", err)
			}
			if tok != (Token{}) {
				t.Fatalf("token returned with error %v", err)
			}
			return
		}
		if got := tok.String(); got != tokentext.Canonical(s) {
			t.Fatalf("accepted %q, which is not the canonical %q", s, got)
		}
	})
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// stringSeed is a seed corpus file holding one string.
func stringSeed(s string) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\nstring(%+q)\n", s)
}
