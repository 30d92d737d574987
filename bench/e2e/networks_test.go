package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// TestE2ENetworks follows Docker's three-host overlay example: nodes that
// start with no network, joined by gossip; `network create web` on one is
// seen on all; c1, c2, c3 on three nodes get addresses from 10.0.9.0/24,
// ping each other and carry TCP; a second network is isolated from the
// first; 30 containers attached at once across the nodes get 30 distinct
// addresses; a network with endpoints cannot be removed.
func TestE2ENetworks(t *testing.T) {
	bed := testbed.New(t)
	var hosts []*testbed.Netns
	for i := range 3 {
		hosts = append(hosts, mustNetns(t, bed, fmt.Sprintf("n%d", i+1)))
	}
	ul, err := bed.LAN(netip.MustParsePrefix("192.168.93.0/24"), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i, h := range hosts {
		args := []string{"--bind", ul[i].String()}
		if i > 0 {
			args = append(args, "--join", ul[0].String())
		}
		nodes = append(nodes, startNode(t, h, fmt.Sprintf("n%d", i+1), args...))
	}
	ctx := testCtx(t, 3*time.Minute)

	nodes[0].cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.1")
	nodes[1].cli("network", "create", "db", "--vni", "4098", "--subnet", "10.0.10.0/24")
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool {
			var ns []control.Network
			return n.get("/v1/networks", &ns) == nil && len(ns) == 2
		}) {
			t.Fatalf("%s networks:\n%s", n.tap, n.cli("network", "ls"))
		}
	}
	if err := nodes[2].cliErr("network", "create", "web2", "--vni", "4097", "--subnet", "10.0.11.0/24"); err == nil || !strings.Contains(err.Error(), "VNI 4097 is already used by network web") {
		t.Errorf("duplicate VNI: %v", err)
	}
	if err := nodes[2].cliErr("network", "create", "web3", "--vni", "4099", "--subnet", "10.0.9.128/25"); err == nil || !strings.Contains(err.Error(), "overlaps network web") {
		t.Errorf("overlapping subnet: %v", err)
	}

	var cs []*testbed.Netns
	var eps []control.Endpoint
	for i, n := range nodes {
		c := mustNetns(t, bed, fmt.Sprintf("c%d", i+1))
		cs = append(cs, c)
		eps = append(eps, n.attach(c, "--network", "web"))
	}
	for i, c := range cs {
		for j, ep := range eps {
			if i != j {
				if err := c.WaitPing(ctx, ep.Address.Addr(), 10*time.Second); err != nil {
					t.Fatalf("c%d -> c%d (%v): %v", i+1, j+1, ep.Address, err)
				}
			}
		}
	}
	if err := testbed.TCPStream(ctx, cs[0], cs[2], eps[2].Address.Addr(), 8<<20); err != nil {
		t.Fatalf("TCP c1 -> c3: %v", err)
	}
	// An explicit address that is taken, or outside the subnet, is refused.
	cx := mustNetns(t, bed, "cx")
	if err := nodes[1].cliErr("attach", "--netns", cx.Name, "--network", "web", "--ip", eps[0].Address.String()); err == nil ||
		!strings.Contains(err.Error(), "is taken by") {
		t.Errorf("attach with a taken address: %v", err)
	}
	if err := nodes[1].cliErr("attach", "--netns", cx.Name, "--network", "web", "--ip", "10.0.99.5/24"); err == nil ||
		!strings.Contains(err.Error(), "not in network web's subnet 10.0.9.0/24") {
		t.Errorf("attach outside the subnet: %v", err)
	}
	if bed.LinkExists(cx, "eth0") {
		t.Error("a refused attach left eth0 behind")
	}
	// network inspect on any node lists all three endpoints with their nodes.
	var d control.NetworkDetail
	if err := nodes[2].get("/v1/networks/web", &d); err != nil || len(d.Endpoints) != 3 {
		t.Errorf("inspect web on n3: %v\n%s", err, nodes[2].cli("network", "inspect", "web"))
	}

	// Isolation: a db container given an address in web's subnet by hand
	// still cannot reach web: the VNIs are separate L2 networks.
	c4 := mustNetns(t, bed, "c4")
	nodes[0].attach(c4, "--network", "db", "--no-port-security") // else port security stops it first
	if _, err := c4.Run(ctx, "ip", "addr", "add", "10.0.9.200/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := c4.Ping(ctx, eps[1].Address.Addr(), 3); err == nil {
		t.Error("db reached web")
	}

	// 30 containers at once, 10 per node: 30 distinct addresses.
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := range 30 {
		c := mustNetns(t, bed, fmt.Sprintf("m%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i%3]
			out, err := execOvlsw(n, "attach", "--netns", c.Name, "--network", "web", "--json")
			var ep control.Endpoint
			if err == nil {
				err = jsonUnmarshal(out, &ep)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("attach m%d: %v %s", i, err, out)
				return
			}
			if other, dup := seen[ep.Address.Addr()]; dup {
				t.Errorf("address %v handed out twice: %s and m%d", ep.Address.Addr(), other, i)
			}
			seen[ep.Address.Addr()] = fmt.Sprintf("m%d on %s", i, ep.Node)
		}()
	}
	wg.Wait()
	if len(seen) != 30 {
		t.Errorf("%d distinct addresses for 30 containers", len(seen))
	}

	// A network in use cannot be removed, and the refusal names endpoints.
	if err := nodes[2].cliErr("network", "rm", "web"); err == nil || !strings.Contains(err.Error(), "still has endpoints attached") || !strings.Contains(err.Error(), "on n1") {
		t.Errorf("rm web in use: %v", err)
	}
	// An unused one can, everywhere.
	nodes[0].cli("detach", "--netns", c4.Name)
	// n3 refuses until the withdrawal of c4's binding reaches it.
	var rmErr error
	if !poll(30*time.Second, func() bool { rmErr = nodes[2].cliErr("network", "rm", "db"); return rmErr == nil }) {
		t.Fatalf("rm db after detach: %v", rmErr)
	}
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool {
			var ns []control.Network
			return n.get("/v1/networks", &ns) == nil && len(ns) == 1
		}) {
			t.Errorf("%s still lists db:\n%s", n.tap, n.cli("network", "ls"))
		}
	}
}
