package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// routeSubnets are the subnets of TestE2ERouting's network, two of each
// family, with their gateways.
var routeSubnets = []struct{ subnet, gateway string }{
	{"10.1.1.0/24", "10.1.1.1"},
	{"10.1.2.0/24", "10.1.2.1"},
	{"fd01::/64", "fd01::1"},
	{"fd02::/64", "fd02::1"},
}

// routed is a container of TestE2ERouting: its namespace, endpoint and
// gateway.
type routed struct {
	ns *testbed.Netns
	ep control.Endpoint
}

func (r routed) addr() netip.Addr { return r.ep.Address.Addr() }

// TestE2ERouting: two nodes, one network with two IPv4 and two IPv6
// subnets, a container in each subnet on each node. Containers reach the
// other subnets through the gateway every node runs: ping and TCP on one
// node and across nodes, v4 and v6; traceroute shows the gateway as the
// one hop between; an address no endpoint holds is unreachable; a 1500-byte
// DF ping from a container whose MTU was raised to 1500 gets fragmentation
// needed (v4) or packet too big (v6) with the overlay MTU, after which
// pings at that size work; tracepath reports the overlay MTU; network
// inspect shows the router MAC and ovlsw routes the destinations.
func TestE2ERouting(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "n1", "--bind", ul1.Addr().String())
	n2 := startNode(t, h2, "n2", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String())
	ctx := testCtx(t, 4*time.Minute)

	args := []string{"network", "create", "prod", "--vni", "4097"}
	for _, s := range routeSubnets {
		args = append(args, "--subnet", s.subnet, "--gateway", s.gateway)
	}
	n1.cli(args...)
	// n2 routes as soon as gossip hands it the network.
	if !poll(30*time.Second, func() bool {
		var d control.NetworkDetail
		return n2.get("/v1/networks/prod", &d) == nil && len(d.Subnets) == len(routeSubnets)
	}) {
		t.Fatalf("n2 never had network prod with its subnets:\n%s", n2.cli("network", "ls"))
	}
	inspect := n2.cli("network", "inspect", "prod")
	if !strings.Contains(inspect, "router MAC 02:6f:76:00:10:01") || !strings.Contains(inspect, "10.1.1.0/24,10.1.2.0/24,fd01::/64,fd02::/64") {
		t.Errorf("network inspect prod on n2:\n%s", inspect)
	}

	// c[node][subnet]
	var c [2][4]routed
	for i, n := range []*node{n1, n2} {
		for j, s := range routeSubnets {
			ns := mustNetns(t, bed, fmt.Sprintf("r%d%d", i+1, j))
			ep := n.attach(ns, "--network", "prod", "--subnet", s.subnet)
			if ep.Gateway.String() != s.gateway || !netip.MustParsePrefix(s.subnet).Contains(ep.Address.Addr()) {
				t.Fatalf("attach in %s: %+v", s.subnet, ep)
			}
			c[i][j] = routed{ns: ns, ep: ep}
		}
	}

	// Ping and TCP across subnets, on one node and across nodes.
	for _, tc := range []struct {
		name     string
		from, to routed
	}{
		{"v4 same node", c[0][0], c[0][1]},
		{"v4 across nodes", c[0][0], c[1][1]},
		{"v4 across nodes, back", c[1][1], c[0][0]},
		{"v6 same node", c[0][2], c[0][3]},
		{"v6 across nodes", c[0][2], c[1][3]},
		{"v6 across nodes, back", c[1][3], c[0][2]},
	} {
		if err := tc.from.ns.WaitPing(ctx, tc.to.addr(), 15*time.Second); err != nil {
			t.Fatalf("%s: ping %v -> %v: %v", tc.name, tc.from.addr(), tc.to.addr(), err)
		}
		if err := testbed.TCPStream(ctx, tc.from.ns, tc.to.ns, tc.to.addr(), 16<<20); err != nil {
			t.Fatalf("%s: TCP %v -> %v: %v", tc.name, tc.from.addr(), tc.to.addr(), err)
		}
	}
	// The gateways answer ping, their own subnet's and the others'.
	for _, gw := range []string{"10.1.1.1", "10.1.2.1"} {
		if err := c[0][0].ns.Ping(ctx, netip.MustParseAddr(gw), 2); err != nil {
			t.Errorf("ping gateway %s: %v", gw, err)
		}
	}
	if err := c[1][2].ns.Ping(ctx, netip.MustParseAddr("fd02::1"), 2); err != nil {
		t.Errorf("ping gateway fd02::1: %v", err)
	}

	// traceroute: the gateway of the sender's subnet, then the destination.
	for _, tc := range []struct {
		from, to routed
		gateway  string
	}{
		{c[0][0], c[1][1], "10.1.1.1"},
		{c[1][3], c[0][2], "fd02::1"},
	} {
		family := "-4"
		if tc.to.addr().Is6() {
			family = "-6"
		}
		out, err := tc.from.ns.Run(ctx, "traceroute", family, "-n", "-q", "1", "-w", "2", "-m", "5", tc.to.addr().String())
		if err != nil {
			t.Fatalf("traceroute: %v\n%s", err, out)
		}
		t.Logf("traceroute %v -> %v:\n%s", tc.from.addr(), tc.to.addr(), out)
		if hops := traceHops(out); len(hops) != 2 || hops[0] != tc.gateway || hops[1] != tc.to.addr().String() {
			t.Errorf("traceroute %v -> %v: hops %v, want [%s %v]\n%s", tc.from.addr(), tc.to.addr(), hops, tc.gateway, tc.to.addr(), out)
		}
	}

	// No endpoint holds the address: unreachable, from the gateway.
	for _, tc := range []struct {
		from     routed
		to, want string
	}{
		{c[0][0], "10.1.2.99", "From 10.1.1.1 icmp_seq=1 Destination Host Unreachable"},
		{c[0][2], "fd02::99", "From fd01::1 icmp_seq=1 Destination unreachable: Address unreachable"},
	} {
		out, err := tc.from.ns.Run(ctx, "ping", "-n", "-c", "1", "-W", "2", tc.to)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("ping %s: %v, want %q in\n%s", tc.to, err, tc.want, out)
		}
	}

	// Path MTU: the sender's MTU raised past the overlay's (1450).
	for _, tc := range []struct {
		name      string
		from, to  routed
		big, fits string // ping -s: a 1500-byte packet, an overlay-MTU one
		want      string
	}{
		{"v4 routed", c[0][0], c[1][1], "1472", "1422", "Frag needed and DF set (mtu = 1450)"},
		{"v4 bridged", c[1][0], c[0][0], "1472", "1422", "Frag needed and DF set (mtu = 1450)"},
		{"v6 routed", c[0][2], c[1][3], "1452", "1402", "Packet too big: mtu=1450"},
	} {
		if _, err := tc.from.ns.Run(ctx, "ip", "link", "set", "eth0", "mtu", "1500"); err != nil {
			t.Fatal(err)
		}
		out, err := tc.from.ns.Run(ctx, "ping", "-n", "-M", "do", "-s", tc.big, "-c", "1", "-W", "2", tc.to.addr().String())
		t.Logf("%s: 1500-byte DF ping:\n%s", tc.name, out)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: 1500-byte DF ping: %v, want %q in\n%s", tc.name, err, tc.want, out)
		}
		out, err = tc.from.ns.Run(ctx, "ping", "-n", "-M", "do", "-s", tc.fits, "-c", "3", "-i", "0.2", "-W", "2", tc.to.addr().String())
		if err != nil {
			t.Errorf("%s: ping at the overlay MTU: %v\n%s", tc.name, err, out)
		}
	}
	// TCP between two containers whose MTU is 1500 (both ends advertise an
	// MSS of 1460): the first segments, TSO super-frames, get
	// fragmentation needed and the stream goes on at the overlay MTU.
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := testbed.TCPStream(tctx, c[0][0].ns, c[1][0].ns, c[1][0].addr(), 16<<20)
	cancel()
	if err != nil {
		t.Errorf("TCP between MTU-1500 containers: %v", err)
	}
	// tracepath from a sender with MTU 1500 to a destination it has no
	// path MTU for yet: the overlay's.
	if _, err := c[0][1].ns.Run(ctx, "ip", "link", "set", "eth0", "mtu", "1500"); err != nil {
		t.Fatal(err)
	}
	out, err := c[0][1].ns.Run(ctx, "tracepath", "-n", "-m", "5", c[1][0].addr().String())
	t.Logf("tracepath:\n%s", out)
	if err != nil || !strings.Contains(out, "pmtu 1450") {
		t.Errorf("tracepath: %v, want pmtu 1450 in\n%s", err, out)
	}

	// What the nodes route.
	var rs control.Routes
	if err := n1.get("/v1/routes", &rs); err != nil || len(rs.Networks) != 1 || len(rs.Networks[0].Hosts) != 8 ||
		rs.Stats.Routed == 0 || rs.Stats.TimeExceeded == 0 || rs.Stats.Unreachable == 0 || rs.Stats.TooBig == 0 {
		t.Errorf("routes on n1: %v\n%s", err, jsonString(rs))
	}
	out = n2.cli("routes")
	t.Logf("ovlsw routes on n2:\n%s\nnetwork inspect prod on n2:\n%s", out, inspect)
	if !strings.Contains(out, "fd02::/64") || !strings.Contains(out, c[0][0].addr().String()) {
		t.Errorf("ovlsw routes on n2:\n%s", out)
	}
}

// traceHops returns the address of each hop in traceroute -n -q 1 output.
func traceHops(out string) []string {
	var hops []string
	hop := regexp.MustCompile(`^\s*\d+\s+(\S+)`)
	for _, l := range strings.Split(out, "\n") {
		if m := hop.FindStringSubmatch(l); m != nil {
			hops = append(hops, m[1])
		}
	}
	return hops
}
