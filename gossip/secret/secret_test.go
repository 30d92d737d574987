package secret

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// testSecret is the secret 00 01 02 ... 1f, whose derived values the tests
// check against an independent computation (Python's hmac and hashlib).
var testSecret = func() Secret {
	var s Secret
	for i := range s {
		s[i] = byte(i)
	}
	return s
}()

const (
	testFingerprint = "3242e30ff26f9cca"
	testToken       = "ovlsw1_aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq_3242e30ff26f9cca"
)

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a.IsZero() || b.IsZero() {
		t.Fatalf("Generate gave %x and %x", a[:], b[:])
	}
	if !(Secret{}).IsZero() {
		t.Fatal("zero Secret not IsZero")
	}
}

func TestFingerprint(t *testing.T) {
	if got := testSecret.Fingerprint(); got != testFingerprint {
		t.Fatalf("Fingerprint() = %s, want %s", got, testFingerprint)
	}
	other := testSecret
	other[31] ^= 1
	if other.Fingerprint() == testFingerprint {
		t.Fatal("one bit of the secret does not change the fingerprint")
	}
}

// TestRedacted formats a Secret every way a log line might and finds only
// the fingerprint.
func TestRedacted(t *testing.T) {
	var slogText, slogJSON bytes.Buffer
	slog.New(slog.NewTextHandler(&slogText, nil)).Info("x", "secret", testSecret)
	slog.New(slog.NewJSONHandler(&slogJSON, nil)).Info("x", "secret", testSecret)
	outputs := map[string]string{
		"String":    testSecret.String(),
		"slog text": slogText.String(),
		"slog json": slogJSON.String(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%08b"} {
		outputs[verb] = fmt.Sprintf(verb, testSecret)
	}
	outputs["in a struct"] = fmt.Sprintf("%+v", struct{ S Secret }{testSecret})
	outputs["pointer"] = fmt.Sprintf("%v", &testSecret)
	raw := hex.EncodeToString(testSecret[:])
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(out, testFingerprint) {
				t.Errorf("%q lacks the fingerprint", out)
			}
			for _, leak := range []string{raw, strings.ToUpper(raw), "aaaqeayeaudaocaj", "1 2 3 4 5", "1, 2, 3"} {
				if strings.Contains(out, leak) {
					t.Errorf("%q contains the secret (%s)", out, leak)
				}
			}
		})
	}
}
