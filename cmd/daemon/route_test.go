package daemon

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// prod is issue 17's network: two IPv4 subnets and one IPv6, two with
// gateways.
func prodNetwork(t *testing.T) gossip.Network {
	t.Helper()
	n := gossip.Network{Name: "prod", VNI: 4097}
	if err := n.SetSubnets([]gossip.NetSubnet{
		{Prefix: netip.MustParsePrefix("10.1.1.0/29"), Gateway: ip("10.1.1.1")},
		{Prefix: netip.MustParsePrefix("11.1.1.0/24"), Gateway: ip("11.1.1.1")},
		{Prefix: netip.MustParsePrefix("fd01::/64")},
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGatewayAddrs(t *testing.T) {
	n := prodNetwork(t)
	if got := gatewayAddrs(n); !slices.Equal(got, []netip.Addr{ip("10.1.1.1"), ip("11.1.1.1")}) {
		t.Errorf("gatewayAddrs = %v", got)
	}
	if got := routeSubnets(n); len(got) != 3 || got[2] != (vtep.Subnet{Prefix: netip.MustParsePrefix("fd01::/64")}) {
		t.Errorf("routeSubnets = %v", got)
	}
	if gatewayOf(n, ip("11.1.1.9")) != ip("11.1.1.1") || gatewayOf(n, ip("fd01::9")).IsValid() || gatewayOf(n, ip("12.0.0.1")).IsValid() {
		t.Error("gatewayOf picks the wrong gateway")
	}
	if gatewayAddrs(gossip.Network{Name: "l2", VNI: 5}) != nil {
		t.Error("a network without subnets has gateways")
	}
}

// routeFake is a networkServer with the routing side.
type routeFake struct {
	*fakeServer
	mu       sync.Mutex
	gateways map[uint32][]netip.Addr
	subnets  map[uint32][]vtep.Subnet
}

func (f *routeFake) SetGatewayAddrs(vni uint32, addrs []netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(addrs) == 0 {
		delete(f.gateways, vni)
		return
	}
	f.gateways[vni] = addrs
}

func (f *routeFake) SetSubnets(vni uint32, s []vtep.Subnet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(s) == 0 {
		delete(f.subnets, vni)
		return
	}
	f.subnets[vni] = s
}

// TestNetworksRoutes: the registry hands the switch each network's
// gateways and subnets as gossip's list changes, and takes them back.
func TestNetworksRoutes(t *testing.T) {
	r, _, srv, _ := newTestNetworks()
	rf := &routeFake{fakeServer: srv, gateways: map[uint32][]netip.Addr{}, subnets: map[uint32][]vtep.Subnet{}}
	r.sw = rf
	n := prodNetwork(t)
	r.apply([]gossip.Network{n})
	if len(rf.gateways[4097]) != 2 || len(rf.subnets[4097]) != 3 {
		t.Fatalf("after create: gateways %v subnets %v", rf.gateways, rf.subnets)
	}
	// Moved to another VNI: the old one is cleared.
	moved := n
	moved.VNI = 4098
	r.apply([]gossip.Network{moved})
	if len(rf.gateways[4097]) != 0 || len(rf.subnets[4097]) != 0 || len(rf.gateways[4098]) != 2 {
		t.Fatalf("after a move: gateways %v subnets %v", rf.gateways, rf.subnets)
	}
	// Deleted while another takes its VNI in the same list: that one's stay.
	other := gossip.Network{Name: "other", VNI: 4098, Subnet: netip.MustParsePrefix("12.0.0.0/24"), Gateway: ip("12.0.0.1")}
	r.apply([]gossip.Network{other})
	if got := rf.gateways[4098]; !slices.Equal(got, []netip.Addr{ip("12.0.0.1")}) {
		t.Fatalf("VNI reused: gateways %v", got)
	}
	r.apply(nil)
	if len(rf.gateways) != 0 || len(rf.subnets) != 0 {
		t.Fatalf("after delete: gateways %v subnets %v", rf.gateways, rf.subnets)
	}
}

// TestNetworksCreateSubnets: a network's own subnets may not overlap, nor
// any other network's.
func TestNetworksCreateSubnets(t *testing.T) {
	r, _, _, _ := newTestNetworks()
	if err := r.create(prodNetwork(t)); err != nil {
		t.Fatal(err)
	}
	o := gossip.Network{Name: "o", VNI: 9, Subnet: netip.MustParsePrefix("12.0.0.0/24"),
		More: [gossip.MaxSubnets - 1]gossip.NetSubnet{{Prefix: netip.MustParsePrefix("11.1.1.128/25")}}}
	if err := r.create(o); err == nil || !strings.Contains(err.Error(), "overlaps network prod's 11.1.1.0/24") {
		t.Errorf("overlapping second subnet: %v", err)
	}
	self := gossip.Network{Name: "self", VNI: 10, Subnet: netip.MustParsePrefix("13.0.0.0/16"),
		More: [gossip.MaxSubnets - 1]gossip.NetSubnet{{Prefix: netip.MustParsePrefix("13.0.1.0/24")}}}
	if err := r.create(self); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("own subnets overlapping: %v", err)
	}
	if err := r.create(prodNetwork(t)); err != nil {
		t.Errorf("the same network again: %v", err)
	}
}

// TestAllocatorSubnets: allocation takes the first subnet with room, or
// the one asked for; a requested address must be in one of the subnets
// with its length; no gateway is handed out.
func TestAllocatorSubnets(t *testing.T) {
	n := prodNetwork(t)
	a := newAllocator("n1", fdb.New(fdb.Config{}), func(uint32, netip.Addr) string { return "" })
	for range 5 { // 10.1.1.0/29: .2 to .6 (not .0, .1 the gateway, .7 broadcast)
		p, err := a.reserve(n, netip.Prefix{}, nil)
		if err != nil || p.Bits() != 29 || !n.Subnet.Contains(p.Addr()) || p.Addr() == ip("10.1.1.1") {
			t.Fatalf("reserve = %v, %v", p, err)
		}
	}
	p, err := a.reserve(n, netip.Prefix{}, nil)
	if err != nil || p.Bits() != 24 || !netip.MustParsePrefix("11.1.1.0/24").Contains(p.Addr()) {
		t.Fatalf("first subnet full: reserve = %v, %v", p, err)
	}
	p, err = a.reserveIn(n, netip.MustParsePrefix("fd01::/64"), netip.Prefix{}, nil)
	if err != nil || p.Bits() != 64 || !p.Addr().Is6() {
		t.Fatalf("reserveIn(fd01::/64) = %v, %v", p, err)
	}
	if _, err := a.reserveIn(n, netip.MustParsePrefix("10.1.1.0/29"), netip.Prefix{}, nil); err == nil {
		t.Error("reserveIn a full subnet succeeded")
	}
	if _, err := a.reserveIn(n, netip.MustParsePrefix("10.9.0.0/24"), netip.Prefix{}, nil); err == nil || !strings.Contains(err.Error(), "no subnet 10.9.0.0/24") {
		t.Errorf("reserveIn another subnet: %v", err)
	}
	for _, tc := range []struct {
		want string
		err  string
	}{
		{"11.1.1.50/24", ""},
		{"fd01::50/64", ""},
		{"11.1.1.51/16", "not in any of network prod's subnets"},
		{"12.0.0.5/24", "not in any of network prod's subnets"},
		{"11.1.1.1/24", "taken by the gateway"},
	} {
		p, err := a.reserve(n, netip.MustParsePrefix(tc.want), nil)
		switch {
		case tc.err == "" && (err != nil || p.String() != tc.want):
			t.Errorf("reserve %s = %v, %v", tc.want, p, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("reserve %s: %v, want %q", tc.want, err, tc.err)
		}
	}
}

func TestControlNetworkSubnets(t *testing.T) {
	n := prodNetwork(t)
	c := toControlNetwork(n)
	if len(c.Subnets) != 3 || c.Subnet != n.Subnet || c.RouterMAC != vtep.RouterMAC(4097).String() {
		t.Fatalf("toControlNetwork = %+v", c)
	}
	back, err := fromControlNetwork(c)
	if err != nil || back != n {
		t.Fatalf("fromControlNetwork = %+v, %v", back, err)
	}
	c.Subnets = nil // a network with one subnet, as older clients send it
	if back, err := fromControlNetwork(c); err != nil || back.Subnet != n.Subnet || back.More != ([gossip.MaxSubnets - 1]gossip.NetSubnet{}) {
		t.Fatalf("one subnet: %+v, %v", back, err)
	}
	bad := control.Network{Name: "x", VNI: 1, Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		Subnets: []control.Subnet{{Subnet: netip.MustParsePrefix("10.1.0.0/24")}}}
	if _, err := fromControlNetwork(bad); err == nil {
		t.Error("a subnet that disagrees with subnets was taken")
	}
}

// TestSaveEndpointSubnets: the state file keeps a network's subnets after
// the first, so a network restored from it routes as before.
func TestSaveEndpointSubnets(t *testing.T) {
	n := prodNetwork(t)
	se := saveEndpoint(&attached{ep: endpoint{Name: "c/eth0", Network: n.Name, VNI: n.VNI, MAC: fdb.MAC{2, 0, 0, 0, 0, 1}}, net: n})
	want := [gossip.MaxSubnets - 1]control.Subnet{{Subnet: netip.MustParsePrefix("11.1.1.0/24"), Gateway: ip("11.1.1.1")}, {Subnet: netip.MustParsePrefix("fd01::/64")}}
	if se.Net.More != want {
		t.Fatalf("saved more subnets %v, want %v", se.Net.More, want)
	}
	path := t.TempDir() + "/state.json"
	if err := writeState(path, stateFile{Version: stateVersion, Endpoints: []savedEndpoint{se}}); err != nil {
		t.Fatal(err)
	}
	st, err := readState(path)
	if err != nil || len(st.Endpoints) != 1 || !reflect.DeepEqual(st.Endpoints[0], se) {
		t.Fatalf("read back %+v, %v", st, err)
	}
	// One subnet: nothing more in the file than before.
	one := saveEndpoint(&attached{ep: endpoint{Name: "c/eth0", Network: "web", VNI: 9}, net: gossip.Network{Name: "web", VNI: 9, Subnet: netip.MustParsePrefix("10.0.9.0/24")}})
	if b, _ := json.Marshal(one.Net); strings.Contains(string(b), "more_subnets") {
		t.Errorf("one subnet saved as %s", b)
	}
}

func TestEndpointMACNotRouterMAC(t *testing.T) {
	if _, err := endpointMAC(fdb.New(fdb.Config{}), 4097, vtep.RouterMAC(4097).String()); err == nil || !strings.Contains(err.Error(), "router MAC") {
		t.Errorf("a router MAC requested: %v", err)
	}
}
