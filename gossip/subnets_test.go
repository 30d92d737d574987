package gossip

import (
	"net/netip"
	"testing"
)

func TestNetworkSubnets(t *testing.T) {
	subs := []NetSubnet{
		{netip.MustParsePrefix("10.1.1.0/24"), netip.MustParseAddr("10.1.1.1")},
		{netip.MustParsePrefix("11.1.1.0/24"), netip.MustParseAddr("11.1.1.1")},
		{netip.MustParsePrefix("fd01::/64"), netip.Addr{}},
	}
	n := Network{Name: "prod", VNI: 4097}
	if err := n.SetSubnets(subs); err != nil {
		t.Fatal(err)
	}
	if n.Subnet != subs[0].Prefix || n.Gateway != subs[0].Gateway || n.More[1] != subs[2] || n.More[2] != (NetSubnet{}) {
		t.Fatalf("SetSubnets: %+v", n)
	}
	if got := n.Subnets(); len(got) != 3 || got[1] != subs[1] {
		t.Fatalf("Subnets = %v", got)
	}
	if err := checkNetwork(&n); err != nil {
		t.Fatal(err)
	}
	if s, ok := n.SubnetOf(netip.MustParseAddr("11.1.1.7")); !ok || s != subs[1] {
		t.Errorf("SubnetOf(11.1.1.7) = %v, %v", s, ok)
	}
	if _, ok := n.SubnetOf(netip.MustParseAddr("12.0.0.1")); ok {
		t.Error("SubnetOf(12.0.0.1) found one")
	}
	o := Network{Name: "o", VNI: 5, Subnet: netip.MustParsePrefix("fd01::/48")}
	if mine, theirs, ok := n.Overlap(o); !ok || mine != subs[2].Prefix || theirs != o.Subnet {
		t.Errorf("Overlap = %v %v %v", mine, theirs, ok)
	}
	if _, _, ok := n.Overlap(Network{Name: "p", VNI: 6, Subnet: netip.MustParsePrefix("12.0.0.0/8")}); ok {
		t.Error("disjoint networks overlap")
	}
	if err := n.SetSubnets(make([]NetSubnet, MaxSubnets+1)); err == nil {
		t.Error("SetSubnets took more than MaxSubnets")
	}
	if (Network{}).Subnets() != nil {
		t.Error("a network without a subnet has subnets")
	}
	for _, tc := range []struct {
		name string
		mod  func(n *Network)
	}{
		{"overlap", func(n *Network) { n.More[0].Prefix = netip.MustParsePrefix("10.1.0.0/16") }},
		{"gap", func(n *Network) { n.More[0] = NetSubnet{} }},
		{"no first", func(n *Network) { n.Subnet, n.Gateway = netip.Prefix{}, netip.Addr{} }},
		{"gateway outside", func(n *Network) { n.More[0].Gateway = netip.MustParseAddr("10.1.1.9") }},
		{"gateway alone", func(n *Network) { n.More[2].Gateway = netip.MustParseAddr("10.1.1.9") }},
		{"host bits", func(n *Network) { n.More[1].Prefix = netip.MustParsePrefix("fd01::1/64") }},
	} {
		m := n
		if err := m.SetSubnets(subs); err != nil {
			t.Fatal(err)
		}
		tc.mod(&m)
		if err := checkNetwork(&m); err == nil {
			t.Errorf("%s: checkNetwork accepted %+v", tc.name, m)
		}
	}
}
