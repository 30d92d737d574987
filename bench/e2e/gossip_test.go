package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// threeNodes starts three hosts on one underlay segment, each running
// ovlsw with a host port on VNI 42 (10.91.0.i), joined by gossip only.
func threeNodes(t *testing.T, extra ...string) (*testbed.Bed, []*testbed.Netns, []*node, []netip.Prefix) {
	t.Helper()
	bed := testbed.New(t)
	var hosts []*testbed.Netns
	for i := range 3 {
		hosts = append(hosts, mustNetns(t, bed, fmt.Sprintf("g%d", i+1)))
	}
	ul, err := bed.LAN(netip.MustParsePrefix("192.168.92.0/24"), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	var ov []netip.Prefix
	for i, h := range hosts {
		addr := netip.MustParsePrefix(fmt.Sprintf("10.92.0.%d/24", i+1))
		args := append([]string{"--vni", "42", "--bind", ul[i].String(), "--address", addr.String(),
			"--address", fmt.Sprintf("fd92::%d/64", i+1)}, extra...)
		if i > 0 {
			args = append(args, "--join", ul[0].String())
		}
		nodes = append(nodes, startNode(t, h, fmt.Sprintf("g%d", i+1), args...))
		ov = append(ov, addr)
	}
	return bed, hosts, nodes, ov
}

// gossipEntries returns a node's gossip-origin FDB entries by owner.
func gossipEntries(n *node) map[string]int {
	var es []control.FDBEntry
	if err := n.get("/v1/fdb", &es); err != nil {
		return nil
	}
	out := map[string]int{}
	for _, e := range es {
		if e.Origin == "gossip" {
			out[e.Node]++
		}
	}
	return out
}

// TestE2EGossip: three nodes joined with --join only (no --peer) learn each
// other's host ports by gossip and ping each other; after SIGKILL of one,
// the others' FDBs drop its entries once memberlist declares it dead.
func TestE2EGossip(t *testing.T) {
	bed, hosts, nodes, ov := threeNodes(t)
	ctx := testCtx(t, 2*time.Minute)
	// Every node has the other two's host-port bindings, by gossip.
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool { g := gossipEntries(n); return len(g) == 2 }) {
			t.Fatalf("%s gossip entries: %v\n%s", n.tap, gossipEntries(n), n.cli("fdb"))
		}
	}
	for i, h := range hosts {
		for j := range hosts {
			if i != j {
				if err := h.WaitPing(ctx, ov[j].Addr(), 10*time.Second); err != nil {
					t.Fatalf("g%d -> g%d: %v", i+1, j+1, err)
				}
			}
		}
	}
	// Peers: every node sees three alive members.
	var ms []control.Member
	if err := nodes[0].get("/v1/peers", &ms); err != nil || len(ms) != 3 {
		t.Fatalf("peers: %v %v", ms, err)
	}

	// SIGKILL g3: no leave, no withdrawal; failure detection must clean up.
	if err := nodes[2].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[:2] {
		if !poll(60*time.Second, func() bool { return gossipEntries(n)["g3"] == 0 }) {
			t.Fatalf("%s still lists g3's entries:\n%s", n.tap, n.cli("fdb"))
		}
		if !poll(30*time.Second, func() bool {
			var ms []control.Member
			if n.get("/v1/peers", &ms) != nil {
				return false
			}
			for _, m := range ms {
				if m.Name == "g3" {
					return m.State == "dead"
				}
			}
			return false
		}) {
			t.Errorf("%s does not list g3 as dead:\n%s", n.tap, n.cli("peers"))
		}
	}
	// The survivors still reach each other.
	if err := hosts[0].Ping(ctx, ov[1].Addr(), 2); err != nil {
		t.Fatalf("g1 -> g2 after g3 died: %v", err)
	}

	// SIGTERM g2: it withdraws its bindings and leaves before it exits.
	nodes[1].stop(bed)
	if !poll(30*time.Second, func() bool { return gossipEntries(nodes[0])["g2"] == 0 }) {
		t.Fatalf("g1 still lists g2's entries after g2 left:\n%s", nodes[0].cli("fdb"))
	}
	if out := nodes[0].cli("peers"); !strings.Contains(out, "left") {
		t.Errorf("g1 peers after g2 left:\n%s", out)
	}
}
