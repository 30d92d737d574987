package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

func TestEndpointNames(t *testing.T) {
	for _, tc := range []struct {
		name, dnsName, netns string
		aliases              []string
		service              string
		want                 *fdb.Names
		err                  string
	}{
		{name: "default from netns", netns: "c1", want: &fdb.Names{Name: "c1"}},
		{name: "netns path: none", netns: "/proc/1/ns/net"},
		{name: "odd netns name: none", netns: "bad..name"},
		{name: "explicit", dnsName: "nginx_web_2", netns: "c1", aliases: []string{"www"}, service: "web",
			want: &fdb.Names{Name: "nginx_web_2", Aliases: []string{"www"}, Service: "web"}},
		{name: "bad explicit", dnsName: "a/b", netns: "c1", err: `name "a/b"`},
		{name: "bad alias", dnsName: "c1", aliases: []string{"x y"}, err: `alias "x y"`},
		{name: "alias repeats name", dnsName: "c1", aliases: []string{"C1"}, err: "given twice"},
		{name: "aliases without name", netns: "/x", aliases: []string{"a"}, err: "need a name"},
		{name: "bad service", dnsName: "c1", service: "a b", err: `service "a b"`},
		{name: "too many aliases", dnsName: "c1", aliases: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, err: "at most 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := endpointNames(tc.dnsName, tc.netns, tc.aliases, tc.service)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestNamesTake: a name another endpoint holds (here one known by gossip
// from node n2) is refused, naming the holder; a free one is taken; the
// names API lists both with their nodes, and a removed entry takes its
// names with it.
func TestNamesTake(t *testing.T) {
	d := testDaemon(t)
	nw := gossip.Network{Name: "nm", VNI: 11, Subnet: netip.MustParsePrefix("10.0.11.0/24"), Gateway: netip.MustParseAddr("10.0.11.1")}
	if err := d.nets.create(nw); err != nil {
		t.Fatal(err)
	}
	if !d.names.table.IsDNSAddr(11, nw.Gateway) {
		t.Fatal("the network's gateway is not its DNS address")
	}
	remote := fdb.MAC{2, 0, 0, 0, 0, 0xaa}
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 11, MAC: remote}, Location: fdb.Location{VTEP: netip.MustParseAddrPort("192.0.2.2:4789")},
		Origin: fdb.OriginGossip, Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.11.7")},
		Names: &fdb.Names{Name: "db", Aliases: []string{"postgres"}}})
	mine := fdb.MAC{2, 0, 0, 0, 0, 0xbb}
	set := func(nm *fdb.Names) func() {
		return func() {
			d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 11, MAC: mine}, Location: fdb.Location{Port: 1}, Origin: fdb.OriginLocal,
				IPs: []netip.Addr{netip.MustParseAddr("10.0.11.8")}, Names: nm})
		}
	}
	err := d.names.take(nw, mine, &fdb.Names{Name: "web", Aliases: []string{"POSTGRES"}}, set(nil))
	if err == nil || !strings.Contains(err.Error(), `name "POSTGRES" is taken on network nm by the endpoint 02:00:00:00:00:aa (10.0.11.7) on node n2, named db`) {
		t.Fatalf("taken alias: %v", err)
	}
	if _, ok := d.fdb.Get(fdb.Key{VNI: 11, MAC: mine}); ok {
		t.Fatal("a refused name was set")
	}
	if err := d.names.take(nw, mine, &fdb.Names{Name: "web"}, set(&fdb.Names{Name: "web"})); err != nil {
		t.Fatal(err)
	}

	w := httptest.NewRecorder()
	d.handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/names?network=nm", nil))
	var names []control.Name
	if err := json.Unmarshal(w.Body.Bytes(), &names); err != nil || len(names) != 2 ||
		names[0].Name != "db" || names[0].Node != "n2" || names[1].Name != "web" || names[1].Node != "fuzz" {
		t.Fatalf("names: %s %v", w.Body, err)
	}
	d.fdb.Delete(fdb.Key{VNI: 11, MAC: remote})
	if _, ok := d.names.table.Holder(11, "db"); ok {
		t.Error("db still held after its entry went")
	}
	w = httptest.NewRecorder()
	d.handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/names?network=nope", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("names of a missing network: %d %s", w.Code, w.Body)
	}
	if st := d.status(); st.DNS == nil || st.DNS.Dropped == nil {
		t.Errorf("status without DNS counters: %+v", st.DNS)
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoints(endpointsConfig{NetnsEtc: dir, Log: slog.New(slog.DiscardHandler)}, nil, nil, nil, nil)
	web := endpoint{Netns: "c1", Network: "web", DNS: netip.MustParseAddr("10.0.9.1"), ResolvConf: true}
	db := endpoint{Netns: "c1", Network: "db", DNS: netip.MustParseAddr("fd00::53"), ResolvConf: true}
	path := filepath.Join(dir, "c1", "resolv.conf")
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return string(b)
	}

	e.byPort[1] = &attached{ep: web}
	if !e.syncResolvConfLocked("c1") || read() != resolvConfMark+"nameserver 10.0.9.1\nsearch web\n" {
		t.Fatalf("one network:\n%s", read())
	}
	e.byPort[2] = &attached{ep: db}
	if !e.syncResolvConfLocked("c1") || read() != resolvConfMark+"nameserver fd00::53\nnameserver 10.0.9.1\nsearch db web\n" {
		t.Fatalf("two networks:\n%s", read())
	}
	delete(e.byPort, 2)
	delete(e.byPort, 1)
	e.syncResolvConfLocked("c1")
	if _, err := os.Stat(filepath.Join(dir, "c1")); !os.IsNotExist(err) {
		t.Fatalf("directory left after the last endpoint: %v", err)
	}

	// A file of the operator's own is left alone.
	if err := os.MkdirAll(filepath.Join(dir, "c2"), 0o755); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "c2", "resolv.conf")
	if err := os.WriteFile(own, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	web.Netns = "c2"
	e.byPort[3] = &attached{ep: web}
	if e.syncResolvConfLocked("c2") {
		t.Error("claimed an operator's resolv.conf")
	}
	delete(e.byPort, 3)
	e.syncResolvConfLocked("c2")
	if b, _ := os.ReadFile(own); string(b) != "nameserver 192.0.2.53\n" {
		t.Errorf("operator's resolv.conf now %q", b)
	}
	// A namespace given by path has none.
	if e.resolvConfDir("/proc/1/ns/net") != "" || e.resolvConfDir("..") != "" {
		t.Error("a resolv.conf for a path")
	}
}

func TestDNSUpstreams(t *testing.T) {
	f := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(f, []byte("# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\nnameserver 2001:db8::53\n"), 0o644)
	got, err := readResolvConf(f)
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[fe80::1]:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("readResolvConf = %v, %v", got, err)
	}
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1:53", "192.0.2.1:5353": "192.0.2.1:5353", "[2001:db8::1]:54": "[2001:db8::1]:54", "2001:db8::1": "[2001:db8::1]:53"} {
		if got, err := ParseDNSUpstream(in); err != nil || got.String() != want {
			t.Errorf("ParseDNSUpstream(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseDNSUpstream("dns.example"); err == nil {
		t.Error("a host name accepted")
	}
}

// TestGatewayAddrsDNS: the switch answers ARP and ND for a network's own
// DNS address with its gateways, once; the default (the first gateway) is
// not listed twice.
func TestGatewayAddrsDNS(t *testing.T) {
	n := gossip.Network{Name: "prod", VNI: 7, Subnet: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1")}
	n.More[0] = gossip.NetSubnet{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Gateway: netip.MustParseAddr("10.1.2.1")}
	if got := gatewayAddrs(n); !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.1.2.1")}) {
		t.Errorf("without a DNS address: %v", got)
	}
	n.DNS = netip.MustParseAddr("10.1.2.53")
	if got := gatewayAddrs(n); len(got) != 3 || got[2] != n.DNS {
		t.Errorf("with DNS %v: %v", n.DNS, got)
	}
	if err := n.CheckDNSOf(); err != nil {
		t.Errorf("DNS address in the second subnet: %v", err)
	}
	n.DNS = netip.MustParseAddr("10.1.3.53")
	if err := n.CheckDNSOf(); err == nil {
		t.Error("DNS address outside every subnet accepted")
	}
}
