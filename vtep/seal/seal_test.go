package seal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, suite := range suites {
		for _, n := range []int{0, 1, 8, 22, 64, 1450 + 8, 9000} {
			t.Run(fmt.Sprintf("%v/%d", suite, n), func(t *testing.T) {
				_, _, tx, rx := pair(t, suite)
				pt := payload(n)
				// SealFrom: from a separate buffer.
				b := sealed(t, tx, pt, at(100))
				if bytes.Contains(b, pt) && n >= 8 {
					t.Fatal("plaintext visible in the sealed datagram")
				}
				got, v := rx.Open(b, at(100))
				if v != Opened || !bytes.Equal(got, pt) {
					t.Fatalf("Open = %v, equal %v", v, bytes.Equal(got, pt))
				}
				// Seal: in place, the plaintext between header and tag.
				b = make([]byte, HeaderLen+n+TagLen)
				copy(b[HeaderLen:], pt)
				if err := tx.Seal(b, at(100)); err != nil {
					t.Fatal(err)
				}
				got, v = rx.Open(b, at(100))
				if v != Opened || !bytes.Equal(got, pt) {
					t.Fatalf("Open (in place) = %v, equal %v", v, bytes.Equal(got, pt))
				}
			})
		}
	}
}

func TestRoundTripStatic(t *testing.T) {
	a := mustKeys(t, Config{Static: fixedKey(7)})
	b := mustKeys(t, Config{Static: fixedKey(7)})
	c := mustKeys(t, Config{Static: fixedKey(8)})
	pt := payload(100)
	d := sealed(t, a.Peer(addrB), pt, at(5))
	if got, v := b.Peer(addrA).Open(bytes.Clone(d), at(5)); v != Opened || !bytes.Equal(got, pt) {
		t.Fatalf("same network key: %v", v)
	}
	if _, v := c.Peer(addrA).Open(d, at(5)); v != Forged {
		t.Fatalf("other network key: %v, want Forged", v)
	}
}

// TestStaticCounterShared: in static mode every peer is sealed to under the
// same key, so the counter must be one for all of them.
func TestStaticCounterShared(t *testing.T) {
	a := mustKeys(t, Config{Static: fixedKey(7)})
	seen := map[uint64]bool{}
	for i := range 10 {
		to := addrB
		if i%2 == 0 {
			to = addrA
		}
		var h Header
		if err := h.Decode(sealed(t, a.Peer(to), payload(20), at(5))); err != nil {
			t.Fatal(err)
		}
		if seen[h.Counter] {
			t.Fatalf("counter %d used twice under the shared key", h.Counter)
		}
		seen[h.Counter] = true
	}
}

// TestTamper flips every bit of every byte of a sealed datagram, and cuts
// and extends it: nothing but the original opens.
func TestTamper(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			_, _, tx, rx := pair(t, suite)
			pt := payload(80)
			orig := sealed(t, tx, pt, at(100))
			// Each forgery a second later, so that the receiver's budget
			// of key derivations (forged sessions and generations cost
			// one) never runs dry.
			now := at(100)
			tick := func() Time { now.Nano += 1e9; return now }
			for i := range orig {
				for bit := range 8 {
					b := bytes.Clone(orig)
					b[i] ^= 1 << bit
					if _, v := rx.Open(b, tick()); v == Opened {
						t.Fatalf("byte %d bit %d flipped: opened", i, bit)
					}
				}
			}
			for _, n := range []int{0, 1, HeaderLen, Overhead - 1, Overhead, len(orig) - 1} {
				if _, v := rx.Open(bytes.Clone(orig[:n]), at(100)); v == Opened {
					t.Fatalf("cut to %d bytes: opened", n)
				}
			}
			if _, v := rx.Open(append(bytes.Clone(orig), 0), at(100)); v == Opened {
				t.Fatal("extended by a byte: opened")
			}
			// The header swapped onto another datagram's body.
			other := sealed(t, tx, pt, at(100))
			copy(other[:HeaderLen], orig[:HeaderLen])
			if _, v := rx.Open(other, at(100)); v == Opened {
				t.Fatal("header of one datagram on the body of another: opened")
			}
			if got, v := rx.Open(orig, at(100)); v != Opened || !bytes.Equal(got, pt) {
				t.Fatalf("original after the forgeries: %v", v)
			}
		})
	}
}

func TestOpenVerdicts(t *testing.T) {
	a, b, tx, rx := pair(t, AES256GCM)
	_ = a
	plain := payload(60) // a VXLAN datagram: first byte 0x08
	if _, v := rx.Open(plain, at(100)); v != NotSealed {
		t.Errorf("plaintext VXLAN: %v, want NotSealed", v)
	}
	d := sealed(t, tx, payload(60), at(100))
	if _, v := rx.Open(bytes.Clone(d), at(102)); v != Expired {
		t.Errorf("two epochs old: %v, want Expired", v)
	}
	if _, v := rx.Open(bytes.Clone(d), at(98)); v != Expired {
		t.Errorf("two epochs ahead: %v, want Expired", v)
	}
	if _, v := b.Peer(addrB).Open(bytes.Clone(d), at(100)); v != NoKey {
		t.Errorf("from a VTEP without a key: %v, want NoKey", v)
	}
	if _, v := rx.Open(bytes.Clone(d), at(100)); v != Opened {
		t.Fatalf("first: %v", v)
	}
	if _, v := rx.Open(bytes.Clone(d), at(100)); v != Replayed {
		t.Errorf("again: %v, want Replayed", v)
	}
	bad := bytes.Clone(d)
	bad[3] = 1 // reserved
	if _, v := rx.Open(bad, at(100)); v != Malformed {
		t.Errorf("reserved byte set: %v, want Malformed", v)
	}
	if err := b.SetPeerKey(addrA, nil); err != nil {
		t.Fatal(err)
	}
	if _, v := rx.Open(sealed(t, tx, payload(60), at(100)), at(100)); v != NoKey {
		t.Errorf("key forgotten: %v, want NoKey", v)
	}
	if err := b.Peer(addrB).Seal(make([]byte, 100), at(100)); !errors.Is(err, ErrNoKey) {
		t.Errorf("Seal without a key: %v, want ErrNoKey", err)
	}
}

// TestClusterSecret: a node with another cluster secret (not a member)
// derives other keys, and replacing the secret re-keys.
func TestClusterSecret(t *testing.T) {
	a, b, tx, rx := pair(t, AES256GCM)
	stranger := mustKeys(t, Config{Private: fixedKey(3), Secret: [32]byte{10}})
	_ = stranger.SetPeerKey(addrA, a.PublicKey())
	if err := a.SetPeerKey(addrC, stranger.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, v := stranger.Peer(addrA).Open(sealed(t, a.Peer(addrC), payload(50), at(1)), at(1)); v != Forged {
		t.Errorf("stranger opens a member's datagram: %v, want Forged", v)
	}
	if _, v := a.Peer(addrC).Open(sealed(t, stranger.Peer(addrA), payload(50), at(1)), at(1)); v != Forged {
		t.Errorf("member opens a stranger's datagram: %v, want Forged", v)
	}
	a.SetSecret([32]byte{11})
	if _, v := rx.Open(sealed(t, tx, payload(50), at(1)), at(1)); v != Forged {
		t.Errorf("after the sender's secret changed: %v, want Forged", v)
	}
	b.SetSecret([32]byte{11})
	if _, v := rx.Open(sealed(t, tx, payload(50), at(1)), at(1)); v != Opened {
		t.Errorf("after both secrets changed: %v, want Opened", v)
	}
}

// TestCounterUnique seals from many goroutines at once: no counter of a
// key is used twice.
func TestCounterUnique(t *testing.T) {
	_, _, tx, _ := pair(t, AES256GCM)
	const workers, each = 8, 500
	var mu sync.Mutex
	seen := make(map[uint64]bool, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			b := make([]byte, Overhead+30)
			for range each {
				if err := tx.Seal(b, at(7)); err != nil {
					t.Error(err)
					return
				}
				c := binary.BigEndian.Uint64(b[8:16])
				mu.Lock()
				if seen[c] {
					t.Errorf("counter %d used twice", c)
				}
				seen[c] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Fatalf("%d counters, want %d", len(seen), workers*each)
	}
}

// TestGenerationRekey: when a generation's counters run out, the sender
// moves to the next generation (a new key), the counter goes on rising, and
// the receiver follows.
func TestGenerationRekey(t *testing.T) {
	_, _, tx, rx := pair(t, ChaCha20Poly1305)
	d := sealed(t, tx, payload(40), at(3))
	if _, v := rx.Open(d, at(3)); v != Opened {
		t.Fatal(v)
	}
	k0 := tx.tx.cur.Load()
	k0.next.Store(1<<GenBits - 1) // one counter left in generation 0
	var counters []uint64
	for range 3 {
		d := sealed(t, tx, payload(40), at(3))
		var h Header
		_ = h.Decode(d)
		counters = append(counters, h.Counter)
		if _, v := rx.Open(d, at(3)); v != Opened {
			t.Fatalf("counter %#x: %v", h.Counter, v)
		}
	}
	want := []uint64{1<<GenBits - 1, 1 << GenBits, 1<<GenBits + 1}
	if fmt.Sprint(counters) != fmt.Sprint(want) {
		t.Fatalf("counters %#x, want %#x", counters, want)
	}
	if k1 := tx.tx.cur.Load(); k1 == k0 || k1.gen != 1 {
		t.Fatalf("generation %d after the rollover, want a new key of generation 1", k1.gen)
	}
}

// TestExhausted: past the last generation the sender refuses to seal;
// counters never wrap.
func TestExhausted(t *testing.T) {
	_, _, tx, _ := pair(t, AES256GCM)
	b := make([]byte, Overhead+10)
	if err := tx.Seal(b, at(3)); err != nil {
		t.Fatal(err)
	}
	k := tx.tx.cur.Load()
	last := &txKey{mat: k.mat, epoch: k.epoch, gen: MaxCounter >> GenBits, hdr: k.hdr, aead: k.aead}
	last.next.Store(1 << GenBits)
	tx.tx.cur.Store(last)
	if err := tx.Seal(b, at(3)); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Seal past MaxCounter: %v, want ErrExhausted", err)
	}
	if err := tx.Seal(b, at(4)); err != nil {
		t.Fatalf("next epoch: %v", err)
	}
}

// TestClockStepsBack: a sender whose clock goes back keeps its newest key
// and counter, so no key restarts its counter.
func TestClockStepsBack(t *testing.T) {
	_, _, tx, rx := pair(t, AES256GCM)
	var last uint64
	var lastKey *txKey
	for i, e := range []uint64{10, 11, 10, 9, 11, 12} {
		d := sealed(t, tx, payload(30), at(e))
		var h Header
		_ = h.Decode(d)
		k := tx.tx.cur.Load()
		if k.epoch < 11 && i >= 1 {
			t.Fatalf("step %d: epoch went back to %d", i, k.epoch)
		}
		if k == lastKey && h.Counter <= last {
			t.Fatalf("step %d: counter %d after %d under the same key", i, h.Counter, last)
		}
		last, lastKey = h.Counter, k
		if _, v := rx.Open(d, at(k.epoch)); v != Opened {
			t.Fatalf("step %d: %v", i, v)
		}
	}
}

// TestRekeyOverlap: around an epoch boundary both sides accept the
// neighbour epochs, so datagrams sealed just before a rekey open just after
// it, in either order, and nothing is lost while the two clocks disagree.
func TestRekeyOverlap(t *testing.T) {
	_, _, tx, rx := pair(t, AES256GCM)
	old := sealed(t, tx, payload(30), at(50)) // sealed in epoch 50
	newer := sealed(t, tx, payload(30), at(51))
	// The receiver is still in 50 when the sender has moved on.
	if _, v := rx.Open(newer, at(50)); v != Opened {
		t.Fatalf("epoch 51 datagram at receiver epoch 50: %v", v)
	}
	// A datagram of epoch 50 still in flight when the receiver moved on.
	if _, v := rx.Open(old, at(51)); v != Opened {
		t.Fatalf("epoch 50 datagram at receiver epoch 51: %v", v)
	}
	if _, v := rx.Open(sealed(t, tx, payload(30), at(51)), at(53)); v != Expired {
		t.Fatalf("epoch 51 datagram at receiver epoch 53: %v, want Expired", v)
	}
	if _, v := rx.Open(sealed(t, tx, payload(30), at(54)), at(53)); v != Opened {
		t.Fatal("epoch 54 at 53")
	}
}

// TestForgedSessions: datagrams under made-up sessions cost derivations
// only within the budget, never evict a real key, and the real sender's
// traffic keeps opening.
func TestForgedSessions(t *testing.T) {
	_, _, tx, rx := pair(t, AES256GCM)
	if _, v := rx.Open(sealed(t, tx, payload(30), at(8)), at(8)); v != Opened {
		t.Fatal(v)
	}
	for i := range 100 {
		d := sealed(t, tx, payload(30), at(8))
		binary.BigEndian.PutUint32(d[4:8], uint32(i)) // another session
		if _, v := rx.Open(d, at(8)); v != Forged {
			t.Fatalf("forged session %d: %v", i, v)
		}
	}
	if _, v := rx.Open(sealed(t, tx, payload(30), at(8)), at(8)); v != Opened {
		t.Fatalf("real sender after forgeries: %v", v)
	}
}

// TestNewSession: a restarted sender (new session, counter from 0 again)
// is accepted, and the replay window of each session is its own.
func TestNewSession(t *testing.T) {
	a, _, tx, rx := pair(t, AES256GCM)
	for range 3 {
		if _, v := rx.Open(sealed(t, tx, payload(30), at(8)), at(8)); v != Opened {
			t.Fatal(v)
		}
	}
	a2 := mustKeys(t, Config{Private: fixedKey(1), Secret: [32]byte{9}, Session: 0x12345678})
	_ = a2.SetPeerKey(addrB, mustPeerPub(t, rx))
	_ = a
	if _, v := rx.Open(sealed(t, a2.Peer(addrB), payload(30), at(8)), at(8)); v != Opened {
		t.Fatalf("restarted sender: %v", v)
	}
}

func mustPeerPub(t *testing.T, rx *Peer) []byte {
	t.Helper()
	return rx.keys.PublicKey()
}
