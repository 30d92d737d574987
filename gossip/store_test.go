package gossip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
)

// These tests drive one agent's delegate directly with crafted members,
// messages and states, on a fake clock: the merge rules, deterministically.

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// solo is one agent and the fake members it hears from.
type solo struct {
	t   *testing.T
	n   *node
	d   *delegate
	clk *fakeClock
}

func newSolo(t *testing.T, opts ...nodeOpt) *solo {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	n, err := startNode(t, 0, 0, nil, append([]nodeOpt{func(c *Config) {
		c.Now = clk.Now
		c.DuplicateMoves = 2
		c.DuplicateWindow = time.Minute
		c.TombstoneTTL = time.Minute
	}}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &solo{t: t, n: n, d: (*delegate)(n.agent), clk: clk}
}

var (
	keyA  = fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 0xa, 1}}
	keyB  = fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 0xa, 2}}
	keyC  = fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 0xa, 3}}
	vteps = map[string]netip.AddrPort{
		"x": netip.MustParseAddrPort("10.9.0.1:4789"),
		"y": netip.MustParseAddrPort("10.9.0.2:4789"),
		"z": netip.MustParseAddrPort("10.9.0.3:4789"),
	}
)

func mlNode(name string, epoch uint64, vnis ...uint32) *memberlist.Node {
	return &memberlist.Node{
		Name: name, Addr: net.IP{127, 0, 0, 9}, Port: 7946,
		Meta: encodeMeta(&meta{VTEP: vteps[name], Epoch: epoch, VNIs: vnis}),
	}
}

func (s *solo) join(name string, epoch uint64, vnis ...uint32) {
	s.d.NotifyJoin(mlNode(name, epoch, vnis...))
}

func (s *solo) leave(name string, epoch uint64) { s.d.NotifyLeave(mlNode(name, epoch)) }

func (s *solo) claim(owner string, k fdb.Key, seq, gen uint64) {
	s.d.NotifyMsg(encodeMessage(&message{Owner: owner, Rec: record{Key: k, Seq: seq, Gen: gen, VTEP: vteps[owner]}}))
}

func (s *solo) withdraw(owner string, k fdb.Key, gen uint64) {
	s.d.NotifyMsg(encodeMessage(&message{Owner: owner, Rec: record{Key: k, Withdrawn: true, Gen: gen}}))
}

// want checks who the FDB says owns k ("" for no entry) and at which seq.
func (s *solo) want(k fdb.Key, owner string, seq uint64) {
	s.t.Helper()
	e, ok := s.n.table.Get(k)
	switch {
	case owner == "" && ok:
		s.t.Fatalf("%v: entry %+v, want none", k.MAC, e)
	case owner == "":
	case !ok || e.Node != owner || e.Seq != seq || e.VTEP != vteps[owner] || e.Origin != fdb.OriginGossip:
		s.t.Fatalf("%v: entry %+v (present %v), want %s seq %d", k.MAC, e, ok, owner, seq)
	}
}

func TestRuleHighestSeqWins(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1)
	s.join("y", 1)
	s.claim("x", keyA, 1, 10)
	s.want(keyA, "x", 1)
	s.claim("y", keyA, 1, 10) // tie: the lower name keeps it
	s.want(keyA, "x", 1)
	s.claim("y", keyA, 2, 11)
	s.want(keyA, "y", 2)
	s.claim("x", keyA, 1, 12) // newer from x, but a lower seq
	s.want(keyA, "y", 2)
}

func TestRuleTombstone(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1)
	s.claim("x", keyA, 0, 10)
	s.withdraw("x", keyA, 11)
	s.want(keyA, "", 0)
	s.claim("x", keyA, 0, 10) // late, older announcement
	s.want(keyA, "", 0)
	s.claim("x", keyA, 0, 12)
	s.want(keyA, "x", 0)
	if st := s.n.agent.Stats(); st.Tombstones != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.clk.Add(2 * time.Minute)
	s.n.agent.expire()
	if st := s.n.agent.Stats(); st.Tombstones != 0 {
		t.Fatalf("tombstone not expired: %+v", st)
	}
}

func TestRuleStateRemovesUnlisted(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1)
	s.join("y", 1)
	s.claim("x", keyA, 0, 10)
	s.claim("x", keyB, 0, 11)
	s.claim("x", keyC, 0, 20)
	// y's view of x, complete up to x's gen 15, lists only keyA.
	st := state{Sections: []section{
		{Owner: "y", Gen: 3},
		{Owner: "x", Gen: 15, Recs: []record{{Key: keyA, Gen: 10, VTEP: vteps["x"]}}},
	}}
	s.d.MergeRemoteState(encodeState(&st), false)
	s.want(keyA, "x", 0)
	s.want(keyB, "", 0)  // withdrawn by 15
	s.want(keyC, "x", 0) // newer than the snapshot
	// Our state now claims x complete at 15.
	got, err := decodeState(s.d.LocalState(false))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sections) != 2 || got.Sections[0].Owner != s.n.name || got.Sections[1].Owner != "x" ||
		got.Sections[1].Gen != 15 || len(got.Sections[1].Recs) != 2 {
		t.Fatalf("LocalState = %+v", got)
	}
}

func TestRuleEpoch(t *testing.T) {
	s := newSolo(t)
	s.join("x", 100)
	s.claim("x", keyA, 0, 50) // from before x's process started
	s.want(keyA, "", 0)
	if st := s.n.agent.Stats(); st.Stale != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.claim("x", keyA, 0, 150)
	s.want(keyA, "x", 0)
	s.join("x", 200) // x restarted: its earlier bindings are gone
	s.want(keyA, "", 0)
}

func TestRuleDeadOwner(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1)
	s.claim("x", keyA, 0, 10)
	s.leave("x", 1)
	s.want(keyA, "", 0)
	if st := s.n.agent.Stats(); st.Parked != 1 || st.RemoteBindings != 0 {
		t.Fatalf("stats %+v", st)
	}
	s.join("x", 1) // wrongly declared dead: same process
	s.want(keyA, "x", 0)
	s.leave("x", 1)
	s.clk.Add(2 * time.Minute)
	s.n.agent.expire()
	s.join("x", 1)
	s.want(keyA, "", 0) // parked too long: expired

	s.claim("z", keyB, 0, 10) // not a member yet
	s.want(keyB, "", 0)
	s.join("z", 1)
	s.want(keyB, "z", 0)
}

func TestRuleOwnBinding(t *testing.T) {
	s := newSolo(t)
	a := s.n.agent
	s.join("x", 1)
	if err := a.Announce(Binding{VNI: keyA.VNI, MAC: keyA.MAC}); err != nil {
		t.Fatal(err)
	}
	s.want(keyA, "", 0) // our own binding is not a gossip entry
	s.claim("x", keyA, 1, 10)
	s.want(keyA, "x", 1)
	if st := a.Stats(); st.LocalBindings != 0 {
		t.Fatalf("still owns it: %+v", st)
	}
	// Announcing it here again (it moved back) outbids x.
	if err := a.Announce(Binding{VNI: keyA.VNI, MAC: keyA.MAC}); err != nil {
		t.Fatal(err)
	}
	s.want(keyA, "", 0)
	got, _ := decodeState(s.d.LocalState(false))
	if own := got.Sections[0]; len(own.Recs) != 1 || own.Recs[0].Seq != 2 {
		t.Fatalf("own section %+v, want keyA at seq 2", own)
	}
	// A static entry is never replaced.
	s.n.table.Set(fdb.Entry{Key: keyB, Location: fdb.Location{VTEP: vteps["z"]}, Origin: fdb.OriginStatic})
	s.claim("x", keyB, 0, 11)
	if e, _ := s.n.table.Get(keyB); e.Origin != fdb.OriginStatic {
		t.Fatalf("static entry replaced: %+v", e)
	}
}

func TestRuleDuplicate(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1)
	s.join("y", 1)
	for i, owner := range []string{"x", "y", "x"} {
		s.claim(owner, keyA, uint64(i), uint64(10+i))
	}
	if e, _ := s.n.table.Get(keyA); e.Duplicate {
		t.Fatal("flagged after 2 moves")
	}
	s.claim("y", keyA, 3, 13) // the third move within the window
	if e, _ := s.n.table.Get(keyA); !e.Duplicate || s.n.agent.Stats().Duplicates != 1 {
		t.Fatalf("not flagged: %+v", e)
	}
	s.clk.Add(2 * time.Minute)
	s.n.agent.expire()
	if e, _ := s.n.table.Get(keyA); e.Duplicate || s.n.agent.Stats().Duplicates != 0 {
		t.Fatalf("flag not cleared: %+v", e)
	}
}

func TestRuleMalformed(t *testing.T) {
	s := newSolo(t)
	s.d.NotifyMsg([]byte{1})
	s.d.MergeRemoteState([]byte{1, 2, 0xff}, false)
	s.d.NotifyJoin(&memberlist.Node{Name: "w", Addr: net.IP{127, 0, 0, 9}, Port: 1, Meta: []byte("junk")})
	st := s.n.agent.Stats()
	if st.Malformed != 3 || st.MessagesIn != 1 || st.StatesIn != 1 {
		t.Fatalf("stats %+v", st)
	}
	if got := memberStates(s.n)["w"]; got != stateAlive {
		t.Fatalf("member w %q", got)
	}
}

func TestRulePeersAndLeave(t *testing.T) {
	s := newSolo(t)
	s.join("x", 1, 100, 200)
	s.join("y", 1, 100)
	peers := func(want map[uint32][]netip.AddrPort) {
		t.Helper()
		if err := diffPeers(want, s.n.peers.get()); err != nil {
			t.Fatal(err)
		}
	}
	peers(map[uint32][]netip.AddrPort{100: {vteps["x"], vteps["y"]}, 200: {vteps["x"]}})

	// y leaves: its leave message, then memberlist's notice.
	s.d.NotifyMsg(encodeMessage(&message{Owner: "y", Leave: true, Rec: record{Gen: 5}}))
	s.leave("y", 1)
	peers(map[uint32][]netip.AddrPort{100: {vteps["x"]}, 200: {vteps["x"]}})
	// x leaves: the notice first, the leave message late.
	s.leave("x", 1)
	s.d.NotifyMsg(encodeMessage(&message{Owner: "x", Leave: true, Rec: record{Gen: 5}}))
	peers(map[uint32][]netip.AddrPort{})
	if got := memberStates(s.n); got["x"] != stateLeft || got["y"] != stateLeft {
		t.Fatalf("states %v", got)
	}
}

// TestRulePinned: a pinned local entry (an attached endpoint) is never
// replaced; this node outbids the other owner, until the MAC is flagged
// duplicate, when it stops (RFC 7432 section 15).
func TestRulePinned(t *testing.T) {
	s := newSolo(t)
	a := s.n.agent
	s.join("x", 1)
	owned := func(seq uint64) {
		t.Helper()
		waitFor(t, settle, "own binding", func() error {
			got, _ := decodeState(s.d.LocalState(false))
			if own := got.Sections[0]; len(own.Recs) != 1 || own.Recs[0].Seq != seq {
				return fmt.Errorf("own section %+v, want seq %d", own, seq)
			}
			return nil
		})
	}
	s.n.table.Set(fdb.Entry{Key: keyA, Location: fdb.Location{Port: 1}, Origin: fdb.OriginLocal, Pinned: true})
	owned(0)
	s.claim("x", keyA, 5, 10) // x wins here for a moment, then we outbid it
	owned(6)
	s.claim("x", keyA, 7, 11) // the third move: flagged duplicate
	a.syncLocal(keyA)         // what the worker does: must not outbid now
	if st := a.Stats(); st.LocalBindings != 0 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := a.Announce(Binding{VNI: keyA.VNI, MAC: keyA.MAC}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Announce = %v, want ErrDuplicate", err)
	}
	if e, _ := s.n.table.Get(keyA); e.Origin != fdb.OriginLocal || !e.Pinned {
		t.Fatalf("pinned entry replaced: %+v", e)
	}
}
