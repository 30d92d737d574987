package main

// This file holds the gossip scenario: GossipNodes ovlsw nodes on one
// machine, each in its own host namespace on one LAN (testbed's Bed.LAN),
// joined by gossip alone (`up --join` the first node, no --peer), with
// default gossip timers. It times two things, on a fresh cluster per
// repeat:
//
//   - join: from starting the first node until every node's forwarding
//     table holds the host-port binding of every other node (origin
//     "gossip");
//   - one binding: from running `ovlsw attach` for a container on the first
//     node until every other node's table lists the container's MAC.
//
// and, after both, the bytes each node sends on its underlay a second at
// rest (all of it gossip then).
//
// Both times are read by polling every node's /v1/fdb every gossipPoll, so they
// are late by up to one poll round. There is no kernel or underlay
// counterpart: those columns read n/a.

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

const (
	// gossipNodes is the cluster size of a full run, gossipQuickNodes of
	// a --quick one (20 daemons starting at once on two cores take a few
	// seconds more than the quick test should spend on them).
	gossipNodes      = 20
	gossipQuickNodes = 5
	// gossipWait bounds each wait for convergence; exceeding it is a
	// failed measurement.
	gossipWait = 60 * time.Second
	// gossipPoll is the pause between polling rounds over the nodes.
	gossipPoll = 50 * time.Millisecond
	// gossipMAC is the MAC of the container attached to the first node.
	gossipMAC = "02:94:00:00:01:01"
)

var (
	// gossipLAN is the underlay segment of the cluster; node i (1-based)
	// has host i of it.
	gossipLAN = netip.MustParsePrefix("192.168.94.0/24")
	// gossipContainer is the attached container's address. The default
	// network has no subnet, so any prefix is accepted.
	gossipContainer = netip.MustParsePrefix("10.94.1.1/24")
)

// gossipAddr is node i's (1-based) address on its host TAP port.
func gossipAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 94, 0, byte(i)}), 24)
}

// gossip runs the gossip scenario once per repeat, each on a new cluster.
func (h *harness) gossipScenario(ctx context.Context) error {
	if !slices.Contains(h.opts.Builds, buildOvlsw) {
		return nil // only ovlsw has gossip; the rows stay out of the report
	}
	if !h.gossip {
		why := "not available: this ovlsw has no gossip (`up --join`)"
		h.rep.todo("gossip_join", why)
		h.rep.todo("gossip_bind", why)
		return nil
	}
	if !h.attach {
		h.rep.todo("gossip_bind", "not measured: needs `ovlsw attach` (missing, or --no-attach)")
	}
	h.rep.note(fmt.Sprintf("gossip: %d ovlsw nodes, each in its own host namespace on one bridged LAN, default gossip timers, "+
		"the first founding the cluster and the others started right after it answers, with --join to it; "+
		"join: from starting the first node until every node's /v1/fdb holds every other node's host port (origin gossip); "+
		"one binding: from running `ovlsw attach` on the first node until every other node's /v1/fdb lists the container's MAC "+
		"(polled while the command runs, which takes longer to return than the binding takes to spread); "+
		"every node is polled every %v (figures are late by up to one round), a new cluster for each repeat",
		h.opts.GossipNodes, gossipPoll))
	for run := range h.opts.Repeat {
		if err := h.gossipRun(ctx, run); err != nil {
			return err
		}
	}
	return nil
}

// gossipRun builds one cluster, measures it and removes it. It returns
// only ctx's error; failed measurements are recorded.
func (h *harness) gossipRun(ctx context.Context, run int) error {
	b := buildOvlsw
	n := h.opts.GossipNodes
	bed, err := testbed.NewStandalone("ovb")
	if err != nil {
		return err
	}
	defer func() {
		if err := bed.Close(); err != nil && ctx.Err() == nil {
			h.fail(ctx, b, "gossip: tear down", err)
		}
	}()
	hosts := make([]*testbed.Netns, n)
	for i := range hosts {
		if hosts[i], err = bed.Netns(fmt.Sprintf("g%d", i+1)); err != nil {
			h.fail(ctx, b, "gossip: build the LAN", err)
			return ctx.Err()
		}
	}
	ul, err := bed.LAN(gossipLAN, hosts...)
	if err != nil {
		h.fail(ctx, b, "gossip: build the LAN", err)
		return ctx.Err()
	}
	h.log.printf("%-8s gossip: %d host namespaces on one LAN (%v)", b, n, gossipLAN)

	a, errA := machineCPU()
	defer func() {
		if b2, errB := machineCPU(); errA == nil && errB == nil && ctx.Err() == nil {
			h.otherWork(fmt.Sprintf("while measuring gossip (%d nodes)", n), otherCores(a, b2))
		}
	}()

	nodes, took, err := h.startCluster(ctx, bed, hosts, ul)
	if err != nil {
		h.fail(ctx, b, fmt.Sprintf("gossip: join %d nodes", n), err)
		return ctx.Err()
	}
	h.record("gossip_join", b, took.Seconds(), run)
	if !h.attach {
		return ctx.Err()
	}
	if took, err = h.timeBinding(ctx, bed, nodes); err != nil {
		h.fail(ctx, b, "gossip: spread one binding", err)
		return ctx.Err()
	}
	h.record("gossip_bind", b, took.Seconds(), run)
	bps, err := gossipBytes(ctx, hosts)
	if err != nil {
		h.fail(ctx, b, "gossip: bytes at rest", err)
		return ctx.Err()
	}
	h.record("gossip_bytes", b, bps, run)
	return ctx.Err()
}

// gossipRest is the window over which gossip traffic at rest is measured:
// several probe rounds (1 s) and gossip rounds (200 ms) of every node.
const gossipRest = 5 * time.Second

// gossipBytes returns the bytes a node sends on its underlay a second at
// rest, averaged over the nodes: with no overlay traffic, that is gossip
// (probes, acks, gossip rounds, push/pull), encrypted or not.
func gossipBytes(ctx context.Context, hosts []*testbed.Netns) (float64, error) {
	sent := func() (uint64, error) {
		var sum uint64
		for _, h := range hosts {
			out, err := h.Run(ctx, "cat", "/sys/class/net/ul0/statistics/tx_bytes")
			if err != nil {
				return 0, err
			}
			n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("ul0 tx_bytes %q: %w", out, err)
			}
			sum += n
		}
		return sum, nil
	}
	before, err := sent()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(gossipRest):
	}
	after, err := sent()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(len(hosts)) / time.Since(start).Seconds(), nil
}

// startCluster starts a node in each host, the first founding the cluster
// and the others joining it, and returns how long it took from starting
// the first until every node's table held every other node's binding.
func (h *harness) startCluster(ctx context.Context, bed *testbed.Bed, hosts []*testbed.Netns, ul []netip.Addr) ([]*node, time.Duration, error) {
	start := time.Now()
	nodes := make([]*node, len(hosts))
	for i, host := range hosts {
		nd := &node{name: fmt.Sprintf("g%d", i+1), ns: host, address: gossipAddr(i + 1)}
		nd.tap = "ovl" + nd.name
		nd.socket = filepath.Join(h.sockDir, fmt.Sprintf("%s-%s.sock", bed.ID(), nd.name))
		argv := []string{h.opts.Ovlsw, "up", "--name", nd.name, "--bind", ul[i].String(),
			"--vni", strconv.Itoa(vni), "--address", nd.address.String(), "--socket", nd.socket,
			"--tap", nd.tap, "--log-level", "warn"}
		argv = append(argv, h.opts.UpArgs...)
		nodes[i] = nd
		if i == 0 {
			// The others join it, so it must be up first: its control
			// socket answers only once gossip listens.
			if err := h.launchNode(ctx, nd, argv); err != nil {
				return nil, 0, err
			}
			h.log.printf("%-8s gossip: first node up after %v", buildOvlsw, time.Since(start).Round(time.Millisecond))
			continue
		}
		argv = append(argv, "--join", ul[0].String())
		if testbed.NeedsToken(argv) && hasFlag(ctx, h.opts.Ovlsw, "--token", "up") {
			tok, err := testbed.JoinToken(ctx, nodes[0].socket)
			if err != nil {
				return nil, 0, fmt.Errorf("join token of %s: %w", nodes[0].name, err)
			}
			argv = append(argv, "--token", tok)
		}
		proc, err := host.Start(ctx, argv...)
		if err != nil {
			return nil, 0, err
		}
		nd.proc = proc
	}
	h.log.printf("%-8s gossip: %d nodes started after %v", buildOvlsw, len(nodes), time.Since(start).Round(time.Millisecond))
	names := make(map[string]bool)
	for _, nd := range nodes {
		names[nd.name] = true
	}
	done, err := waitFDBs(ctx, nodes, len(nodes)-1, func(nd *node, es []control.FDBEntry) int {
		from := make(map[string]bool)
		for _, e := range es {
			if e.Origin == "gossip" && e.Node != nd.name && names[e.Node] {
				from[e.Node] = true
			}
		}
		return len(from)
	})
	if err != nil {
		return nil, 0, err
	}
	return nodes, slices.MaxFunc(done, time.Time.Compare).Sub(start), nil
}

// timeBinding attaches a container to the first node and returns how long
// it took from running `ovlsw attach` until every other node's table
// listed the container's MAC. The tables are polled while attach runs: the
// binding may be in them before the command returns.
func (h *harness) timeBinding(ctx context.Context, bed *testbed.Bed, nodes []*node) (time.Duration, error) {
	c, err := bed.Netns("c1")
	if err != nil {
		return 0, err
	}
	first := nodes[0]
	wctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	attached := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(actx, h.opts.Ovlsw, "attach", "--socket", first.socket,
			"--netns", c.Path, "--ip", gossipContainer.String(), "--ifname", "eth0", "--mac", gossipMAC).CombinedOutput()
		if err != nil {
			stop(fmt.Errorf("ovlsw attach c1 to %s: %v: %s", first.name, err, strings.TrimSpace(string(out))))
		}
		attached <- time.Now()
	}()
	// The first node lists the binding as its own (origin local), the
	// others by gossip.
	done, err := waitFDBs(wctx, nodes, 1, func(nd *node, es []control.FDBEntry) int {
		for _, e := range es {
			if strings.EqualFold(e.MAC, gossipMAC) && (nd == first || e.Origin == "gossip") {
				return 1
			}
		}
		return 0
	})
	ret := <-attached // the command is bounded by its own timeout
	if err != nil {
		return 0, err
	}
	last := slices.MaxFunc(done[1:], time.Time.Compare)
	h.log.printf("%-8s gossip: ovlsw attach returned after %v; %s listed the binding after %v, the last other node after %v",
		buildOvlsw, ret.Sub(start).Round(time.Millisecond), first.name, done[0].Sub(start).Round(time.Millisecond),
		last.Sub(start).Round(time.Millisecond))
	return last.Sub(start), nil
}

// waitFDBs polls every node's /v1/fdb, all nodes at once, every
// gossipPoll, until count returns want for each, and returns for each node
// when the round that saw it get there ended. A node that got there is not
// asked again. It fails after gossipWait, if a node exits, or when ctx is
// done (with its cause).
func waitFDBs(ctx context.Context, nodes []*node, want int, count func(*node, []control.FDBEntry) int) ([]time.Time, error) {
	clients := make([]*control.Client, len(nodes))
	for i, nd := range nodes {
		clients[i] = control.NewClient(nd.socket)
	}
	have := make([]int, len(nodes))
	at := make([]time.Time, len(nodes))
	errs := make([]error, len(nodes))
	deadline := time.Now().Add(gossipWait)
	tick := time.NewTicker(gossipPoll)
	defer tick.Stop()
	for {
		var wg sync.WaitGroup
		for i, nd := range nodes {
			if have[i] >= want {
				continue
			}
			wg.Go(func() {
				gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var es []control.FDBEntry
				if errs[i] = clients[i].Get(gctx, "/v1/fdb", &es); errs[i] == nil {
					have[i] = count(nd, es)
				}
			})
		}
		wg.Wait()
		now := time.Now()
		var behind []string
		for i, nd := range nodes {
			if have[i] >= want {
				if at[i].IsZero() {
					at[i] = now
				}
				continue
			}
			select {
			case <-nd.proc.Done():
				return nil, fmt.Errorf("ovlsw %s exited:\n%s", nd.name, nd.proc.Output())
			default:
			}
			s := fmt.Sprintf("%s %d/%d", nd.name, have[i], want)
			if errs[i] != nil {
				s += fmt.Sprintf(" (%v)", errs[i])
			}
			behind = append(behind, s)
		}
		if len(behind) == 0 {
			return at, nil
		}
		if now.After(deadline) {
			return nil, fmt.Errorf("not converged after %v: %d of %d nodes behind: %s",
				gossipWait, len(behind), len(nodes), strings.Join(behind, ", "))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%d of %d nodes behind)", context.Cause(ctx), len(behind), len(nodes))
		case <-tick.C:
		}
	}
}
