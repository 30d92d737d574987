package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// netCalls records the lists OnNetworks is called with.
type netCalls struct {
	mu      sync.Mutex
	calls   [][]Network
	inside  atomic.Int32
	overlap atomic.Bool // two calls ran at once
}

func (c *netCalls) record(l []Network) {
	if c.inside.Add(1) > 1 {
		c.overlap.Store(true)
	}
	defer c.inside.Add(-1)
	c.mu.Lock()
	c.calls = append(c.calls, l)
	c.mu.Unlock()
}

func (c *netCalls) get() [][]Network {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// last checks that the latest call had want.
func (c *netCalls) last(want []Network) error {
	if c.overlap.Load() {
		return errors.New("OnNetworks ran concurrently with itself")
	}
	calls := c.get()
	if len(calls) == 0 {
		if len(want) == 0 {
			return nil
		}
		return errors.New("OnNetworks not called")
	}
	if err := diffNets(want, calls[len(calls)-1]); err != nil {
		return fmt.Errorf("OnNetworks: %w", err)
	}
	return nil
}

// withNetCalls gives each node started with it a recorder, by node name.
func withNetCalls(m map[string]*netCalls) nodeOpt {
	return func(c *Config) {
		rec := &netCalls{}
		m[c.Name] = rec
		c.OnNetworks = rec.record
	}
}

func diffNets(want, got []Network) error {
	if !slices.Equal(want, got) {
		return fmt.Errorf("networks (-want +got)\n-%+v\n+%+v", want, got)
	}
	return nil
}

// netsEverywhere checks what every node lists as Networks and Conflicts.
func netsEverywhere(nodes []*node, want, conflicts []Network) error {
	for _, n := range nodes {
		if err := diffNets(want, n.agent.Networks()); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if err := diffNets(conflicts, n.agent.Conflicts()); err != nil {
			return fmt.Errorf("%s: conflicts: %w", n.name, err)
		}
	}
	return nil
}

// testNet is network i: VNI 1000+i, subnet 10.(100+i).0.0/16.
func testNet(i int) Network {
	return Network{
		Name: fmt.Sprintf("net%d", i), VNI: uint32(1000 + i),
		Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i), 0, 0}), 16),
		Gateway: netip.AddrFrom4([4]byte{10, byte(100 + i), 0, 1}),
		MTU:     1400, Flood: "flood",
	}
}

// netRecordOf returns a copy of what a holds for name.
func netRecordOf(a *Agent, name string) (netRecord, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.nets[name]
	if r == nil {
		return netRecord{}, false
	}
	return *r, true
}

func mustPut(t *testing.T, n *node, nw Network) {
	t.Helper()
	if err := n.agent.PutNetwork(nw); err != nil {
		t.Fatalf("%s: put %s: %v", n.name, nw.Name, err)
	}
}

func TestNetworksConverge(t *testing.T) {
	calls := map[string]*netCalls{}
	nodes := startCluster(t, 5, withNetCalls(calls))
	var want []Network
	for i, n := range nodes {
		mustPut(t, n, testNet(i))
		want = append(want, testNet(i))
	}
	waitFor(t, settle, "networks on 5 nodes", func() error {
		if err := netsEverywhere(nodes, want, nil); err != nil {
			return err
		}
		for _, n := range nodes {
			if err := calls[n.name].last(want); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
			if s := n.agent.Stats(); s.Networks != 5 || s.NetworkConflicts != 0 || s.Malformed != 0 {
				return fmt.Errorf("%s: stats %+v", n.name, s)
			}
		}
		return nil
	})
}

// TestNetworkUpdateWins updates a network from other nodes than its
// creator: each write follows what its node saw, so it wins everywhere.
func TestNetworkUpdateWins(t *testing.T) {
	nodes := startCluster(t, 3)
	red := testNet(1)
	mustPut(t, nodes[0], red)
	waitFor(t, settle, "created", func() error { return netsEverywhere(nodes, []Network{red}, nil) })
	first, _ := netRecordOf(nodes[0].agent, red.Name)

	red.MTU = 1300
	mustPut(t, nodes[2], red)
	waitFor(t, settle, "first update", func() error { return netsEverywhere(nodes, []Network{red}, nil) })
	red.Flood = "drop"
	mustPut(t, nodes[1], red)
	waitFor(t, settle, "second update", func() error { return netsEverywhere(nodes, []Network{red}, nil) })

	last, _ := netRecordOf(nodes[2].agent, red.Name)
	if last.Version <= first.Version || last.Writer != nodes[1].name || last.Created != first.Created {
		t.Fatalf("record %+v after %+v: want a higher version by %s, same creation", last, first, nodes[1].name)
	}
}

// TestNetworkDeleteNoResurrect deletes a network on another node than its
// creator, then replays the put it replaced, as a late broadcast and in a
// state: the network stays deleted.
func TestNetworkDeleteNoResurrect(t *testing.T) {
	nodes := startCluster(t, 3)
	red, blue := testNet(1), testNet(2)
	mustPut(t, nodes[0], red)
	mustPut(t, nodes[1], blue)
	waitFor(t, settle, "created", func() error { return netsEverywhere(nodes, []Network{red, blue}, nil) })
	old, _ := netRecordOf(nodes[2].agent, red.Name)

	if err := nodes[1].agent.DeleteNetwork(red.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "deleted", func() error {
		for _, n := range nodes {
			if s := n.agent.Stats(); s.NetworkTombstones != 1 {
				return fmt.Errorf("%s: stats %+v", n.name, s)
			}
		}
		return netsEverywhere(nodes, []Network{blue}, nil)
	})
	for _, n := range nodes {
		(*delegate)(n.agent).NotifyMsg(encodeNetMessage(&old))
		(*delegate)(n.agent).MergeRemoteState(encodeState(&state{Nets: []netRecord{old}}), false)
		if err := diffNets([]Network{blue}, n.agent.Networks()); err != nil {
			t.Fatalf("%s after the late put: %v", n.name, err)
		}
	}
	if err := nodes[2].agent.DeleteNetwork(red.Name); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("second delete = %v, want ErrNoNetwork", err)
	}
}

// TestNetworksLateJoiner: a node joining after the networks were made
// learns all of them, and the deletions, by push/pull alone.
func TestNetworksLateJoiner(t *testing.T) {
	nodes := startCluster(t, 3)
	for i, n := range nodes {
		mustPut(t, n, testNet(i))
	}
	all := []Network{testNet(0), testNet(1), testNet(2)}
	waitFor(t, settle, "created", func() error { return netsEverywhere(nodes, all, nil) })
	if err := nodes[0].agent.DeleteNetwork(testNet(2).Name); err != nil {
		t.Fatal(err)
	}
	want := []Network{testNet(0), testNet(1)}
	waitFor(t, settle, "converge", func() error { return netsEverywhere(nodes, want, nil) })
	for _, n := range nodes {
		n.agent.dropOut.Store(true) // no broadcasts: only push/pull can tell
	}
	calls := map[string]*netCalls{}
	late, err := startNode(t, 3, 0, []string{nodes[1].agent.Addr().String()}, withNetCalls(calls))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "late joiner learns networks", func() error {
		if s := late.agent.Stats(); s.NetworkTombstones != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		if err := calls[late.name].last(want); err != nil {
			return err
		}
		return netsEverywhere([]*node{late}, want, nil)
	})
}

// TestNetworksSurviveCreatorDeath: a network outlives the node that made
// it, and the dead node's addresses stay claimed (parked).
func TestNetworksSurviveCreatorDeath(t *testing.T) {
	nodes := startCluster(t, 3)
	creator := nodes[2]
	red := testNet(1)
	mustPut(t, creator, red)
	b := testBinding(creator, 1, 100)
	if err := creator.agent.Announce(b); err != nil {
		t.Fatal(err)
	}
	owners := map[*node][]Binding{creator: {b}}
	waitFor(t, settle, "converge", func() error {
		if err := converged(nodes, owners); err != nil {
			return err
		}
		return netsEverywhere(nodes, []Network{red}, nil)
	})

	if err := creator.agent.Close(); err != nil { // a crash
		t.Fatal(err)
	}
	live := nodes[:2]
	waitFor(t, settle, "creator declared dead", func() error {
		for _, n := range live {
			if st := memberStates(n)[creator.name]; st != stateDead {
				return fmt.Errorf("%s sees %s %q", n.name, creator.name, st)
			}
		}
		return converged(live, nil)
	})
	if err := netsEverywhere(live, []Network{red}, nil); err != nil {
		t.Fatalf("after the creator died: %v", err)
	}
	ip := b.IPs[0]
	parked := []Binding{{VNI: 100, MAC: b.MAC, IPs: b.IPs, Node: creator.name, VTEP: creator.vtep}}
	for _, n := range live {
		if got := n.agent.Claims(100, ip); !slices.EqualFunc(parked, got, bindingEqual) {
			t.Fatalf("%s: Claims(%v) (-want +got)\n-%+v\n+%+v", n.name, ip, parked, got)
		}
		if _, ok := n.agent.UsedIPs(100)[ip]; !ok {
			t.Fatalf("%s: UsedIPs lacks the dead node's %v", n.name, ip)
		}
	}

	late, err := startNode(t, 3, 0, []string{live[0].agent.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "joiner after the death learns the network", func() error {
		return netsEverywhere([]*node{late}, []Network{red}, nil)
	})
}

// TestNetworkConflictCluster writes conflicting networks on different
// nodes at once (same VNI; overlapping subnets; the same name): every node
// keeps the same ones and reports the same conflicts.
func TestNetworkConflictCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	blue := Network{Name: "blue", VNI: 500, Subnet: netip.MustParsePrefix("10.50.0.0/16")}
	green := Network{Name: "green", VNI: 500, Subnet: netip.MustParsePrefix("10.60.0.0/16")}
	wide := Network{Name: "wide", VNI: 600, Subnet: netip.MustParsePrefix("172.16.0.0/12")}
	narrow := Network{Name: "narrow", VNI: 601, Subnet: netip.MustParsePrefix("172.17.0.0/16")}
	red0 := Network{Name: "red", VNI: 700, MTU: 1400}
	red2 := Network{Name: "red", VNI: 700, MTU: 1300}
	mustPut(t, nodes[1], blue)
	mustPut(t, nodes[2], green)
	mustPut(t, nodes[0], wide)
	mustPut(t, nodes[1], narrow)
	mustPut(t, nodes[0], red0)
	mustPut(t, nodes[2], red2)

	// keep returns which of x and y every node must keep: created first.
	keep := func(x, y Network) (kept, lost Network) {
		rx, _ := netRecordOf(nodes[0].agent, x.Name)
		ry, _ := netRecordOf(nodes[0].agent, y.Name)
		if rx.Created > ry.Created || (rx.Created == ry.Created && x.Name > y.Name) {
			return y, x
		}
		return x, y
	}
	var want, conflicts []Network
	waitFor(t, settle, "conflicts resolved alike", func() error {
		for _, n := range nodes {
			if s := n.agent.Stats(); s.Networks+s.NetworkConflicts != 5 {
				return fmt.Errorf("%s: stats %+v", n.name, s)
			}
		}
		r, _ := netRecordOf(nodes[0].agent, "red")
		k1, l1 := keep(blue, green)
		k2, l2 := keep(wide, narrow)
		want = []Network{k1, k2, r.Net}
		conflicts = []Network{l1, l2}
		byName := func(x, y Network) int { return strings.Compare(x.Name, y.Name) }
		slices.SortFunc(want, byName)
		slices.SortFunc(conflicts, byName)
		return netsEverywhere(nodes, want, conflicts)
	})

	// Deleting the losers resolves the conflicts.
	for _, c := range conflicts {
		if err := nodes[0].agent.DeleteNetwork(c.Name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, settle, "conflicts deleted", func() error { return netsEverywhere(nodes, want, nil) })
}
