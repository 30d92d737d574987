package metrics

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/dns"
	"github.com/ovlsw/ovlsw/vtep/vteptest"
)

// requireEnv makes a missing tool a failure where CI installs it (as root
// tests are, bench/testbed.RequireRootEnv).
const requireEnv = "OVLSW_REQUIRE_ROOT_TESTS"

// fixture is a switch over the fakes with one port and one peer.
type fixture struct {
	sw   *vtep.Switch
	tbl  *fdb.Table
	dev  *taptest.Device
	net  *vteptest.Network
	peer netip.AddrPort
	c    *Collector
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{net: vteptest.NewNetwork(), tbl: fdb.New(fdb.DefaultConfig()), peer: netip.MustParseAddrPort("10.0.0.2:4789")}
	conn := f.net.Listen(netip.MustParseAddrPort("10.0.0.1:4789"))
	f.net.Tap(f.peer)
	sw, err := vtep.New(vtep.Config{Conn: conn, FDB: f.tbl, StaticPeers: []netip.AddrPort{f.peer}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	f.sw = sw
	sw.Serve([]uint32{42})
	f.dev = taptest.New("ep1", 1450)
	if _, err := sw.AddPort(vtep.PortConfig{VNI: 42, Device: f.dev}); err != nil {
		t.Fatal(err)
	}
	f.c = New(Sources{
		Switch: sw.Stats,
		FDB: func() (map[fdb.Origin]int, uint64) {
			by := f.tbl.CountByOrigin()
			m := map[fdb.Origin]int{}
			for _, o := range fdb.Origins() {
				m[o] = by[o]
			}
			return m, f.tbl.Refused()
		},
		Gossip: func() (gossip.Stats, []gossip.MemberInfo, bool) {
			return gossip.Stats{MessagesIn: 7, BytesIn: 700}, []gossip.MemberInfo{{Name: "a", State: "alive"}, {Name: "b", State: "dead"}}, true
		},
		KeyEpoch: func() (uint64, bool) { return 3, true },
		Extra: []Table{{Snapshot: func() any { return uint64(5) }, Counters: []Counter{
			{Name: "ovlsw_test_things_total", Help: "Things.", Get: func(s any) uint64 { return s.(uint64) }},
		}}, DNSCounters(func() dns.Stats { return dns.Stats{Answered: 4, Dropped: dns.DropStats{Rate: 1, Fragment: 2}} }),
			RouteCounters(sw.RouteStats)},
	}, BuildInfo{Version: "test"})
	return f
}

// broadcast is an Ethernet broadcast frame from src.
func broadcast(src byte) []byte {
	b := make([]byte, 60)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, src, 0x08, 0x00})
	return b
}

// value returns the value of the series name{labels} in the collector's
// output, or -1.
func value(t *testing.T, c *Collector, series string) float64 {
	t.Helper()
	reg := Registry(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, kv := range strings.Split(labels, ",") {
				if kv == "" {
					continue
				}
				k, v, _ := strings.Cut(kv, "=")
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == strings.Trim(v, `"`) {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// TestCountersShowInScrape: a counter bumped in the switch shows in the
// next scrape under its name and labels.
func TestCountersShowInScrape(t *testing.T) {
	f := newFixture(t)
	before := map[string]float64{}
	series := []string{
		`ovlsw_port_receive_frames_total{port="ep1",vni="42"}`,
		`ovlsw_port_receive_bytes_total{port="ep1",vni="42"}`,
		`ovlsw_vni_receive_frames_total{vni="42"}`,
		`ovlsw_peer_transmit_frames_total{peer="10.0.0.2:4789"}`,
		`ovlsw_fdb_entries{origin="local"}`,
		`ovlsw_drops_total{reason="bad_source"}`,
	}
	for _, s := range series {
		before[s] = value(t, f.c, s)
		if before[s] < 0 {
			t.Errorf("%s missing from the scrape", s)
		}
	}
	f.dev.Inject(broadcast(1))
	bad := broadcast(0) // zero source MAC: dropped as bad_source
	bad[6] = 0
	f.dev.Inject(bad)
	deadline := time.Now().Add(5 * time.Second)
	for value(t, f.c, series[len(series)-1]) == before[series[len(series)-1]] && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	want := map[string]float64{series[0]: 2, series[1]: 120, series[2]: 2, series[3]: 1, series[4]: 1, series[5]: 1}
	want[series[0]], want[series[1]], want[series[2]] = 2, 120, 2 // both frames were read
	for _, s := range series {
		if got := value(t, f.c, s) - before[s]; got != want[s] {
			t.Errorf("%s rose by %v, want %v", s, got, want[s])
		}
	}
	for s, w := range map[string]float64{
		`ovlsw_gossip_members{state="alive"}`:       1,
		`ovlsw_gossip_members{state="dead"}`:        1,
		`ovlsw_gossip_members{state="suspect"}`:     0,
		`ovlsw_gossip_messages_received_total`:      7,
		`ovlsw_gossip_message_received_bytes_total`: 700,
		`ovlsw_gossip_key_epoch`:                    3,
		`ovlsw_test_things_total`:                   5,
		`ovlsw_port_up{port="ep1"}`:                 1,
		`ovlsw_vni_ports{vni="42"}`:                 1,
		`ovlsw_proxy_arp_answers_total`:             0,
		`ovlsw_build_info{version="test"}`:          1,
		`ovlsw_offload_info{gro="off"}`:             1,
	} {
		if got := value(t, f.c, s); got != w {
			t.Errorf("%s = %v, want %v", s, got, w)
		}
	}
}

// TestNoPerMACLabels: no label carries a MAC or endpoint address, and
// every name is namespaced.
func TestNoPerMACLabels(t *testing.T) {
	f := newFixture(t)
	f.dev.Inject(broadcast(1))
	mfs, err := Registry(f.c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"port": true, "vni": true, "peer": true, "reason": true, "origin": true, "state": true,
		"version": true, "goversion": true, "tap": true, "udp": true, "gro": true}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "ovlsw_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s is not namespaced", n)
		}
		if !strings.HasPrefix(n, "ovlsw_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %s", n, l.GetName())
				}
			}
		}
	}
}

// TestLint runs client_golang's own lint (promlint) on the collector.
func TestLint(t *testing.T) {
	f := newFixture(t)
	problems, err := testutil.CollectAndLint(f.c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestPromtool serves the metrics over HTTP and checks the answer with
// `promtool check metrics` (Debian's prometheus package).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(requireEnv) == "1" {
			t.Fatalf("promtool is not installed (apt-get install prometheus) and %s=1 forbids skipping", requireEnv)
		}
		t.Skipf("promtool is not installed (apt-get install prometheus); set %s=1 to make this a failure", requireEnv)
	}
	f := newFixture(t)
	f.dev.Inject(broadcast(1))
	srv, err := Listen("127.0.0.1:0", Registry(f.c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body.String(), `ovlsw_port_receive_frames_total{port="ep1",vni="42"}`) {
		t.Fatalf("scrape lacks the port's counter:\n%s", body.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// BenchmarkScrape measures one scrape of a node with 100 ports and 10,000
// FDB entries (the figure of issue 18).
func BenchmarkScrape(b *testing.B) {
	net := vteptest.NewNetwork()
	tbl := fdb.New(fdb.DefaultConfig())
	sw, err := vtep.New(vtep.Config{Conn: net.Listen(netip.MustParseAddrPort("10.0.0.1:4789")), FDB: tbl})
	if err != nil {
		b.Fatal(err)
	}
	defer sw.Close()
	var peers []netip.AddrPort
	for i := range 10 {
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 4789))
	}
	for v := range 10 {
		sw.SetPeers(uint32(100+v), peers)
	}
	for i := range 100 {
		if _, err := sw.AddPort(vtep.PortConfig{Name: fmt.Sprintf("ep%d", i), VNI: uint32(100 + i%10), Device: taptest.New(fmt.Sprintf("ep%d", i), 1450)}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10000 {
		k := fdb.Key{VNI: uint32(100 + i%10), MAC: fdb.MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)}}
		tbl.Set(fdb.Entry{Key: k, Location: fdb.Location{VTEP: peers[i%10]}, Origin: fdb.OriginGossip, Node: "n"})
	}
	c := New(Sources{Switch: sw.Stats, FDB: func() (map[fdb.Origin]int, uint64) {
		by := tbl.CountByOrigin()
		m := map[fdb.Origin]int{}
		for _, o := range fdb.Origins() {
			m[o] = by[o]
		}
		return m, tbl.Refused()
	}}, BuildInfo{Version: "bench"})
	reg := Registry(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDashboardNames: every ovlsw_ metric the Grafana dashboard
// (docs/grafana-dashboard.json) queries is one the node exports.
func TestDashboardNames(t *testing.T) {
	b, err := os.ReadFile("../../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 256)
	New(Sources{Extra: []Table{{Counters: []Counter{
		{Name: "ovlsw_capture_frames_total"}, {Name: "ovlsw_capture_lost_total"},
		{Name: "ovlsw_events_published_total"}, {Name: "ovlsw_events_lost_total"},
	}}, DNSCounters(nil), RouteCounters(nil)}}, BuildInfo{}).Describe(ch)
	close(ch)
	for d := range ch {
		name, _, _ := strings.Cut(strings.TrimPrefix(d.String(), `Desc{fqName: "`), `"`)
		exported[name] = true
	}
	used := regexp.MustCompile(`ovlsw_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no ovlsw metric")
	}
	for _, n := range used {
		if !exported[n] {
			t.Errorf("the dashboard queries %s, which the node does not export", n)
		}
	}
}
