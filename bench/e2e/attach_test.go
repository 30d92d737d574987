package e2e

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

func (n *node) attach(ns *testbed.Netns, args ...string) control.Endpoint {
	n.t.Helper()
	var ep control.Endpoint
	out := n.cli(append([]string{"attach", "--netns", ns.Name, "--json"}, args...)...)
	if err := jsonUnmarshal(out, &ep); err != nil {
		n.t.Fatalf("attach output %q: %v", out, err)
	}
	return ep
}

// TestE2EAttach: containers (network namespaces) attached on two nodes ping
// each other and carry TCP; two on one node talk without the underlay;
// allocation hands out distinct addresses and reuses freed ones; detach and
// a deleted namespace both remove the endpoint; a network with endpoints
// cannot be removed.
func TestE2EAttach(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "a1", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul1.Addr().String(), "--peer", ul2.Addr().String())
	n2 := startNode(t, h2, "a2", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul2.Addr().String(), "--peer", ul1.Addr().String())
	ctx := testCtx(t, 2*time.Minute)
	c1, c2, c3 := mustNetns(t, bed, "c1"), mustNetns(t, bed, "c2"), mustNetns(t, bed, "c3")

	e1 := n1.attach(c1)                          // allocated
	e3 := n1.attach(c3)                          // allocated, distinct
	e2 := n2.attach(c2, "--ip", "10.0.9.100/24") // explicit
	if e1.Address.Addr() == e3.Address.Addr() || !strings.HasPrefix(e1.Address.String(), "10.0.9.") {
		t.Fatalf("allocated %v and %v", e1.Address, e3.Address)
	}
	if e1.MTU != 1450 || e1.IfName != "eth0" || e1.Gateway != netip.MustParseAddr("10.0.9.254") {
		t.Errorf("endpoint: %+v", e1)
	}
	out, err := c1.Run(ctx, "ip", "-o", "route", "show", "default")
	if err != nil || !strings.Contains(out, "via 10.0.9.254 dev eth0") {
		t.Errorf("default route in c1: %q %v", out, err)
	}

	// Across nodes.
	if err := c1.WaitPing(ctx, e2.Address.Addr(), 10*time.Second); err != nil {
		t.Fatalf("c1 -> c2: %v\n%s", err, n1.proc.Output())
	}
	if err := testbed.TCPStream(ctx, c2, c1, e1.Address.Addr(), 8<<20); err != nil {
		t.Fatalf("TCP c2 -> c1: %v", err)
	}
	// On one node: switched locally, the stream never touches the underlay.
	before := n1.status().Peers[0].TxBytes
	if err := c1.WaitPing(ctx, e3.Address.Addr(), 10*time.Second); err != nil {
		t.Fatalf("c1 -> c3: %v", err)
	}
	if err := testbed.TCPStream(ctx, c1, c3, e3.Address.Addr(), 8<<20); err != nil {
		t.Fatalf("TCP c1 -> c3: %v", err)
	}
	if sent := n1.status().Peers[0].TxBytes - before; sent > 1<<20 {
		t.Errorf("local traffic crossed the underlay: %d bytes sent to the peer", sent)
	}

	// Port security: c1 changing its MAC is cut off and counted; changing
	// it back restores it.
	drops := n1.status().Drops["port_security"]
	if _, err := c1.Run(ctx, "ip", "link", "set", "eth0", "address", "02:de:ad:be:ef:01"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Ping(ctx, e2.Address.Addr(), 2); err == nil {
		t.Error("a container with a spoofed MAC still reached c2")
	}
	if got := n1.status().Drops["port_security"]; got <= drops {
		t.Errorf("port_security drops %d -> %d", drops, got)
	}
	if _, err := c1.Run(ctx, "ip", "link", "set", "eth0", "address", e1.MAC); err != nil {
		t.Fatal(err)
	}
	if err := c1.WaitPing(ctx, e2.Address.Addr(), 10*time.Second); err != nil {
		t.Fatalf("c1 with its own MAC again: %v", err)
	}

	// A network with endpoints cannot be removed, and says which.
	err = n1.cliErr("network", "rm", "default")
	if err == nil || !strings.Contains(err.Error(), e1.Name) {
		t.Errorf("network rm with endpoints: %v", err)
	}

	// Detach frees the address for reuse.
	n1.cli("detach", "--netns", c3.Name)
	if bed.LinkExists(c3, "eth0") {
		t.Error("eth0 still in c3 after detach")
	}
	c4 := mustNetns(t, bed, "c4")
	if e4 := n1.attach(c4); e4.Address != e3.Address {
		t.Errorf("after detach, allocation gave %v, want the freed %v", e4.Address, e3.Address)
	}

	// A namespace that disappears frees its endpoint.
	if out, err := exec.Command("ip", "netns", "del", c4.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
	if !poll(10*time.Second, func() bool {
		var d control.NetworkDetail
		return n1.get("/v1/networks/default", &d) == nil && len(d.Endpoints) == 1
	}) {
		t.Errorf("endpoint of a deleted namespace still listed:\n%s", n1.cli("network", "inspect", "default"))
	}
	n1.stop(bed)
	n2.stop(bed)
	// Every port the daemons owned went with them, inside the namespaces too.
	for _, c := range []*testbed.Netns{c1, c2, c3} {
		if bed.LinkExists(c, "eth0") {
			t.Errorf("eth0 left in %s after its daemon exited", c.Name)
		}
	}
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	return true
}

func mustNetns(t *testing.T, bed *testbed.Bed, name string) *testbed.Netns {
	t.Helper()
	ns, err := bed.Netns(name)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
