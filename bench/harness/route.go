package main

// This file holds the route scenario (issue 17): TCP routed between two
// subnets of one network against TCP bridged within one subnet, on the
// same two gossip-joined ovlsw nodes, in one run. A container on the first
// node sends to two on the second, one in its own subnet (bridged) and one
// in the network's other subnet (routed by the sender's node, bridged by
// the receiver's); the measurements alternate so that drift in the
// machine's load falls on both alike. Only ovlsw routes: the other builds
// read n/a.

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

const scenarioRoute = "route"

// The route scenario's network: VNI and subnets, first and second.
const routeVNI = 4097

var (
	routeSubnetA = netip.MustParsePrefix("10.95.1.0/24")
	routeSubnetB = netip.MustParsePrefix("10.95.2.0/24")
)

// routeRowIDs are the scenario's report rows.
func routeRowIDs() []rowDef {
	return []rowDef{
		{"route_bridged_tcp1", scenarioRoute, "TCP 1 stream, bridged within a subnet (route topology)", "Gbit/s"},
		{"route_routed_tcp1", scenarioRoute, "TCP 1 stream, routed between two subnets", "Gbit/s"},
		{"route_bridged_tcp4", scenarioRoute, "TCP 4 streams, bridged within a subnet (route topology)", "Gbit/s"},
		{"route_routed_tcp4", scenarioRoute, "TCP 4 streams, routed between two subnets", "Gbit/s"},
	}
}

// routeScenario builds the route topology once and measures it
// opts.Repeat times.
func (h *harness) routeScenario(ctx context.Context) error {
	if !slices.Contains(h.opts.Builds, buildOvlsw) {
		return nil
	}
	if !h.gossip || !h.attach || !hasFlag(ctx, h.opts.Ovlsw, "--subnet", "attach") {
		for _, d := range routeRowIDs() {
			h.rep.todo(d.id, "not available: this ovlsw has no networks with several subnets (needs gossip, attach and attach --subnet)")
		}
		return nil
	}
	h.rep.note("route: two ovlsw nodes joined by gossip, network with subnets " + routeSubnetA.String() + " and " + routeSubnetB.String() +
		" (gateways .1); one container on the first node in the first subnet sends to one on the second node in the same subnet " +
		"(bridged) and to one in the other subnet (routed by the sender's node), one after the other, the order alternating each repeat")
	t, err := h.routeTopo(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.fail(ctx, buildOvlsw, "route: build the topology", err)
		return nil
	}
	defer func() {
		if err := t.close(); err != nil && ctx.Err() == nil {
			h.fail(ctx, buildOvlsw, "route: tear down", err)
		}
	}()
	names := []string{"bridged", "routed"}
	for run := range h.opts.Repeat {
		order := []int{0, 1}
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, streams := range []int{1, 4} {
			for _, i := range order {
				r, err := h.throughput(ctx, t, t.pairs[i:i+1], streams)
				if err != nil {
					h.fail(ctx, buildOvlsw, fmt.Sprintf("route: TCP %d stream(s) %s", streams, names[i]), err)
					continue
				}
				h.record(fmt.Sprintf("route_%s_tcp%d", names[i], streams), buildOvlsw, r.bps/1e9, run)
			}
		}
	}
	return ctx.Err()
}

// routeTopo starts two nodes, the second joining the first, creates the
// network with two subnets and attaches the three containers: pair 0 is
// bridged, pair 1 routed, both from the same sender.
func (h *harness) routeTopo(ctx context.Context) (_ *topo, reterr error) {
	bed, err := testbed.NewStandalone("ovb")
	if err != nil {
		return nil, err
	}
	t := &topo{build: buildOvlsw, wiring: wireAttach, bed: bed}
	defer func() {
		if reterr != nil {
			if err := bed.Close(); err != nil {
				h.log.printf("route: clean up after failure: %v", err)
			}
		}
	}()
	for i, name := range []string{"h1", "h2"} {
		if t.hosts[i], err = bed.Netns(name); err != nil {
			return nil, err
		}
	}
	if err := bed.Veth(t.hosts[0], "ul0", ul1, t.hosts[1], "ul0", ul2, 1500); err != nil {
		return nil, err
	}
	for side, ul := range []netip.Prefix{ul1, ul2} {
		n := &node{name: fmt.Sprintf("n%d", side+1), ns: t.hosts[side]} // no host port
		n.socket = filepath.Join(h.sockDir, fmt.Sprintf("%s-%s.sock", bed.ID(), n.name))
		argv := []string{h.opts.Ovlsw, "up", "--name", n.name, "--bind", ul.Addr().String(), "--socket", n.socket,
			"--log-level", "warn"}
		if side == 1 {
			argv = append(argv, "--join", ul1.Addr().String())
			if testbed.NeedsToken(argv) && hasFlag(ctx, h.opts.Ovlsw, "--token", "up") {
				tok, err := testbed.JoinToken(ctx, t.nodes[0].socket)
				if err != nil {
					return nil, fmt.Errorf("join token of n1: %w", err)
				}
				argv = append(argv, "--token", tok)
			}
		}
		argv = append(argv, h.opts.UpArgs...)
		if err := h.launchNode(ctx, n, argv); err != nil {
			return nil, err
		}
		t.nodes = append(t.nodes, n)
	}
	n1, n2 := t.nodes[0], t.nodes[1]
	if _, err := h.ovlswCmd(ctx, n1, "network", "create", "rt", "--vni", strconv.Itoa(routeVNI),
		"--subnet", routeSubnetA.String(), "--gateway", nth(routeSubnetA, 1).String(),
		"--subnet", routeSubnetB.String(), "--gateway", nth(routeSubnetB, 1).String()); err != nil {
		return nil, err
	}
	if !testbed.Poll(ctx, readyTimeout, func() bool {
		_, err := h.ovlswCmd(ctx, n2, "network", "inspect", "rt")
		return err == nil
	}) {
		return nil, fmt.Errorf("n2 never had network rt")
	}
	attach := func(n *node, name string, addr netip.Prefix) (endpoint, error) {
		c, err := bed.Netns(name)
		if err != nil {
			return endpoint{}, err
		}
		if _, err := h.ovlswCmd(ctx, n, "attach", "--netns", c.Path, "--network", "rt", "--ip", addr.String(), "--ifname", "eth0"); err != nil {
			return endpoint{}, err
		}
		return endpoint{c, addr.Addr(), "eth0"}, nil
	}
	src, err := attach(n1, "a1", netip.PrefixFrom(nth(routeSubnetA, 11), 24))
	if err != nil {
		return nil, err
	}
	for i, dst := range []netip.Prefix{netip.PrefixFrom(nth(routeSubnetA, 21), 24), netip.PrefixFrom(nth(routeSubnetB, 21), 24)} {
		ep, err := attach(n2, fmt.Sprintf("b%d", i+1), dst)
		if err != nil {
			return nil, err
		}
		t.pairs = append(t.pairs, pair{src: src, dst: ep, port: iperfBasePort + i})
	}
	for _, p := range t.pairs {
		if err := p.src.ns.WaitPing(ctx, p.dst.addr, readyTimeout); err != nil {
			return nil, fmt.Errorf("no path %v -> %v: %w%s", p.src.addr, p.dst.addr, err, t.nodeLogs())
		}
		srv, err := p.dst.ns.Start(ctx, "iperf3", "-s", "-p", strconv.Itoa(p.port))
		if err != nil {
			return nil, err
		}
		t.servers = append(t.servers, srv)
		if err := waitListen(ctx, srv, p.port); err != nil {
			return nil, err
		}
	}
	h.log.printf("%s: route topology up (bridged %v -> %v, routed %v -> %v)", buildOvlsw,
		t.pairs[0].src.addr, t.pairs[0].dst.addr, t.pairs[1].src.addr, t.pairs[1].dst.addr)
	return t, nil
}

// ovlswCmd runs an ovlsw client command against node n.
func (h *harness) ovlswCmd(ctx context.Context, n *node, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, h.opts.Ovlsw, append(args, "--socket", n.socket)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ovlsw %s on %s: %v: %s", strings.Join(args, " "), n.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nth returns the i-th address of p (IPv4, i < 256).
func nth(p netip.Prefix, i int) netip.Addr {
	a := p.Addr().As4()
	a[3] += byte(i)
	return netip.AddrFrom4(a)
}
