package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// fakeClaims is a claimView with fixed claims and members.
type fakeClaims struct {
	claims  map[netip.Addr][]gossip.Binding
	members []gossip.MemberInfo
}

func (f *fakeClaims) Claims(_ uint32, ip netip.Addr) []gossip.Binding { return f.claims[ip] }

func (f *fakeClaims) UsedIPs(uint32) map[netip.Addr]struct{} {
	out := map[netip.Addr]struct{}{}
	for ip := range f.claims {
		out[ip] = struct{}{}
	}
	return out
}

func (f *fakeClaims) Members() []gossip.MemberInfo { return f.members }

var (
	ip   = netip.MustParseAddr
	tiny = gossip.Network{Name: "tiny", VNI: 7, Subnet: netip.MustParsePrefix("10.7.0.0/29"), Gateway: netip.MustParseAddr("10.7.0.1")}
)

// TestAllocatorReserve: allocation skips the network, broadcast and gateway
// addresses, local holders, reservations in progress, the cluster's claims
// and the FDB's bindings, and says who holds a requested address.
func TestAllocatorReserve(t *testing.T) {
	tab := fdb.New(fdb.Config{})
	tab.Set(fdb.Entry{Key: fdb.Key{VNI: 7, MAC: fdb.MAC{2, 0, 0, 0, 0, 5}}, Location: fdb.Location{Port: 1},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{ip("10.7.0.5")}})
	held := map[netip.Addr]string{ip("10.7.0.2"): "endpoint c1"}
	a := newAllocator("n1", tab, func(_ uint32, addr netip.Addr) string { return held[addr] })
	a.setView(&fakeClaims{claims: map[netip.Addr][]gossip.Binding{
		ip("10.7.0.3"): {{VNI: 7, MAC: fdb.MAC{2, 0, 0, 0, 0, 3}, Node: "n2"}},
	}})
	var got []netip.Addr
	for {
		p, err := a.reserve(tiny, netip.Prefix{}, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "no free address left in 10.7.0.0/29") {
				t.Errorf("exhausted: %v", err)
			}
			break
		}
		if p.Bits() != 29 {
			t.Errorf("prefix %v: want /29", p)
		}
		got = append(got, p.Addr())
	}
	// .0 network, .1 gateway, .2 held, .3 claimed, .5 in the FDB, .7 broadcast.
	if want := map[netip.Addr]bool{ip("10.7.0.4"): true, ip("10.7.0.6"): true}; len(got) != 2 || !want[got[0]] || !want[got[1]] {
		t.Errorf("allocated %v, want 10.7.0.4 and 10.7.0.6", got)
	}
	for _, tc := range []struct{ addr, want string }{
		{"10.7.0.1", "the gateway"},
		{"10.7.0.2", "endpoint c1"},
		{"10.7.0.3", "MAC 02:00:00:00:00:03 on node n2"},
		{"10.7.0.4", "an attach in progress"},
		{"10.7.0.5", "MAC 02:00:00:00:00:05"},
	} {
		_, err := a.reserve(tiny, netip.PrefixFrom(ip(tc.addr), 29), nil)
		if err == nil || !strings.Contains(err.Error(), "taken by "+tc.want) {
			t.Errorf("reserve %s: %v, want taken by %q", tc.addr, err, tc.want)
		}
	}
	if _, err := a.reserve(tiny, netip.MustParsePrefix("10.8.0.4/29"), nil); err == nil || !strings.Contains(err.Error(), "not in network tiny's subnet") {
		t.Errorf("reserve outside the subnet: %v", err)
	}
	a.release(7, ip("10.7.0.4"))
	if p, err := a.reserve(tiny, netip.MustParsePrefix("10.7.0.4/29"), nil); err != nil || p.Addr() != ip("10.7.0.4") {
		t.Errorf("reserve after release: %v %v", p, err)
	}
	if _, err := a.reserve(gossip.Network{Name: "flat", VNI: 8}, netip.Prefix{}, nil); err == nil || !strings.Contains(err.Error(), "no subnet to allocate from") {
		t.Errorf("allocate without a subnet: %v", err)
	}
}

// TestAllocatorClaims: the lower node name wins a claim; a claim matters
// only while another member is alive.
func TestAllocatorClaims(t *testing.T) {
	a := newAllocator("n2", fdb.New(fdb.Config{}), func(uint32, netip.Addr) string { return "" })
	if a.othersAlive() {
		t.Error("others alive before gossip runs")
	}
	mine := fdb.MAC{2, 0, 0, 0, 0, 1}
	v := &fakeClaims{claims: map[netip.Addr][]gossip.Binding{
		ip("10.0.0.4"): {{MAC: mine, Node: "n2"}, {MAC: fdb.MAC{2, 0, 0, 0, 0, 9}, Node: "n1"}},
		ip("10.0.0.5"): {{MAC: mine, Node: "n2"}, {MAC: fdb.MAC{2, 0, 0, 0, 0, 9}, Node: "n3"}},
	}, members: []gossip.MemberInfo{{Name: "n2", State: "alive"}, {Name: "n1", State: "dead"}}}
	a.setView(v)
	if w, lost := a.lostClaim(7, ip("10.0.0.4"), mine); !lost || w != "n1" {
		t.Errorf("claim against n1: %q %v, want lost to n1", w, lost)
	}
	if _, lost := a.lostClaim(7, ip("10.0.0.5"), mine); lost {
		t.Error("claim against n3 lost: the lower name wins")
	}
	if a.othersAlive() {
		t.Error("others alive with only a dead member")
	}
	v.members = append(v.members, gossip.MemberInfo{Name: "n3", State: "suspect"})
	if !a.othersAlive() {
		t.Error("a suspect member is not counted alive")
	}
}
