package gossip

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// wantMembers is the member list node self should have: every other live
// node's VTEP, sorted, whatever its VNIs.
func wantMembers(live []*node, self *node) []netip.AddrPort {
	var out []netip.AddrPort
	for _, n := range live {
		if n != self {
			out = append(out, n.vtep)
		}
	}
	slices.SortFunc(out, func(x, y netip.AddrPort) int { return x.Compare(y) })
	return out
}

func membersConverged(live []*node) error {
	for _, n := range live {
		got, _ := n.peers.getMembers()
		if want := wantMembers(live, n); !slices.Equal(got, want) {
			return fmt.Errorf("%s: members (-want +got)\n-%v\n+%v", n.name, want, got)
		}
	}
	return nil
}

// TestMembersReported: every node is given the VTEPs of the other live
// members, including one that serves no VNI (so is no VNI's peer), and a
// member that leaves or fails is withdrawn.
func TestMembersReported(t *testing.T) {
	nodes := startCluster(t, 4)
	idle := nodes[1]
	if err := idle.agent.SetVNIs(nil, time.Second); err != nil {
		t.Fatal(err)
	}
	idle.vnis = nil
	waitFor(t, settle, "members and peers", func() error {
		if err := membersConverged(nodes); err != nil {
			return err
		}
		return converged(nodes, nil)
	})

	leaver := nodes[3]
	if err := leaver.agent.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := leaver.agent.Close(); err != nil {
		t.Fatal(err)
	}
	live := nodes[:3]
	waitFor(t, settle, "left member withdrawn", func() error { return membersConverged(live) })

	crashed := nodes[2]
	if err := crashed.agent.Close(); err != nil { // no Leave
		t.Fatal(err)
	}
	live = nodes[:2]
	waitFor(t, settle, "failed member withdrawn", func() error {
		if err := membersConverged(live); err != nil {
			return err
		}
		return converged(live, nil)
	})
}

// TestSyncMembers: syncPeersLocked gives Members the VTEPs of the alive
// members other than this node, sorted and without repeats, and only when
// that set changed.
func TestSyncMembers(t *testing.T) {
	self := netip.MustParseAddrPort("10.0.0.1:4789")
	v2 := netip.MustParseAddrPort("10.0.0.2:4789")
	v3 := netip.MustParseAddrPort("10.0.0.3:4789")
	rec := &recorder{}
	a := &Agent{cfg: Config{VTEP: self}, peers: rec, members: map[string]*member{}, peerSets: map[uint32][]netip.AddrPort{}}
	set := func(name, state string, vtep netip.AddrPort, vnis ...uint32) {
		a.members[name] = &member{name: name, state: state, meta: meta{VTEP: vtep, VNIs: vnis}}
	}
	steps := []struct {
		name     string
		change   func()
		want     []netip.AddrPort
		wantSets int // SetMembers calls so far
	}{
		{"no members", func() {}, nil, 0},
		{"one with no VNIs", func() { set("n3", stateAlive, v3) }, []netip.AddrPort{v3}, 1},
		{"sorted", func() { set("n2", stateAlive, v2, 100) }, []netip.AddrPort{v2, v3}, 2},
		{"a VNI change is no member change", func() { set("n2", stateAlive, v2, 100, 200) }, []netip.AddrPort{v2, v3}, 2},
		{"this node's VTEP under another name", func() { set("old-self", stateAlive, self) }, []netip.AddrPort{v2, v3}, 2},
		{"no VTEP", func() { set("n4", stateAlive, netip.AddrPort{}) }, []netip.AddrPort{v2, v3}, 2},
		{"one VTEP, two names", func() { set("n2b", stateAlive, v2) }, []netip.AddrPort{v2, v3}, 2},
		{"dead", func() { set("n3", stateDead, v3) }, []netip.AddrPort{v2}, 3},
		{"left", func() { set("n2", stateLeft, v2, 100); set("n2b", stateLeft, v2) }, nil, 4},
	}
	for _, st := range steps {
		st.change()
		a.syncPeersLocked()
		got, sets := rec.getMembers()
		if !slices.Equal(got, st.want) || sets != st.wantSets {
			t.Errorf("%s: members %v after %d calls, want %v after %d", st.name, got, sets, st.want, st.wantSets)
		}
	}
}
