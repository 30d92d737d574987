package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/fdb"
)

func TestJoinAddrs(t *testing.T) {
	self := netip.MustParseAddrPort("10.0.0.1:7946")
	for _, tc := range []struct {
		name string
		join []string
		want []string
		err  string
	}{
		{"default port", []string{"10.0.0.2", "host2"}, []string{"10.0.0.2:7946", "host2:7946"}, ""},
		{"own port", []string{"10.0.0.2:7947", "[fd00::2]:8000"}, []string{"10.0.0.2:7947", "[fd00::2]:8000"}, ""},
		{"self", []string{"10.0.0.1"}, nil, "this node's own gossip address"},
		{"self with port", []string{"10.0.0.1:7946"}, nil, "this node's own gossip address"},
		{"bad port", []string{"10.0.0.2:x"}, nil, `join address "10.0.0.2:x": bad port`},
		{"port zero", []string{"10.0.0.2:0"}, nil, "bad port"},
		{"IPv6 bare", []string{"2001:db8::2"}, []string{"[2001:db8::2]:7946"}, ""},
		{"IPv6 bracketed", []string{"[2001:db8::2]"}, []string{"[2001:db8::2]:7946"}, ""},
		{"IPv6 with port", []string{"[2001:db8::2]:7950"}, []string{"[2001:db8::2]:7950"}, ""},
		{"IPv6 link-local", []string{"fe80::2%ul0"}, []string{"[fe80::2%ul0]:7946"}, ""},
		{"IPv6 bad port", []string{"[2001:db8::2]:x"}, nil, "bad port"},
		{"IPv6 brackets", []string{"[2001:db8::2"}, nil, "want HOST or HOST:PORT"},
		{"empty", []string{""}, nil, "want HOST or HOST:PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := joinAddrs(tc.join, self)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("joinAddrs(%v): %v, want %q", tc.join, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("joinAddrs(%v) = %v, %v; want %v", tc.join, got, err, tc.want)
			}
		})
	}
}

// TestJoinAddrsIPv6Self: an IPv6 node refuses its own gossip address
// however it is written, and takes its address with another port.
func TestJoinAddrsIPv6Self(t *testing.T) {
	self := netip.MustParseAddrPort("[2001:db8::1]:7946")
	for _, j := range []string{"2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:7946"} {
		if _, err := joinAddrs([]string{j}, self); err == nil || !strings.Contains(err.Error(), "own gossip address") {
			t.Errorf("joinAddrs(%s): %v, want own gossip address", j, err)
		}
	}
	if got, err := joinAddrs([]string{"[2001:db8::1]:7947"}, self); err != nil || !slices.Equal(got, []string{"[2001:db8::1]:7947"}) {
		t.Errorf("another port: %v, %v", got, err)
	}
}

// TestClusterGlue: the agent hears of FDB changes by its own subscription
// (a local entry is announced with no call through the node), the
// advertiser publishes the served VNIs, and key operations on a node
// without a gossip key are refused as the user's mistake.
func TestClusterGlue(t *testing.T) {
	d := testDaemon(t)
	c := d.cluster.Load()
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 9, MAC: fdb.MAC{2, 0, 0, 0, 0, 1}}, Location: fdb.Location{Port: 1},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{netip.MustParseAddr("10.0.9.5")}, Pinned: true})
	if !testbed.Poll(t.Context(), 10*time.Second, func() bool { return c.agent.Stats().LocalBindings == 1 }) {
		t.Fatal("the local entry was not announced")
	}
	advertised := testbed.Poll(t.Context(), 10*time.Second, func() bool {
		for _, m := range c.agent.Members() {
			if m.Name == "fuzz" {
				return slices.Equal(m.VNIs, []uint32{9})
			}
		}
		return false
	})
	if !advertised {
		t.Fatal("VNI 9 was not advertised")
	}
	if _, err := c.listKeys(); err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Errorf("listKeys without a key: %v", err)
	}
	if err := c.keyOp("install", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="); err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Errorf("install without a key: %v", err)
	}
	if err := c.keyOp("install", "short"); err == nil || !strings.Contains(err.Error(), "32-byte key") {
		t.Errorf("install a bad key: %v", err)
	}
}
