package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// TestE2EProxyStaleBinding (defect 1 of issue 13): two nodes with --peer
// and no gossip ping each other, so node 1 learns node 2's overlay address
// from node 2's traffic. Node 2 stops and a Linux kernel vxlan device takes
// its place: the same underlay address, the same overlay address, its own
// MAC, and silent. Node 1's host forgets its neighbours and pings the
// address: the first ping must be answered. ovlsw must not answer the ARP
// request with the MAC it only snooped from node 2's traffic; the request
// goes to the peer, and the kernel device answers it.
func TestE2EProxyStaleBinding(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	ctx := testCtx(t, 2*time.Minute)
	n1 := startNode(t, h1, "st1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())
	n2 := startNode(t, h2, "st2", "--vni", "42", "--bind", ul2.Addr().String(), "--peer", ul1.Addr().String(), "--address", ov2.String())
	if err := h1.WaitPing(ctx, ov2.Addr(), 10*time.Second); err != nil {
		t.Fatalf("n1 -> n2: %v\nn1:\n%s\nn2:\n%s", err, n1.proc.Output(), n2.proc.Output())
	}
	oldMAC := macOf(t, h2, n2.tap)
	// The premise: node 1 holds the address, bound to node 2's MAC, learned
	// from the wire (not from gossip: there is none).
	learned := func() bool {
		for _, e := range n1.fdb() {
			if e.MAC == oldMAC && e.Origin == "learned" && slices.Contains(e.IPs, ov2.Addr()) {
				return true
			}
		}
		return false
	}
	if !learned() {
		t.Fatalf("n1 did not learn %v at %s from the wire: the test proves nothing\n%s", ov2.Addr(), oldMAC, n1.cli("fdb"))
	}

	n2.stop(bed)
	err := testbed.KernelVXLAN(h2, testbed.VXLANOpts{
		Name: "vx42", VNI: 42, Local: ul2.Addr(), Remotes: []netip.Addr{ul1.Addr()}, Address: ov2,
	})
	if err != nil {
		t.Fatal(err)
	}
	newMAC := macOf(t, h2, "vx42")
	if newMAC == oldMAC {
		t.Fatalf("the kernel device has node 2's MAC %s: the test proves nothing", oldMAC)
	}
	if !learned() {
		t.Fatalf("n1 no longer binds %v to %s before the ping: the test proves nothing\n%s", ov2.Addr(), oldMAC, n1.cli("fdb"))
	}

	if _, err := h1.Run(ctx, "ip", "neigh", "flush", "dev", n1.tap); err != nil {
		t.Fatal(err)
	}
	if out, err := h1.Run(ctx, "ping", "-4", "-n", "-c", "1", "-W", "2", ov2.Addr().String()); err != nil {
		neigh, _ := h1.Run(ctx, "ip", "neigh", "show", "dev", n1.tap)
		t.Fatalf("first ping to %v after the kernel device took over: %v\n%s\nh1 neighbours: %s\nn1 fdb:\n%s",
			ov2.Addr(), err, out, neigh, n1.cli("fdb"))
	}
	if neigh, _ := h1.Run(ctx, "ip", "neigh", "show", ov2.Addr().String(), "dev", n1.tap); !strings.Contains(neigh, newMAC) {
		t.Errorf("h1's neighbour entry for %v: %q, want the kernel device's MAC %s", ov2.Addr(), neigh, newMAC)
	}
	n1.stop(bed)
}
