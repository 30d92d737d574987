package gossip

import (
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep"
)

// The daemon passes the switch itself as Members.
var _ Members = (*vtep.Switch)(nil)

// TestMain fails the run if agent or memberlist goroutines outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines polls until no goroutine runs agent or memberlist code and
// returns the offending stacks if some still do at the deadline.
func waitGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "hashicorp/memberlist") || strings.Contains(g, "gossip.(*Agent)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorder is a fake Members that keeps the last peer list of each VNI
// and the last member list, and counts SetMembers calls.
type recorder struct {
	mu         sync.Mutex
	peers      map[uint32][]netip.AddrPort
	members    []netip.AddrPort
	memberSets int
}

func (r *recorder) SetMembers(vteps []netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = slices.Clone(vteps)
	r.memberSets++
}

// getMembers returns the last member list and how many times it was set.
func (r *recorder) getMembers() ([]netip.AddrPort, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.members), r.memberSets
}

func (r *recorder) SetPeers(vni uint32, vteps []netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers == nil {
		r.peers = make(map[uint32][]netip.AddrPort)
	}
	if len(vteps) == 0 {
		delete(r.peers, vni)
	} else {
		r.peers[vni] = slices.Clone(vteps)
	}
}

func (r *recorder) get() map[uint32][]netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.peers)
}

// fastTune shortens memberlist's timers so that failure detection (0.5 to
// 1.5 s) and push/pull take about a second on loopback, yet a race-detector
// run on one busy CPU does not declare live nodes dead.
func fastTune(mc *memberlist.Config) {
	mc.ProbeInterval = 150 * time.Millisecond
	mc.ProbeTimeout = 100 * time.Millisecond
	mc.GossipInterval = 10 * time.Millisecond
	mc.PushPullInterval = 300 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 3
	mc.IndirectChecks = 2
	mc.TCPTimeout = time.Second
	mc.GossipToTheDeadTime = time.Second
}

// node is one agent with a real FDB fed back into it, as the daemon wires it.
type node struct {
	name  string
	vtep  netip.AddrPort
	vnis  []uint32
	port  int
	agent *Agent
	table *fdb.Table
	peers *recorder
}

type nodeOpt func(*Config)

// startNode starts agent name (VTEP 10.0.0.i) on loopback, joining join.
func startNode(t testing.TB, i int, port int, join []string, opts ...nodeOpt) (*node, error) {
	n := &node{
		name:  fmt.Sprintf("node%02d", i),
		vtep:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 4789),
		vnis:  []uint32{100},
		peers: &recorder{},
	}
	if i%2 == 0 {
		n.vnis = append(n.vnis, 200)
	}
	var ag atomic.Pointer[Agent]
	n.table = fdb.New(fdb.Config{OnChange: func(ev fdb.Event) {
		if a := ag.Load(); a != nil {
			a.OnFDBEvent(ev)
		}
	}})
	cfg := DefaultConfig()
	cfg.Name, cfg.VTEP, cfg.VNIs = n.name, n.vtep, n.vnis
	cfg.BindAddr = netip.MustParseAddr("127.0.0.1")
	cfg.GossipPort = port
	cfg.Join = join
	cfg.Tune = fastTune
	if testing.Verbose() && os.Getenv("GOSSIP_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := New(cfg, n.table, n.peers)
	if err != nil {
		return nil, err
	}
	ag.Store(a)
	n.agent = a
	n.port = int(a.Addr().Port())
	t.Cleanup(func() { a.Close() })
	return n, nil
}

// startCluster starts n nodes, each joining the first.
func startCluster(t testing.TB, count int, opts ...nodeOpt) []*node {
	t.Helper()
	nodes := make([]*node, 0, count)
	for i := range count {
		var join []string
		if i > 0 {
			join = []string{nodes[0].agent.Addr().String()}
		}
		n, err := startNode(t, i, 0, join, opts...)
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// view summarises a table's gossip-origin entries.
func view(tab *fdb.Table) map[fdb.Key]string {
	out := map[fdb.Key]string{}
	for _, e := range tab.Entries() {
		if e.Origin == fdb.OriginGossip {
			out[e.Key] = describe(e.Node, e.VTEP, e.Seq, e.IPs)
		}
	}
	return out
}

func describe(node string, vtep netip.AddrPort, seq uint64, ips []netip.Addr) string {
	return fmt.Sprintf("%s@%v seq=%d ips=%v", node, vtep, seq, ips)
}

// binding is a test binding: MAC 02:00:00:00:i:j with IP 10.1.i.j.
func testBinding(n *node, j int, vni uint32) Binding {
	i := n.vtep.Addr().As4()[3]
	return Binding{
		VNI: vni, MAC: fdb.MAC{2, 0, 0, 0, i, byte(j)},
		IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, i, byte(j)})},
	}
}

// wantView is what every other node should hold for the given owners'
// bindings.
func wantView(owners map[*node][]Binding, except *node) map[fdb.Key]string {
	out := map[fdb.Key]string{}
	for n, bs := range owners {
		if n == except {
			continue
		}
		for _, b := range bs {
			out[fdb.Key{VNI: b.VNI, MAC: b.MAC}] = describe(n.name, n.vtep, b.Seq, b.IPs)
		}
	}
	return out
}

// diffViews reports the first difference between want and got.
func diffViews(want, got map[fdb.Key]string) error {
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			return fmt.Errorf("%v/%v: (-want +got)\n-%s\n+%s", k.VNI, k.MAC, w, g)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%v/%v: unexpected %s", k.VNI, k.MAC, g)
		}
	}
	return nil
}

// wantPeers is the peer lists node self should have, given the live nodes.
func wantPeers(live []*node, self *node) map[uint32][]netip.AddrPort {
	out := map[uint32][]netip.AddrPort{}
	for _, n := range live {
		if n == self {
			continue
		}
		for _, v := range n.vnis {
			out[v] = append(out[v], n.vtep)
		}
	}
	for _, l := range out {
		slices.SortFunc(l, func(x, y netip.AddrPort) int { return x.Compare(y) })
	}
	return out
}

func diffPeers(want, got map[uint32][]netip.AddrPort) error {
	if !maps.EqualFunc(want, got, slices.Equal) {
		return fmt.Errorf("peers (-want +got)\n-%v\n+%v", want, got)
	}
	return nil
}

// converged checks every live node's FDB and peer lists.
func converged(live []*node, owners map[*node][]Binding) error {
	for _, n := range live {
		if err := diffViews(wantView(owners, n), view(n.table)); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if err := diffPeers(wantPeers(live, n), n.peers.get()); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
	}
	return nil
}
