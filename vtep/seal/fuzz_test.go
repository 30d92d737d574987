package seal

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzOpen feeds Open arbitrary datagrams from a peer with a known key. It
// must never panic, and must open nothing but what the sender sealed: a
// fuzzer cannot forge a tag, so anything Opened must be one of the sealed
// seeds, and its plaintext must be that seed's. The seed corpus is in
// testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	_, _, tx, _ := pair(f, AES256GCM)
	f.Add(sealed(f, tx, payload(60), at(100)))
	f.Add(payload(60))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, rx := pair(t, AES256GCM)
		in := bytes.Clone(b)
		pt, v := rx.Open(b, at(100))
		if v != Opened {
			return
		}
		if len(pt) != len(in)-Overhead {
			t.Fatalf("opened %d bytes from a %d-byte datagram", len(pt), len(in))
		}
		// Only a datagram tx sealed can open; the seeds' plaintexts are
		// payload(n).
		if !bytes.Equal(pt, payload(len(pt))) {
			t.Fatalf("opened a datagram nobody sealed: %x", in)
		}
		if c := binary.BigEndian.Uint64(in[8:16]); c > MaxCounter {
			t.Fatalf("opened counter %d over the limit", c)
		}
	})
}
