package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestE2EKeyRotation: two nodes with encrypted gossip rotate to a new key
// through `ovlsw keys` without a restart: install everywhere, use
// everywhere, remove the old one everywhere; gossip keeps working
// (a binding announced after the rotation arrives) and only the new key is
// left.
func TestE2EKeyRotation(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	const oldKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	const newKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	keyFile := t.TempDir() + "/key"
	if err := os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, h1, "r1", "--vni", "42", "--subnet", "10.97.0.0/24", "--bind", ul1.Addr().String(), "--gossip-key-file", keyFile)
	n2 := startNode(t, h2, "r2", "--vni", "42", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--gossip-key-file", keyFile)
	for _, op := range []string{"install", "use"} {
		for _, n := range []*node{n1, n2} {
			n.cli("keys", op, newKey)
		}
	}
	for _, n := range []*node{n1, n2} {
		n.cli("keys", "remove", oldKey)
		if out := n.cli("keys", "list"); !strings.HasPrefix(out, newKey) || strings.Contains(out, oldKey) {
			t.Errorf("keys after rotation:\n%s", out)
		}
	}
	// Still gossiping: an endpoint attached now reaches the other node.
	c := mustNetns(t, bed, "kc")
	ep := n1.attach(c)
	if !poll(30*time.Second, func() bool {
		for _, e := range n2.fdb() {
			if e.MAC == ep.MAC && e.Origin == "gossip" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("binding announced after the rotation did not arrive:\n%s", n2.cli("fdb"))
	}
	if err := n1.cliErr("keys", "use", "c2hvcnQ="); err == nil || !strings.Contains(err.Error(), "32-byte") {
		t.Errorf("bad key: %v", err)
	}
}
