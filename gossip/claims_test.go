package gossip

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

func bindingEqual(x, y Binding) bool {
	return x.VNI == y.VNI && x.MAC == y.MAC && slices.Equal(x.IPs, y.IPs) &&
		x.Node == y.Node && x.VTEP == y.VTEP && x.Seq == y.Seq
}

// claimIPs delivers owner's binding of k with the given IPs.
func (s *solo) claimIPs(owner string, k fdb.Key, gen uint64, ips ...netip.Addr) {
	s.d.NotifyMsg(encodeMessage(&message{Owner: owner, Rec: record{Key: k, Gen: gen, VTEP: vteps[owner], IPs: ips}}))
}

// TestRuleClaims: Claims and UsedIPs see this node's bindings, live
// members' and parked ones of a failed member, until TombstoneTTL after it
// failed.
func TestRuleClaims(t *testing.T) {
	s := newSolo(t)
	a := s.n.agent
	ip5, ip6, ip7 := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6"), netip.MustParseAddr("10.1.0.7")
	keyD := fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 0xa, 0}} // sorts before keyB
	s.join("x", 1)
	s.join("y", 1)
	if err := a.Announce(Binding{VNI: 100, MAC: keyA.MAC, IPs: []netip.Addr{ip5}}); err != nil {
		t.Fatal(err)
	}
	s.claimIPs("y", keyC, 10, ip5)
	s.claimIPs("x", keyB, 10, ip5, ip6)
	s.claimIPs("x", keyD, 10, ip5)
	s.claimIPs("x", fdb.Key{VNI: 200, MAC: keyA.MAC}, 11, ip7) // another VNI

	mine := Binding{VNI: 100, MAC: keyA.MAC, IPs: []netip.Addr{ip5}, Node: s.n.name, VTEP: s.n.vtep}
	xD := Binding{VNI: 100, MAC: keyD.MAC, IPs: []netip.Addr{ip5}, Node: "x", VTEP: vteps["x"]}
	xB := Binding{VNI: 100, MAC: keyB.MAC, IPs: []netip.Addr{ip5, ip6}, Node: "x", VTEP: vteps["x"]}
	yC := Binding{VNI: 100, MAC: keyC.MAC, IPs: []netip.Addr{ip5}, Node: "y", VTEP: vteps["y"]}
	claims := func(ip netip.Addr, want ...Binding) {
		t.Helper()
		if got := a.Claims(100, ip); !slices.EqualFunc(want, got, bindingEqual) {
			t.Fatalf("Claims(%v) (-want +got)\n-%+v\n+%+v", ip, want, got)
		}
	}
	used := func(want ...netip.Addr) {
		t.Helper()
		got := a.UsedIPs(100)
		wantSet := map[netip.Addr]struct{}{}
		for _, ip := range want {
			wantSet[ip] = struct{}{}
		}
		if !maps.Equal(wantSet, got) {
			t.Fatalf("UsedIPs (-want +got)\n-%v\n+%v", wantSet, got)
		}
	}
	claims(ip5, mine, xD, xB, yC) // by node name (node00 < x < y), then MAC
	claims(netip.MustParseAddr("::ffff:10.1.0.5"), mine, xD, xB, yC)
	claims(ip6, xB)
	claims(ip7)
	used(ip5, ip6)
	if got := a.UsedIPs(200); len(got) != 1 {
		t.Fatalf("UsedIPs(200) = %v", got)
	}
	a.Claims(100, ip6)[0].IPs[0] = ip7 // a copy
	claims(ip6, xB)

	// A changed binding moves its claim; a withdrawn one drops it.
	s.claimIPs("x", keyB, 12, ip7)
	xB.IPs = []netip.Addr{ip7}
	used(ip5, ip7)
	s.withdraw("y", keyC, 11)
	claims(ip5, mine, xD)

	// x fails: its bindings are parked and their IPs stay claimed for
	// TombstoneTTL (a minute here).
	s.leave("x", 1)
	if st := a.Stats(); st.Parked != 3 {
		t.Fatalf("stats %+v", st)
	}
	claims(ip5, mine, xD)
	claims(ip7, xB)
	s.clk.Add(50 * time.Second)
	used(ip5, ip7)
	s.clk.Add(20 * time.Second) // past TombstoneTTL, before expire runs
	claims(ip5, mine)
	claims(ip7)
	used(ip5)
	a.expire()
	a.mu.Lock()
	index := len(a.claimIPs[100])
	a.mu.Unlock()
	if index != 1 {
		t.Fatalf("IP index of VNI 100 has %d addresses after expiry, want 1", index)
	}

	// Our own binding goes when withdrawn.
	a.Withdraw(100, keyA.MAC)
	used()
}
