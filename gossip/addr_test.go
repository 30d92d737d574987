package gossip

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// memberAddrs returns what n knows of the other members: gossip address
// and VTEP by name.
func memberAddrs(n *node) map[string][2]netip.AddrPort {
	out := map[string][2]netip.AddrPort{}
	for _, m := range n.agent.Members() {
		if m.Name != n.name && m.State == "alive" {
			out[m.Name] = [2]netip.AddrPort{m.Addr, m.VTEP}
		}
	}
	return out
}

// TestIPv6Gossip: two agents bound to ::1 join by "[::1]:port" and learn
// each other's IPv6 VTEPs, each with its own VXLAN port.
func TestIPv6Gossip(t *testing.T) {
	v6 := func(port uint16) nodeOpt {
		return func(c *Config) {
			c.BindAddr = netip.IPv6Loopback()
			c.VTEP = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::"+strconv.Itoa(int(port))), port)
		}
	}
	a, err := startNode(t, 0, 0, nil, v6(4789))
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	join := net.JoinHostPort("::1", strconv.Itoa(a.port))
	b, err := startNode(t, 1, 0, []string{join}, v6(4790))
	if err != nil {
		t.Fatalf("join %s: %v", join, err)
	}
	waitFor(t, settle, "members over IPv6", func() error {
		got, want := memberAddrs(b)[a.name], [2]netip.AddrPort{a.agent.Addr(), a.agent.cfg.VTEP}
		if got != want || !got[0].Addr().Is6() {
			return fmt.Errorf("%s sees %s at %v, want %v", b.name, a.name, got, want)
		}
		got, want = memberAddrs(a)[b.name], [2]netip.AddrPort{b.agent.Addr(), b.agent.cfg.VTEP}
		if got != want || want[1].Port() != 4790 {
			return fmt.Errorf("%s sees %s at %v, want %v", a.name, b.name, got, want)
		}
		return nil
	})
}

// TestAdvertiseAddr: a node bound to every address that advertises
// another of them is known at the advertised address, keeps its bound
// port, and stays alive (reached there).
func TestAdvertiseAddr(t *testing.T) {
	adv := netip.MustParseAddr("127.0.0.3")
	a, err := startNode(t, 0, 0, nil, func(c *Config) {
		c.BindAddr = netip.IPv4Unspecified()
		c.AdvertiseAddr = netip.AddrPortFrom(adv, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.agent.Addr(); got.Addr() != adv || int(got.Port()) != a.port || a.port == 0 {
		t.Fatalf("Addr() = %v, want %v with the bound port", got, adv)
	}
	b, err := startNode(t, 1, 0, []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "advertised address", func() error {
		if got := memberAddrs(b)[a.name][0]; got != a.agent.Addr() {
			return fmt.Errorf("%s sees %s at %v, want %v", b.name, a.name, got, a.agent.Addr())
		}
		if _, ok := memberAddrs(a)[b.name]; !ok {
			return fmt.Errorf("%s does not see %s", a.name, b.name)
		}
		return nil
	})

	bad := DefaultConfig()
	bad.Name, bad.VTEP = "x", netip.MustParseAddrPort("10.0.0.1:4789")
	bad.AdvertiseAddr = netip.MustParseAddrPort("0.0.0.0:7946")
	if err := bad.validate(); err == nil {
		t.Error("an unspecified advertise address was accepted")
	}
}
