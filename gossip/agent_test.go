package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
)

const settle = 15 * time.Second // generous deadline for -race on a busy machine

// announceAll has each node announce count bindings, alternating VNIs 100
// and 200 where the node serves 200.
func announceAll(t *testing.T, nodes []*node, count int) map[*node][]Binding {
	t.Helper()
	owners := map[*node][]Binding{}
	for _, n := range nodes {
		for j := range count {
			vni := uint32(100)
			if j%2 == 1 && slices.Contains(n.vnis, 200) {
				vni = 200
			}
			b := testBinding(n, j, vni)
			if err := n.agent.Announce(b); err != nil {
				t.Fatalf("%s: announce: %v", n.name, err)
			}
			owners[n] = append(owners[n], b)
		}
	}
	return owners
}

func memberStates(n *node) map[string]string {
	out := map[string]string{}
	for _, m := range n.agent.Members() {
		out[m.Name] = m.State
	}
	return out
}

func TestConvergence(t *testing.T) {
	nodes := startCluster(t, 5)
	owners := announceAll(t, nodes, 10)
	waitFor(t, settle, "5 nodes converge", func() error {
		if err := converged(nodes, owners); err != nil {
			return err
		}
		for _, n := range nodes {
			ms := n.agent.Members()
			if len(ms) != 5 {
				return fmt.Errorf("%s: %d members, want 5", n.name, len(ms))
			}
			for _, m := range ms {
				if m.State != stateAlive || m.Bindings != 10 || !m.VTEP.IsValid() || !m.Addr.IsValid() {
					return fmt.Errorf("%s: member %+v", n.name, m)
				}
			}
			if s := n.agent.Stats(); s.LocalBindings != 10 || s.RemoteBindings != 40 || s.Malformed != 0 {
				return fmt.Errorf("%s: stats %+v", n.name, s)
			}
		}
		return nil
	})
}

func TestKillAndRestart(t *testing.T) {
	nodes := startCluster(t, 4)
	owners := announceAll(t, nodes, 3)
	waitFor(t, settle, "converge", func() error { return converged(nodes, owners) })

	victim := nodes[3]
	if err := victim.agent.Close(); err != nil { // no Leave: a crash
		t.Fatal(err)
	}
	live := nodes[:3]
	delete(owners, victim)
	waitFor(t, settle, "dead node's bindings withdrawn", func() error {
		for _, n := range live {
			if st := memberStates(n)[victim.name]; st != stateDead {
				return fmt.Errorf("%s sees %s %q", n.name, victim.name, st)
			}
		}
		return converged(live, owners)
	})

	back, err := startNode(t, 3, victim.port, []string{nodes[0].agent.Addr().String()})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	owners[back] = announceAll(t, []*node{back}, 3)[back]
	live = append(live, back)
	waitFor(t, settle, "restarted node's bindings back", func() error { return converged(live, owners) })
}

func TestLeave(t *testing.T) {
	nodes := startCluster(t, 3)
	owners := announceAll(t, nodes, 4)
	waitFor(t, settle, "converge", func() error { return converged(nodes, owners) })

	leaver := nodes[2]
	if err := leaver.agent.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := leaver.agent.Announce(testBinding(leaver, 9, 100)); !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Leave = %v, want ErrClosed", err)
	}
	if err := leaver.agent.Close(); err != nil {
		t.Fatal(err)
	}
	if err := leaver.agent.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	delete(owners, leaver)
	live := nodes[:2]
	waitFor(t, settle, "left node's bindings withdrawn", func() error {
		for _, n := range live {
			if st := memberStates(n)[leaver.name]; st != stateLeft {
				return fmt.Errorf("%s sees %s %q", n.name, leaver.name, st)
			}
		}
		return converged(live, owners)
	})
}

// TestMobility drives MACs through the FDB, as the daemon does: a local
// sighting announces, a sighting elsewhere moves the MAC with a higher
// sequence number, and a MAC flapping between two nodes is flagged.
func TestMobility(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) {
		c.DuplicateMoves = 3
		c.DuplicateWindow = time.Minute
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	k := fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 0xaa, 1}}
	learn := func(n *node) {
		if !n.table.Learn(k, fdb.Location{Port: 1}, fdb.OriginLocal, time.Now().UnixNano()) {
			t.Fatalf("%s: Learn changed nothing", n.name)
		}
	}
	// owned waits until every other node has k from owner with seq.
	owned := func(owner *node, seq uint64) {
		t.Helper()
		waitFor(t, settle, fmt.Sprintf("%s owns seq %d", owner.name, seq), func() error {
			for _, n := range nodes {
				if n == owner {
					continue
				}
				e, ok := n.table.Get(k)
				if !ok || e.Origin != fdb.OriginGossip || e.Node != owner.name || e.Seq != seq || e.VTEP != owner.vtep {
					return fmt.Errorf("%s: %+v", n.name, e)
				}
			}
			return nil
		})
	}

	learn(a)
	owned(a, 0)
	learn(b) // replaces a's gossip entry with a local one at seq 1
	owned(b, 1)
	waitFor(t, settle, "old owner stops announcing", func() error {
		if s := a.agent.Stats(); s.LocalBindings != 0 {
			return fmt.Errorf("a owns %d", s.LocalBindings)
		}
		return nil
	})
	if e, _ := c.table.Get(k); e.Duplicate {
		t.Fatal("duplicate after one move")
	}

	for i, n := range []*node{a, b, a} {
		learn(n)
		owned(n, uint64(2+i))
	}
	waitFor(t, settle, "flapping MAC flagged", func() error {
		e, _ := c.table.Get(k)
		if !e.Duplicate || c.agent.Stats().Duplicates != 1 {
			return fmt.Errorf("c: %+v", e)
		}
		return nil
	})

	// A removed local entry is withdrawn everywhere.
	a.table.Delete(k)
	waitFor(t, settle, "withdrawn", func() error {
		for _, n := range nodes {
			if e, ok := n.table.Get(k); ok {
				return fmt.Errorf("%s still has %+v", n.name, e)
			}
		}
		return nil
	})
}

// TestPushPullRepair loses every broadcast of one node; its announcement
// and its withdrawal still reach the others by push/pull.
func TestPushPullRepair(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0]
	old := testBinding(a, 1, 100)
	if err := a.agent.Announce(old); err != nil {
		t.Fatal(err)
	}
	owners := map[*node][]Binding{a: {old}}
	waitFor(t, settle, "converge", func() error { return converged(nodes, owners) })

	a.agent.dropOut.Store(true)
	a.agent.Withdraw(old.VNI, old.MAC)
	fresh := testBinding(a, 2, 100)
	if err := a.agent.Announce(fresh); err != nil {
		t.Fatal(err)
	}
	owners[a] = []Binding{fresh}
	waitFor(t, settle, "push/pull repairs", func() error { return converged(nodes, owners) })
}

func TestWrongKey(t *testing.T) {
	withKey := func(k []byte) nodeOpt { return func(c *Config) { c.SecretKey = k } }
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a, err := startNode(t, 0, 0, nil, withKey(k1))
	if err != nil {
		t.Fatal(err)
	}
	join := []string{a.agent.Addr().String()}
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"other key", k2},
		{"no key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := startNode(t, 1, 0, join, withKey(tc.key))
			if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "key does not match") {
				t.Fatalf("join with %s: %v, want ErrKeyMismatch", tc.name, err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
	if _, err := startNode(t, 2, 0, join, withKey(k1)); err != nil {
		t.Fatalf("join with the right key: %v", err)
	}
	plain, err := startNode(t, 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = startNode(t, 4, 0, []string{plain.agent.Addr().String()}, withKey(k1))
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("keyed node joining a plain cluster: %v, want ErrKeyMismatch", err)
	}
}

// TestKeyRotation installs, uses and removes keys as the docs say, then
// checks a node holding only the new key can join.
func TestKeyRotation(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	withKey := func(k []byte) nodeOpt { return func(c *Config) { c.SecretKey = k } }
	nodes := startCluster(t, 2, withKey(k1))
	for _, step := range []func(*Agent) error{
		func(a *Agent) error { return a.InstallKey(k2) },
		func(a *Agent) error { return a.UseKey(k2) },
		func(a *Agent) error { return a.RemoveKey(k1) },
	} {
		for _, n := range nodes {
			if err := step(n.agent); err != nil {
				t.Fatal(err)
			}
		}
	}
	if keys := nodes[0].agent.ListKeys(); len(keys) != 1 || !bytes.Equal(keys[0], k2) {
		t.Fatalf("keys = %x", keys)
	}
	n, err := startNode(t, 2, 0, []string{nodes[0].agent.Addr().String()}, withKey(k2))
	if err != nil {
		t.Fatalf("join with the rotated key: %v", err)
	}
	owners := announceAll(t, []*node{n}, 1)
	waitFor(t, settle, "converge", func() error { return converged(append(nodes, n), owners) })

	plain, err := startNode(t, 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.agent.InstallKey(k1); !errors.Is(err, ErrNoEncryption) {
		t.Errorf("InstallKey without encryption = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := DefaultConfig()
	good.Name, good.VTEP, good.GossipPort = "n", netip.MustParseAddrPort("10.0.0.1:4789"), 0
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"long name", func(c *Config) { c.Name = strings.Repeat("x", 256) }},
		{"no vtep", func(c *Config) { c.VTEP = netip.AddrPort{} }},
		{"vni too big", func(c *Config) { c.VNIs = []uint32{1 << 24} }},
		{"too many vnis", func(c *Config) {
			for v := range uint32(MaxVNIs + 1) {
				c.VNIs = append(c.VNIs, v)
			}
		}},
		{"bad key", func(c *Config) { c.SecretKey = []byte("short") }},
		{"dup window", func(c *Config) { c.DuplicateWindow = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if a, err := New(c, fdb.New(fdb.Config{}), nil); err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestAnnounceRejects(t *testing.T) {
	n, err := startNode(t, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := fdb.MAC{2, 0, 0, 0, 0, 1}
	for _, tc := range []struct {
		name string
		b    Binding
	}{
		{"vni", Binding{VNI: 1 << 24, MAC: mac}},
		{"multicast", Binding{VNI: 1, MAC: fdb.Broadcast}},
		{"zero mac", Binding{VNI: 1}},
		{"other owner", Binding{VNI: 1, MAC: mac, Node: "someone"}},
		{"too many ips", Binding{VNI: 1, MAC: mac, IPs: make([]netip.Addr, MaxIPs+1)}},
		{"invalid ip", Binding{VNI: 1, MAC: mac, IPs: make([]netip.Addr, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := n.agent.Announce(tc.b); err == nil {
				t.Fatal("Announce succeeded")
			}
		})
	}
}

// TestCustomTransport runs two agents over transports built outside, as
// Config.Transport allows.
func TestCustomTransport(t *testing.T) {
	withTransport := func(c *Config) {
		tr, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		c.Transport = tr
	}
	nodes := startCluster(t, 2, withTransport)
	owners := announceAll(t, nodes, 2)
	waitFor(t, settle, "converge", func() error { return converged(nodes, owners) })
}

// TestSetVNIs changes a node's VNIs at run time; the others' peer lists follow.
func TestSetVNIs(t *testing.T) {
	nodes := startCluster(t, 3)
	waitFor(t, settle, "peers", func() error { return converged(nodes, nil) })
	n := nodes[1]
	if err := n.agent.SetVNIs([]uint32{300, 100, 300}, time.Second); err != nil {
		t.Fatal(err)
	}
	n.vnis = []uint32{100, 300}
	waitFor(t, settle, "peers after SetVNIs", func() error { return converged(nodes, nil) })
	if err := n.agent.SetVNIs([]uint32{1 << 24}, time.Second); err == nil {
		t.Fatal("SetVNIs accepted a 25-bit VNI")
	}
}

// TestLogRefusedEncryption: memberlist's lines about gossip refused for its
// encryption become one warning per refusedEvery, counting the rest; other
// lines stay debug records.
func TestLogRefusedEncryption(t *testing.T) {
	var buf bytes.Buffer
	w := &logWriter{l: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 3 {
		fmt.Fprintf(w, "[ERR] memberlist: Decrypt packet failed: No installed keys could decrypt the message from=192.168.93.4:7946\n")
	}
	fmt.Fprintf(w, "[DEBUG] memberlist: Stream connection from=192.168.93.2:41000\n")
	fmt.Fprintf(w, "[DEBUG] memberlist: Failed to join 192.168.93.1:7946: No installed keys could decrypt the message\n")
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "refused gossip") || !strings.Contains(out, "192.168.93.4") {
		t.Errorf("%d warnings, want 1 naming the sender:\n%s", n, out)
	}
	if strings.Contains(out, "Stream connection") || strings.Contains(out, "Failed to join") {
		t.Errorf("a debug line was logged at the default level:\n%s", out)
	}
	w.lastWarn = time.Time{} // refusedEvery has passed
	fmt.Fprintf(w, "[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=192.168.93.4:40000\n")
	if !strings.Contains(buf.String(), "refused_since_last_warning=2") {
		t.Errorf("the next warning does not count the 2 suppressed:\n%s", buf.String())
	}
}
