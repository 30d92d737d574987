package seal

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// specKey computes a key the way docs/encryption.md spells it, with the
// standard library alone, to check the package against the document.
func specKey(t *testing.T, senderPriv, receiverPub []byte, secret [32]byte, suite Suite, session uint32, epoch, gen uint64, senderIsPriv bool) []byte {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(senderPriv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(receiverPub)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	prk, _ := hkdf.Extract(sha256.New, append(shared, secret[:]...), []byte("ovlsw data v1"))
	info := []byte("ovlsw data v1 key")
	info = append(info, byte(suite))
	own, other := priv.PublicKey().Bytes(), receiverPub
	if senderIsPriv {
		info = append(append(info, own...), other...)
	} else {
		info = append(append(info, other...), own...)
	}
	info = binary.BigEndian.AppendUint32(info, session)
	info = binary.BigEndian.AppendUint64(info, epoch)
	info = binary.BigEndian.AppendUint64(info, gen)
	k, _ := hkdf.Expand(sha256.New, prk, string(info), 32)
	return k
}

// TestDeriveVectors pins the key derivation: the package agrees with the
// document's recipe, both ends of a pair derive the same directional key,
// the two directions differ, and the values are the committed vectors
// (private keys 32 x 0x01 and 32 x 0x02, secret 0x09 then zeros, session
// 0xa1a1a1a1, epoch 100, generation 0 and 1).
func TestDeriveVectors(t *testing.T) {
	a, b, _, _ := pair(t, AES256GCM)
	secret := [32]byte{9}
	ma, mb := a.Peer(addrB).mat.Load(), b.Peer(addrA).mat.Load()
	for _, tc := range []struct {
		suite Suite
		gen   uint64
		want  string
	}{
		{AES256GCM, 0, "1bc8b8ec579a5dc7cd235dbb8abb3b22b364120cc0277ab96ed586e70c5c076e"},
		{AES256GCM, 1, "b44f0d75889205ee4f17dc26c4a6743506e3308f2863ec77c5540ba67c05dd50"},
		{ChaCha20Poly1305, 0, "7ea774e07783327a36a6d73c5a96a5d0dc17558664bf6812d33afbdc5d055097"},
	} {
		id := keyID{out: true, suite: tc.suite, session: 0xa1a1a1a1, epoch: 100, gen: tc.gen}
		tx := ma.derive(id)
		id.out = false
		rx := mb.derive(id)
		if hex.EncodeToString(tx) != hex.EncodeToString(rx) {
			t.Fatalf("%v gen %d: sender derives %x, receiver %x", tc.suite, tc.gen, tx, rx)
		}
		spec := specKey(t, fixedKey(1), b.PublicKey(), secret, tc.suite, 0xa1a1a1a1, 100, tc.gen, true)
		if hex.EncodeToString(tx) != hex.EncodeToString(spec) {
			t.Fatalf("%v gen %d: package %x, document %x", tc.suite, tc.gen, tx, spec)
		}
		if got := hex.EncodeToString(tx); got != tc.want {
			t.Errorf("%v gen %d: key %s, vector %s", tc.suite, tc.gen, got, tc.want)
		}
		// The other direction (B sending to A) with the same session is
		// another key.
		back := mb.derive(keyID{out: true, suite: tc.suite, session: 0xa1a1a1a1, epoch: 100, gen: tc.gen})
		if hex.EncodeToString(back) == hex.EncodeToString(tx) {
			t.Errorf("%v gen %d: both directions derive one key", tc.suite, tc.gen)
		}
	}
}

// TestDatagramVector pins a whole sealed datagram, so that another
// implementation can check itself against it (docs/encryption.md).
func TestDatagramVector(t *testing.T) {
	_, _, tx, rx := pair(t, AES256GCM)
	pt, _ := hex.DecodeString("0800000000002a00" + "ffffffffffff020000000001080600")
	d := sealed(t, tx, pt, at(100))
	const want = "01640100a1a1a1a10000000000000000db3c54ea4899485fc1c6174b69e575373938b3e0da484ec1f66068064e1159d3b3474462b20396"
	got := hex.EncodeToString(d)
	if got != want {
		t.Errorf("sealed datagram\n got %s\nwant %s", got, want)
	}
	if back, v := rx.Open(d, at(100)); v != Opened || hex.EncodeToString(back) != hex.EncodeToString(pt) {
		t.Fatalf("Open: %v", v)
	}
}
