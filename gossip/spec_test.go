package gossip

import (
	"net/netip"
	"strings"
	"testing"
)

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckNetworkName(t *testing.T) {
	const use = ": use 1 to 64 letters, digits, '_', '.', '-', starting with a letter or digit"
	long := strings.Repeat("n", 64)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain", "default", ""},
		{"all kinds", "Blue_2.dev-x", ""},
		{"one digit", "7", ""},
		{"64", long, ""},
		{"empty", "", `network name ""` + use},
		{"65", long + "n", `network name "` + long + `n"` + use},
		{"space", "x y", `network name "x y"` + use},
		{"leading dash", "-x", `network name "-x"` + use},
		{"leading dot", ".x", `network name ".x"` + use},
		{"slash", "a/b", `network name "a/b"` + use},
		{"non-ASCII", "réseau", `network name "réseau"` + use},
		{"newline", "x\n", `network name "x\n"` + use},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errText(CheckNetworkName(tc.in)); got != tc.want {
				t.Errorf("CheckNetworkName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCheckSubnet(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   netip.Prefix
		want string
	}{
		{"none", netip.Prefix{}, ""},
		{"v4", netip.MustParsePrefix("10.0.12.0/24"), ""},
		{"v6", netip.MustParsePrefix("fd00:1::/64"), ""},
		{"host route", netip.MustParsePrefix("10.0.0.1/32"), ""},
		{"everything", netip.MustParsePrefix("0.0.0.0/0"), ""},
		{"host bits", netip.MustParsePrefix("10.0.0.1/24"), "subnet 10.0.0.1/24 has host bits set: did you mean 10.0.0.0/24?"},
		{"v6 host bits", netip.MustParsePrefix("fd00::1/64"), "subnet fd00::1/64 has host bits set: did you mean fd00::/64?"},
		{"bits too long", netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33), "subnet invalid Prefix is not a valid prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errText(CheckSubnet(tc.in)); got != tc.want {
				t.Errorf("CheckSubnet(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCheckGateway(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.12.0/24")
	v6 := netip.MustParsePrefix("fe80::/64")
	for _, tc := range []struct {
		name   string
		gw     string // "" for the zero Addr
		subnet netip.Prefix
		want   string
	}{
		{"none", "", v4, ""},
		{"none without subnet", "", netip.Prefix{}, ""},
		{"inside", "10.0.12.1", v4, ""},
		{"v6 inside", "fe80::1", v6, ""},
		{"outside", "10.0.13.1", v4, "gateway 10.0.13.1 is not in subnet 10.0.12.0/24"},
		{"other family", "fe80::1", v4, "gateway fe80::1 is not in subnet 10.0.12.0/24"},
		{"4in6", "::ffff:10.0.12.1", v4, "gateway ::ffff:10.0.12.1 is not in subnet 10.0.12.0/24"},
		{"zone", "fe80::1%eth0", v6, "gateway fe80::1%eth0: give the address without a zone"},
		{"no subnet", "10.0.12.1", netip.Prefix{}, "gateway 10.0.12.1 needs a subnet to be in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gw netip.Addr
			if tc.gw != "" {
				gw = netip.MustParseAddr(tc.gw)
			}
			if got := errText(CheckGateway(gw, tc.subnet)); got != tc.want {
				t.Errorf("CheckGateway(%v, %v) = %q, want %q", gw, tc.subnet, got, tc.want)
			}
		})
	}
}

func TestCheckMTU(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mtu, max int
		want     string
	}{
		{"smallest", 576, 1450, ""},
		{"largest", 1450, 1450, ""},
		{"jumbo", 8950, 8950, ""},
		{"too small", 100, 1450, "MTU 100 out of range 576..1450"},
		{"just below", 575, 1450, "MTU 575 out of range 576..1450"},
		{"just above", 1451, 1450, "MTU 1451 out of range 576..1450"},
		{"zero", 0, 1450, "MTU 0 out of range 576..1450"},
		{"negative", -1, 1450, "MTU -1 out of range 576..1450"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errText(CheckMTU(tc.mtu, tc.max)); got != tc.want {
				t.Errorf("CheckMTU(%d, %d) = %q, want %q", tc.mtu, tc.max, got, tc.want)
			}
		})
	}
}

// TestCheckNetworkSpec checks that the wire format's check gives a
// network's subnet and gateway the users' checks, naming the network.
func TestCheckNetworkSpec(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Network)
		want error
	}{
		{"host bits", func(n *Network) { n.Subnet = netip.MustParsePrefix("10.1.2.3/16") },
			CheckSubnet(netip.MustParsePrefix("10.1.2.3/16"))},
		{"gateway outside", func(n *Network) { n.Gateway = netip.MustParseAddr("10.1.0.1") },
			CheckGateway(netip.MustParseAddr("10.1.0.1"), testNet(1).Subnet)},
		{"gateway without subnet", func(n *Network) { n.Subnet = netip.Prefix{} },
			CheckGateway(testNet(1).Gateway, netip.Prefix{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNet(1)
			tc.mod(&n)
			want := "gossip: network net1: " + errText(tc.want)
			if got := errText(checkNetwork(&n)); got != want {
				t.Errorf("checkNetwork = %q, want %q", got, want)
			}
		})
	}
}

func TestCheckGroup(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"none", "", ""},
		{"v4", "239.1.1.2", ""},
		{"v6", "ff0e::1:1", ""},
		{"unicast", "10.0.0.1", "multicast group 10.0.0.1 is not a multicast address (224.0.0.0/4 or ff00::/8)"},
		{"v6 unicast", "2001:db8::1", "multicast group 2001:db8::1 is not a multicast address (224.0.0.0/4 or ff00::/8)"},
		{"zone", "ff02::1%eth0", "multicast group ff02::1%eth0: give the address without a zone"},
		{"mapped", "::ffff:239.1.1.1", "multicast group ::ffff:239.1.1.1: give an IPv4 group as 239.1.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g netip.Addr
			if tc.in != "" {
				g = netip.MustParseAddr(tc.in)
			}
			if got := errText(CheckGroup(g)); got != tc.want {
				t.Errorf("CheckGroup(%v) = %q, want %q", g, got, tc.want)
			}
		})
	}
}
