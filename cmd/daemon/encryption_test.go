package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/gossip/secret"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/seal"
	"github.com/ovlsw/ovlsw/vtep/vteptest"
)

// TestNetworksEncrypted: an encrypted network gets 32 bytes less MTU, may
// not have a group, and a plain network of the same name is not turned
// into an encrypted one by a later create (nor the reverse downgraded).
func TestNetworksEncrypted(t *testing.T) {
	r, store, _, _ := newTestNetworks()
	if err := r.create(gossip.Network{Name: "sealed", VNI: 7, Encrypted: true}); err != nil {
		t.Fatal(err)
	}
	if n := store.nets["sealed"]; n.MTU != 1450-seal.Overhead || !n.Encrypted {
		t.Errorf("stored %+v, want MTU %d and encrypted", n, 1450-seal.Overhead)
	}
	if err := r.create(gossip.Network{Name: "sealed", VNI: 7}); err != nil {
		t.Errorf("a plain create of an encrypted network (a node without --encrypted joining): %v", err)
	}
	if n := store.nets["sealed"]; !n.Encrypted {
		t.Error("the network lost its encryption")
	}
	if err := r.create(gossip.Network{Name: "plain", VNI: 8}); err != nil {
		t.Fatal(err)
	}
	if err := r.create(gossip.Network{Name: "plain", VNI: 8, Encrypted: true}); err == nil {
		t.Error("an encrypted create of a plain network was taken as the same network")
	}
	err := r.create(gossip.Network{Name: "mc", VNI: 9, Encrypted: true, Group: netip.MustParseAddr("239.1.1.1")})
	if err == nil || !strings.Contains(err.Error(), "multicast group") {
		t.Errorf("encrypted with a group: %v", err)
	}
	if err := r.create(gossip.Network{Name: "big", VNI: 10, Encrypted: true, MTU: 1450}); err == nil {
		t.Error("an encrypted network with the plain MTU was accepted")
	}
	// A network from gossip with a larger MTU is capped.
	r.apply([]gossip.Network{{Name: "far", VNI: 11, MTU: 9000, Encrypted: true}})
	if n, _ := r.get("far"); n.MTU != 1450-seal.Overhead {
		t.Errorf("gossiped encrypted network has MTU %d, want %d", n.MTU, 1450-seal.Overhead)
	}
}

type fakeKeySetter struct {
	mu   sync.Mutex
	keys [][]byte
}

func (f *fakeKeySetter) SetDataKey(key []byte, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, bytes.Clone(key))
	return nil
}

func (f *fakeKeySetter) last() ([]byte, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keys) == 0 {
		return nil, 0
	}
	return f.keys[len(f.keys)-1], len(f.keys)
}

// TestEncryptionOwner: the key pair is made once, mode 0600, and taken
// back; the switch is told the encrypted VNIs; the public key is published
// while a network is encrypted and withdrawn after; status shows no key.
func TestEncryptionOwner(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "node.datakey")
	net := vteptest.NewNetwork()
	sw, err := vtep.New(vtep.Config{Conn: net.Listen(netip.MustParseAddrPort("192.0.2.1:4789")), FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	cfg := encryptionConfig{KeyFile: keyFile, Secret: secret.Secret{1}, Log: slog.New(slog.DiscardHandler)}
	e, err := newEncryption(cfg, sw)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	again, err := newEncryption(cfg, sw)
	if err != nil || !bytes.Equal(again.pub, e.pub) {
		t.Fatalf("the key pair was not taken back: %v", err)
	}
	ks := &fakeKeySetter{}
	e.setAgent(ks)
	e.networkChanged(gossip.Network{}, gossip.Network{Name: "plain", VNI: 5})
	if _, n := ks.last(); n != 0 || len(sw.Encrypted()) != 0 {
		t.Fatal("published or encrypted with no encrypted network")
	}
	e.networkChanged(gossip.Network{}, gossip.Network{Name: "sealed", VNI: 6, Encrypted: true})
	waitForKey(t, ks, e.pub)
	if got := sw.Encrypted(); !got[6] || len(got) != 1 {
		t.Errorf("switch encrypts %v, want VNI 6", got)
	}
	st := e.status()
	b, _ := json.Marshal(st)
	raw, _ := secret.Load(keyFile)
	for _, k := range [][]byte{raw[:], e.pub} {
		if bytes.Contains(b, k) || strings.Contains(string(b), string(mustB64(k))) {
			t.Errorf("status shows a key: %s", b)
		}
	}
	if st.Mode != "x25519" || len(st.Networks) != 1 || !st.Published {
		t.Errorf("status %+v", st)
	}
	e.networkChanged(gossip.Network{Name: "sealed", VNI: 6, Encrypted: true}, gossip.Network{})
	waitForKey(t, ks, nil)
	if len(sw.Encrypted()) != 0 {
		t.Error("switch still encrypts after the network went")
	}
}

func waitForKey(t *testing.T, ks *fakeKeySetter, want []byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, n := ks.last(); n > 0 && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("data key %x never published", want)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

func mustB64(b []byte) []byte {
	out, _ := json.Marshal(b) // base64, as JSON would write bytes
	return bytes.Trim(out, `"`)
}

// TestEncryptionStatic: a network key file gives static mode, with no
// public key to publish.
func TestEncryptionStatic(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "net.key")
	if err := os.WriteFile(kf, []byte("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	net := vteptest.NewNetwork()
	sw, err := vtep.New(vtep.Config{Conn: net.Listen(netip.MustParseAddrPort("192.0.2.1:4789")), FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	e, err := newEncryption(encryptionConfig{NetworkKeyFile: kf, Log: slog.New(slog.DiscardHandler)}, sw)
	if err != nil {
		t.Fatal(err)
	}
	if e.pub != nil || !e.keys.Static() || e.status().Mode != "static network key" {
		t.Errorf("not static mode: %+v", e.status())
	}
	if _, err := newEncryption(encryptionConfig{NetworkKeyFile: filepath.Join(dir, "missing")}, sw); err == nil {
		t.Error("a missing network key file was accepted")
	}
}
