package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive one agent's delegate with crafted network records on a
// fake clock, as store_test.go does for bindings.

// warnLog keeps the messages of warnings and errors.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnLog) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	w.mu.Unlock()
	return nil
}
func (w *warnLog) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnLog) WithGroup(string) slog.Handler      { return w }

func (w *warnLog) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// net delivers a network broadcast.
func (s *solo) net(r netRecord) { s.d.NotifyMsg(encodeNetMessage(&r)) }

// live is a live record written by writer at version v, created at c.
func liveRec(n Network, writer string, v, c uint64) netRecord {
	return netRecord{Net: n, Version: v, Created: c, Writer: writer}
}

func (s *solo) wantNets(nets, conflicts []Network) {
	s.t.Helper()
	if err := netsEverywhere([]*node{s.n}, nets, conflicts); err != nil {
		s.t.Fatal(err)
	}
}

func TestRuleNetworkVersion(t *testing.T) {
	s := newSolo(t)
	red := func(mtu int) Network { return Network{Name: "red", VNI: 5, MTU: mtu} }
	s.net(liveRec(red(1), "x", 10, 10))
	s.wantNets([]Network{red(1)}, nil)
	s.net(liveRec(red(2), "y", 9, 9)) // older
	s.wantNets([]Network{red(1)}, nil)
	s.net(liveRec(red(3), "y", 10, 10)) // tie: the lower writer name keeps it
	s.wantNets([]Network{red(1)}, nil)
	s.net(liveRec(red(4), "w", 10, 10))
	s.wantNets([]Network{red(4)}, nil)
	s.net(liveRec(red(5), "z", 11, 10))
	s.wantNets([]Network{red(5)}, nil)

	// Lamport: a version above this node's clock raises it, so the next
	// local write wins.
	a := s.n.agent
	high := a.epoch + 1000
	s.net(liveRec(red(6), "z", high, 10))
	s.wantNets([]Network{red(6)}, nil)
	if err := a.PutNetwork(red(7)); err != nil {
		t.Fatal(err)
	}
	s.wantNets([]Network{red(7)}, nil)
	r, _ := netRecordOf(a, "red")
	if r.Version != high+1 || r.Writer != s.n.name || r.Created != 10 {
		t.Fatalf("local write %+v: want version %d, created 10", r, high+1)
	}
	if err := a.PutNetwork(red(7)); err != nil { // unchanged: no write
		t.Fatal(err)
	}
	if r2, _ := netRecordOf(a, "red"); r2.Version != r.Version {
		t.Fatalf("unchanged put wrote version %d", r2.Version)
	}
	// The same version from the same writer with other contents (its
	// clock went back, as after a restart): the greater encoding wins, on
	// every node.
	again := func(mtu int) netRecord {
		r := liveRec(red(mtu), s.n.name, high+1, 10)
		r.Time = s.clk.Now().UnixNano()
		return r
	}
	s.net(again(8))
	s.wantNets([]Network{red(8)}, nil) // MTU 8 encodes greater than 7
	s.net(again(7))
	s.wantNets([]Network{red(8)}, nil)
}

func TestRuleNetworkTombstone(t *testing.T) {
	s := newSolo(t)
	a := s.n.agent
	red := Network{Name: "red", VNI: 5}
	now := s.clk.Now().UnixNano()
	rec := func(v uint64) netRecord { r := liveRec(red, "x", v, 10); r.Time = now; return r }
	tomb := func(v uint64, at int64) netRecord {
		return netRecord{Net: Network{Name: red.Name}, Deleted: true, Version: v, Writer: "y", Time: at}
	}
	s.net(rec(10))
	s.net(tomb(12, now))
	s.wantNets(nil, nil)
	s.net(rec(11)) // late, older put
	s.wantNets(nil, nil)
	if st := a.Stats(); st.NetworkTombstones != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.net(rec(13)) // a newer put creates it again
	s.wantNets([]Network{red}, nil)

	if err := a.DeleteNetwork(red.Name); err != nil {
		t.Fatal(err)
	}
	s.wantNets(nil, nil)
	got, err := decodeState(s.d.LocalState(false))
	if err != nil || len(got.Nets) != 1 || !got.Nets[0].Deleted || got.Nets[0].Writer != s.n.name {
		t.Fatalf("LocalState networks %+v, %v: want our tombstone", got.Nets, err)
	}
	s.clk.Add(NetworkTombstoneTTL / 2)
	a.expire()
	if st := a.Stats(); st.NetworkTombstones != 1 {
		t.Fatalf("expired early: %+v", st)
	}
	s.clk.Add(NetworkTombstoneTTL)
	if got, _ := decodeState(s.d.LocalState(false)); len(got.Nets) != 0 {
		t.Fatalf("LocalState sends an expired tombstone: %+v", got.Nets)
	}
	a.expire()
	if st := a.Stats(); st.NetworkTombstones != 0 {
		t.Fatalf("not expired: %+v", st)
	}

	// A tombstone already expired deletes what it beats, but is not kept
	// (else nodes would hand it back and forth for ever).
	s.net(rec(20))
	s.wantNets([]Network{red}, nil)
	s.net(tomb(21, s.clk.Now().Add(-NetworkTombstoneTTL-time.Hour).UnixNano()))
	s.wantNets(nil, nil)
	if st := a.Stats(); st.NetworkTombstones != 0 {
		t.Fatalf("expired tombstone kept: %+v", st)
	}
}

func TestRuleNetworkConflict(t *testing.T) {
	logs := &warnLog{}
	s := newSolo(t, func(c *Config) { c.Logger = slog.New(logs) })
	const warning = "network conflicts"
	blue := Network{Name: "blue", VNI: 5, Subnet: netip.MustParsePrefix("10.5.0.0/16")}
	green := Network{Name: "green", VNI: 5, Subnet: netip.MustParsePrefix("10.6.0.0/16")}
	s.net(liveRec(blue, "x", 10, 10))
	s.net(liveRec(green, "y", 9, 9)) // created first: kept
	s.wantNets([]Network{green}, []Network{blue})
	s.wantNets([]Network{green}, []Network{blue})
	if n := logs.count(warning); n != 1 {
		t.Fatalf("conflict logged %d times, want once", n)
	}
	// Updating the kept network keeps it (it is ordered by creation).
	green.MTU = 1300
	s.net(liveRec(green, "x", 30, 9))
	s.wantNets([]Network{green}, []Network{blue})

	// Overlapping subnets; a tie of creation goes to the lower name.
	wide := Network{Name: "wide", VNI: 7, Subnet: netip.MustParsePrefix("10.0.0.0/8")}
	narrow := Network{Name: "a-narrow", VNI: 8, Subnet: netip.MustParsePrefix("10.6.1.0/24")}
	v6a := Network{Name: "v6a", VNI: 9, Subnet: netip.MustParsePrefix("2001:db8::/48")}
	v6b := Network{Name: "v6b", VNI: 10, Subnet: netip.MustParsePrefix("2001:db8:0:1::/64")}
	s.net(liveRec(wide, "x", 40, 20))
	s.net(liveRec(narrow, "y", 41, 20))
	s.net(liveRec(v6b, "y", 43, 21))
	s.net(liveRec(v6a, "x", 42, 21))
	s.wantNets([]Network{green, v6a}, []Network{narrow, blue, v6b, wide})
	if n := logs.count(warning); n != 4 {
		t.Fatalf("conflicts logged %d times, want 4", n)
	}
	if st := s.n.agent.Stats(); st.Networks != 2 || st.NetworkConflicts != 4 {
		t.Fatalf("stats %+v", st)
	}

	// Deleting the kept network lets the next ones in, in creation order:
	// blue (10), then a-narrow (20, before wide by name) inside 10.0.0.0/8
	// is kept and wide then overlaps it.
	if err := s.n.agent.DeleteNetwork(green.Name); err != nil {
		t.Fatal(err)
	}
	s.wantNets([]Network{narrow, blue, v6a}, []Network{v6b, wide})

	// A second subnet counts: one overlapping a kept network's conflicts,
	// and a kept network's second subnet keeps others out.
	multi := Network{Name: "multi", VNI: 11, Subnet: netip.MustParsePrefix("192.168.0.0/24"),
		More: [MaxSubnets - 1]NetSubnet{{Prefix: netip.MustParsePrefix("2001:db8:0:2::/64")}}}
	s.net(liveRec(multi, "x", 50, 50))
	s.wantNets([]Network{narrow, blue, v6a}, []Network{multi, v6b, wide})
	other := Network{Name: "other", VNI: 12, Subnet: netip.MustParsePrefix("172.16.0.0/24"),
		More: [MaxSubnets - 1]NetSubnet{{Prefix: netip.MustParsePrefix("10.6.1.128/25")}}}
	s.net(liveRec(other, "x", 51, 51))
	s.wantNets([]Network{narrow, blue, v6a}, []Network{multi, other, v6b, wide})
}

func TestOnNetworks(t *testing.T) {
	calls := &netCalls{}
	var ag atomic.Pointer[Agent]
	s := newSolo(t, func(c *Config) {
		c.OnNetworks = func(l []Network) {
			if a := ag.Load(); a != nil {
				a.Networks() // the agent's lock is not held
			}
			calls.record(l)
		}
	})
	ag.Store(s.n.agent)
	a := s.n.agent
	red, blue := testNet(1), testNet(2)
	var want [][]Network
	step := func(what string, do func(), list []Network) {
		t.Helper()
		do()
		if list != nil {
			want = append(want, list)
		}
		waitFor(t, settle, what, func() error {
			if got := calls.get(); !slices.EqualFunc(want, got, slices.Equal) {
				return fmt.Errorf("calls (-want +got)\n-%+v\n+%+v", want, got)
			}
			return nil
		})
	}
	put := func(n Network) func() {
		return func() {
			if err := a.PutNetwork(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	step("local put", put(red), []Network{red})
	step("remote put", func() { s.net(liveRec(blue, "x", 1, 1)) }, []Network{red, blue})
	step("unchanged put", put(red), nil)
	red2 := red
	red2.MTU = 9000
	step("update", put(red2), []Network{red2, blue})
	step("conflicting remote put", func() {
		c := testNet(3)
		c.VNI = red.VNI
		s.net(liveRec(c, "x", a.epoch+100, a.epoch+100))
	}, nil)
	step("tombstone of an unknown network", func() {
		s.net(netRecord{Net: Network{Name: "gone"}, Deleted: true, Version: 5, Writer: "x"})
	}, nil)
	step("delete", func() {
		if err := a.DeleteNetwork(blue.Name); err != nil {
			t.Fatal(err)
		}
	}, []Network{red2})
	step("state", func() {
		st := state{Nets: []netRecord{liveRec(blue, "y", a.epoch+200, a.epoch+200)}}
		s.d.MergeRemoteState(encodeState(&st), false)
	}, []Network{red2, blue})
	if calls.overlap.Load() {
		t.Fatal("OnNetworks ran concurrently with itself")
	}
}

func TestPutNetworkRejects(t *testing.T) {
	s := newSolo(t)
	good := testNet(1)
	for _, tc := range []struct {
		name string
		mod  func(*Network)
	}{
		{"no name", func(n *Network) { n.Name = "" }},
		{"long name", func(n *Network) { n.Name = strings.Repeat("x", 256) }},
		{"vni", func(n *Network) { n.VNI = 1 << 24 }},
		{"host bits", func(n *Network) { n.Subnet = netip.MustParsePrefix("10.1.2.3/16") }},
		{"gateway outside", func(n *Network) { n.Gateway = netip.MustParseAddr("10.1.0.1") }},
		{"gateway without subnet", func(n *Network) { n.Subnet = netip.Prefix{} }},
		{"mtu", func(n *Network) { n.MTU = 70000 }},
		{"negative mtu", func(n *Network) { n.MTU = -1 }},
		{"long flood", func(n *Network) { n.Flood = strings.Repeat("f", 256) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := good
			tc.mod(&n)
			if err := s.n.agent.PutNetwork(n); err == nil {
				t.Fatal("PutNetwork succeeded")
			}
		})
	}
	// A zoned gateway is stored without its zone.
	v6 := Network{Name: "v6", Subnet: netip.MustParsePrefix("fe80::/64"), Gateway: netip.MustParseAddr("fe80::1%eth0")}
	if err := s.n.agent.PutNetwork(v6); err != nil {
		t.Fatal(err)
	}
	v6.Gateway = v6.Gateway.WithZone("")
	s.wantNets([]Network{v6}, nil)
	if err := s.n.agent.DeleteNetwork("nothing"); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("DeleteNetwork of nothing = %v", err)
	}
	if err := s.n.agent.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.n.agent.PutNetwork(good); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutNetwork after Leave = %v", err)
	}
	if err := s.n.agent.DeleteNetwork(v6.Name); !errors.Is(err, ErrClosed) {
		t.Fatalf("DeleteNetwork after Leave = %v", err)
	}
}

// TestNetworkBound fills the records to MaxNetworks: a new remote network
// is dropped and counted, a local one refused, and a tombstone makes room.
func TestNetworkBound(t *testing.T) {
	s := newSolo(t)
	a := s.n.agent
	st := state{Nets: make([]netRecord, 0, MaxNetworks)}
	for i := range MaxNetworks {
		st.Nets = append(st.Nets, liveRec(Network{Name: fmt.Sprintf("n%04d", i), VNI: uint32(i)}, "x", 1, 1))
	}
	s.d.MergeRemoteState(encodeState(&st), false)
	if got := a.Stats(); got.Networks != MaxNetworks {
		t.Fatalf("stats %+v", got)
	}
	s.net(liveRec(Network{Name: "extra", VNI: 1 << 20}, "x", 2, 2))
	if got := a.Stats(); got.NetworksDropped != 1 || got.Networks != MaxNetworks {
		t.Fatalf("stats %+v", got)
	}
	if err := a.PutNetwork(Network{Name: "local", VNI: 1 << 21}); !errors.Is(err, ErrTooManyNetworks) {
		t.Fatalf("PutNetwork over the bound = %v", err)
	}
	if err := a.DeleteNetwork("n0000"); err != nil {
		t.Fatal(err)
	}
	if err := a.PutNetwork(Network{Name: "local", VNI: 1 << 21}); err != nil {
		t.Fatalf("PutNetwork with a tombstone to drop: %v", err)
	}
	if got := a.Stats(); got.Networks != MaxNetworks || got.NetworkTombstones != 0 {
		t.Fatalf("stats %+v", got)
	}
}
