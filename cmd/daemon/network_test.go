package daemon

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// fakeStore is a networkStore that keeps networks in a map, as a cluster
// of one node would.
type fakeStore struct {
	mu   sync.Mutex
	nets map[string]gossip.Network
}

func (s *fakeStore) PutNetwork(n gossip.Network) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nets[n.Name] = n
	return nil
}

func (s *fakeStore) DeleteNetwork(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.nets[name]; !ok {
		return gossip.ErrNoNetwork
	}
	delete(s.nets, name)
	return nil
}

func (s *fakeStore) Networks() []gossip.Network {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gossip.Network
	for _, n := range s.nets {
		out = append(out, n)
	}
	return out
}

// fakeServer is a networkServer that records what the registry told it.
type fakeServer struct {
	mu       sync.Mutex
	policies map[uint32]vtep.FloodPolicy
	served   []uint32
}

func (f *fakeServer) SetFloodPolicy(vni uint32, p vtep.FloodPolicy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies[vni] = p
}

func (f *fakeServer) Serve(vnis []uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = slices.Clone(vnis)
}

func newTestNetworks() (*networks, *fakeStore, *fakeServer, *int) {
	store := &fakeStore{nets: map[string]gossip.Network{}}
	srv := &fakeServer{policies: map[uint32]vtep.FloodPolicy{}}
	adverts := new(int)
	r := newNetworks(slog.New(slog.DiscardHandler), 1450, "flood", srv, func() { *adverts++ })
	r.setStore(store)
	return r, store, srv, adverts
}

// TestNetworksCreate: a network's values are checked and defaulted, the
// cluster-wide rules hold, and the switch and the advertiser hear of each
// change of the served VNIs.
func TestNetworksCreate(t *testing.T) {
	r, store, srv, adverts := newTestNetworks()
	web := gossip.Network{Name: "web", VNI: 9, Subnet: netip.MustParsePrefix("10.0.9.0/24")}
	if err := r.create(web); err != nil {
		t.Fatal(err)
	}
	got, ok := r.get("web")
	want := gossip.Network{Name: "web", VNI: 9, Subnet: web.Subnet, MTU: 1450, Flood: "arp=flood,unicast=flood,broadcast=flood"}
	if !ok || got != want {
		t.Errorf("web: %+v, want %+v", got, want)
	}
	if !slices.Equal(srv.served, []uint32{9}) || !slices.Equal(r.served(), []uint32{9}) || *adverts != 1 {
		t.Errorf("served %v (switch %v), %d adverts; want [9], 1", r.served(), srv.served, *adverts)
	}
	if err := r.create(web); err != nil {
		t.Errorf("creating the same network again: %v", err)
	}
	for _, tc := range []struct {
		name string
		n    gossip.Network
		want string
	}{
		{"bad name", gossip.Network{Name: "a b", VNI: 10}, `network name "a b"`},
		{"VNI zero", gossip.Network{Name: "x", VNI: 0}, "network x: VNI 0 out of range"},
		{"VNI too large", gossip.Network{Name: "x", VNI: 1 << 24}, "out of range"},
		{"host bits", gossip.Network{Name: "x", VNI: 10, Subnet: netip.MustParsePrefix("10.0.10.1/24")}, "did you mean 10.0.10.0/24"},
		{"gateway outside", gossip.Network{Name: "x", VNI: 10, Subnet: netip.MustParsePrefix("10.0.10.0/24"), Gateway: netip.MustParseAddr("10.0.11.1")}, "not in subnet"},
		{"MTU too large", gossip.Network{Name: "x", VNI: 10, MTU: 9000}, "MTU 9000 out of range 576..1450"},
		{"bad flood", gossip.Network{Name: "x", VNI: 10, Flood: "sometimes"}, "flood policy"},
		{"name taken", gossip.Network{Name: "web", VNI: 10}, "network web already exists"},
		{"VNI taken", gossip.Network{Name: "x", VNI: 9}, "VNI 9 is already used by network web"},
		{"overlap", gossip.Network{Name: "x", VNI: 10, Subnet: netip.MustParsePrefix("10.0.9.128/25")}, "overlaps network web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.create(tc.n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create %+v: %v, want %q", tc.n, err, tc.want)
			}
			if _, ok := err.(*userError); !ok {
				t.Errorf("create %+v: %T, want a *userError (400)", tc.n, err)
			}
		})
	}
	if len(store.Networks()) != 1 {
		t.Errorf("refused networks reached the store: %+v", store.Networks())
	}
}

// TestNetworksRemove: a network in use is refused with its users named; an
// unused one goes, and the switch stops serving its VNI.
func TestNetworksRemove(t *testing.T) {
	r, _, srv, _ := newTestNetworks()
	if err := r.create(gossip.Network{Name: "web", VNI: 9}); err != nil {
		t.Fatal(err)
	}
	err := r.remove("web", func(gossip.Network) []string { return []string{"c2 on n2", "c1 on n1"} })
	if err == nil || !strings.Contains(err.Error(), "still has endpoints attached: c1 on n1, c2 on n2") {
		t.Errorf("remove in use: %v", err)
	}
	if err := r.remove("none", nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("remove missing: %v", err)
	}
	if err := r.remove("web", func(gossip.Network) []string { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(r.list()) != 0 || len(srv.served) != 0 {
		t.Errorf("after remove: networks %+v, switch serves %v", r.list(), srv.served)
	}
}

// TestNetworksApply: gossip's list replaces the served networks; MTUs are
// capped at this node's; VNIs served early (re-adopted endpoints) give way
// to the list, and removed networks are reported.
func TestNetworksApply(t *testing.T) {
	r, _, srv, _ := newTestNetworks()
	r.serveEarly(11, vtep.FloodPolicy{})
	if !slices.Equal(srv.served, []uint32{11}) {
		t.Errorf("served early: %v", srv.served)
	}
	removed := r.apply([]gossip.Network{{Name: "a", VNI: 5, MTU: 9000}, {Name: "b", VNI: 3}})
	if len(removed) != 0 || !slices.Equal(srv.served, []uint32{3, 5}) {
		t.Errorf("apply: removed %v, served %v", removed, srv.served)
	}
	if a, _ := r.get("a"); a.MTU != 1450 {
		t.Errorf("MTU not capped: %d", a.MTU)
	}
	if removed := r.apply([]gossip.Network{{Name: "b", VNI: 3}}); !slices.Equal(removed, []string{"a"}) || !slices.Equal(srv.served, []uint32{3}) {
		t.Errorf("apply without a: removed %v, served %v", removed, srv.served)
	}
}
