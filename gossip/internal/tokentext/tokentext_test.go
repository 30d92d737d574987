package tokentext

import (
	"strings"
	"testing"
)

func TestDecode32(t *testing.T) {
	var in [32]byte
	for i := range in {
		in[i] = byte(i)
	}
	text := Encoding.EncodeToString(in[:])
	if len(text) != Chars32 {
		t.Fatalf("%d characters, want %d", len(text), Chars32)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"round trip", text, ""},
		{"not base32", text[:3] + "1" + text[4:], "character 4 of the key is not base32"},
		{"padding bits set", text[:Chars32-1] + "z", "the last character of the key cannot end one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out [32]byte
			got := Decode32(&out, tc.text, "the key")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("Decode32 = %q, want %q", got, tc.want)
			}
			if tc.want == "" && out != in {
				t.Errorf("decoded %x, want %x", out, in)
			}
		})
	}
}

func TestChecks(t *testing.T) {
	if got := Canonical(" AbC\tde\n\u212a"); got != "abcde\u212a" {
		t.Errorf("Canonical = %q", got)
	}
	if got := NonASCII("abc\u212ad"); got != "character 4 is not ASCII" {
		t.Errorf("NonASCII = %q", got)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{{10, ""}, {9, "9 characters, want 10 (cut short?)"}, {11, "11 characters, want 10 (pasted twice"}} {
		if got := Length(tc.n, 10); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Length(%d, 10) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if Shorten("12345678") != "1234..." || Shorten("12") != "12" || !IsHex("0a9f") || IsHex("0A") {
		t.Error("Shorten or IsHex")
	}
}
