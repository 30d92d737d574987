package join

import (
	"bytes"
	"crypto/hmac"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// fuzzNonceC is the joiner's nonce in the seeds and in FuzzResponse.
var fuzzNonceC = seq(0x40)

// requestSeeds are FuzzServe's seed corpus: a valid request, and one of
// each way a request can be wrong.
func requestSeeds() [][]byte {
	good := validRequest(fuzzNonceC[:])
	badMAC := bytes.Clone(good)
	badMAC[40] ^= 0x80
	v2 := bytes.Clone(good)
	v2[1] = 2
	return [][]byte{
		good,
		append(bytes.Clone(good), good...),
		badMAC,
		v2,
		append([]byte{6}, good[1:]...), // memberlist push/pull
		{10, 0, 0, 0, 0},               // memberlist encrypted
		{},
		{Magic},
		{Magic, Version},
		good[:requestSize-1],
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// FuzzServe feeds Serve arbitrary requests: it must never panic, and must
// answer with the secret only a request whose MAC is right for the
// server's key, and otherwise with at most one status byte of refusal and
// one OnRefused call.
func FuzzServe(f *testing.F) {
	for _, b := range requestSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		resp, whys := serveBytes(testServer(), req)
		valid := len(req) >= requestSize && req[0] == Magic && req[1] == Version &&
			hmac.Equal(req[headerSize+nonceSize:requestSize], requestMAC(&testKey, Version, req[headerSize:headerSize+nonceSize]))
		if valid {
			sec, err := readResponse(bytes.NewReader(resp), &testKey, req[headerSize:headerSize+nonceSize])
			if err != nil || sec != testSecret || len(resp) != 1+acceptSize || len(whys) != 0 {
				t.Fatalf("valid request: answer %x (%v, %v), refused %q", resp, sec, err, whys)
			}
			return
		}
		if len(resp) > 1 || len(resp) == 1 && resp[0] != statusRefused && resp[0] != statusVersion {
			t.Fatalf("invalid request answered %x", resp)
		}
		if len(whys) != 1 {
			t.Fatalf("invalid request: %d OnRefused calls %q, want 1", len(whys), whys)
		}
	})
}

// responseSeeds are FuzzResponse's seed corpus: a valid answer to a request
// with nonce fuzzNonceC, and one of each way an answer can be wrong.
func responseSeeds() [][]byte {
	good := validResponse(fuzzNonceC[:], seq(0x60))
	tampered := bytes.Clone(good)
	tampered[50] ^= 1
	return [][]byte{
		good,
		append(bytes.Clone(good), 0),
		tampered,
		validResponse(make([]byte, nonceSize), seq(0x60)), // for another request
		{statusRefused},
		{statusVersion},
		{statusOK},
		good[:len(good)-1],
		{},
		{13, 0x81, 0xa5, 'E', 'r', 'r', 'o', 'r'},
	}
}

// FuzzResponse feeds the joiner's parser arbitrary answers: it must never
// panic, must classify every error, and may return no secret but the one
// the test member seals.
func FuzzResponse(f *testing.F) {
	for _, b := range responseSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sec, err := readResponse(bytes.NewReader(b), &testKey, fuzzNonceC[:])
		if err != nil {
			if !isAny(err, ErrRefused, ErrNotJoinService, ErrProtocolVersion) {
				t.Fatalf("error %q wraps none of the answer errors", err)
			}
			if !sec.IsZero() {
				t.Fatalf("secret returned with error %v", err)
			}
			return
		}
		if sec != testSecret {
			t.Fatalf("answer %x opened to %x, not the test secret", b, sec[:])
		}
	})
}

// TestUpdateCorpus writes the seed corpus under testdata/fuzz with
// -update-corpus.
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	seeds := map[string][][]byte{}
	for _, s := range tokenSeeds() {
		seeds["FuzzParseToken"] = append(seeds["FuzzParseToken"], stringSeed(s))
	}
	for _, b := range requestSeeds() {
		seeds["FuzzServe"] = append(seeds["FuzzServe"], bytesSeed(b))
	}
	for _, b := range responseSeeds() {
		seeds["FuzzResponse"] = append(seeds["FuzzResponse"], bytesSeed(b))
	}
	for fz, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", fz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, body := range list {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// bytesSeed is a seed corpus file holding one []byte.
func bytesSeed(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
}
