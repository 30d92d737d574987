package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/cmd/control"
)

func TestSetSubnets(t *testing.T) {
	var n control.Network
	if err := setSubnets(&n, []string{"10.1.1.0/24", "fd01::/64", "11.1.1.0/24"}, []string{"11.1.1.1", "10.1.1.1"}); err != nil {
		t.Fatal(err)
	}
	want := []control.Subnet{
		{Subnet: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1")},
		{Subnet: netip.MustParsePrefix("fd01::/64")},
		{Subnet: netip.MustParsePrefix("11.1.1.0/24"), Gateway: netip.MustParseAddr("11.1.1.1")},
	}
	if len(n.Subnets) != 3 || n.Subnets[0] != want[0] || n.Subnets[1] != want[1] || n.Subnets[2] != want[2] || n.Subnet.IsValid() {
		t.Errorf("subnets %+v", n)
	}
	if s, g := subnetsText(n); s != "10.1.1.0/24,fd01::/64,11.1.1.0/24" || g != "10.1.1.1,11.1.1.1" {
		t.Errorf("subnetsText = %q %q", s, g)
	}
	var one control.Network
	if err := setSubnets(&one, []string{"10.1.1.0/24"}, []string{"10.1.1.1"}); err != nil || one.Subnets != nil || one.Gateway != netip.MustParseAddr("10.1.1.1") {
		t.Errorf("one subnet: %+v, %v", one, err)
	}
	for _, tc := range []struct {
		subnets, gateways []string
		err               string
	}{
		{[]string{"10.1.1.0/24", "11.1.1.0/24"}, []string{"12.0.0.1"}, "in none of the subnets"},
		{[]string{"10.1.1.0/24", "11.1.1.0/24"}, []string{"10.1.1.1", "10.1.1.2"}, "has gateway 10.1.1.1 already"},
		{nil, []string{"10.1.1.1"}, "needs a --subnet"},
		{[]string{"10.1.1.0"}, nil, "--subnet"},
	} {
		var n control.Network
		if err := setSubnets(&n, tc.subnets, tc.gateways); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v %v: %v, want %q", tc.subnets, tc.gateways, err, tc.err)
		}
	}
}
