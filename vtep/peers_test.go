package vtep

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
)

var (
	ptB = netip.MustParseAddrPort("192.0.2.2:4789")
	ptC = netip.MustParseAddrPort("192.0.2.3:4789")
	ptD = netip.MustParseAddrPort("192.0.2.4:4789")
)

// floodLists returns each VNI's flood list in the switch's snapshot.
func floodLists(s *Switch) map[uint32][]netip.AddrPort {
	out := map[uint32][]netip.AddrPort{}
	for v, ps := range s.peers.Load().byVNI {
		for _, p := range ps {
			out[v] = append(out[v], p.addr)
		}
	}
	return out
}

// peerVNIs returns what Stats.Peers lists: each peer and its VNIs.
func peerVNIs(s *Switch) map[netip.AddrPort][]uint32 {
	out := map[netip.AddrPort][]uint32{}
	for _, p := range s.Stats().Peers {
		out[p.Addr] = p.VNIs
	}
	return out
}

// TestPeerSet: a VNI's peers are the static peers if the VNI is served,
// then the control plane's members of the VNI not already listed; Stats
// lists each peer with its VNIs.
func TestPeerSet(t *testing.T) {
	tests := []struct {
		name      string
		static    []netip.AddrPort
		steps     func(s *Switch)
		want      map[uint32][]netip.AddrPort
		wantStats map[netip.AddrPort][]uint32
	}{
		{
			name:   "static peers of no VNI until one is served",
			static: []netip.AddrPort{ptB, ptC},
			steps:  func(s *Switch) {},
			want:   map[uint32][]netip.AddrPort{}, wantStats: map[netip.AddrPort][]uint32{},
		},
		{
			name:      "static peers of every served VNI",
			static:    []netip.AddrPort{ptB, ptC},
			steps:     func(s *Switch) { s.Serve([]uint32{43, 42, 42}) },
			want:      map[uint32][]netip.AddrPort{42: {ptB, ptC}, 43: {ptB, ptC}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {42, 43}, ptC: {42, 43}},
		},
		{
			name:      "gossip only",
			steps:     func(s *Switch) { s.SetPeers(42, []netip.AddrPort{ptC, ptB}) },
			want:      map[uint32][]netip.AddrPort{42: {ptC, ptB}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {42}, ptC: {42}},
		},
		{
			name:   "static first, then gossip peers not already listed",
			static: []netip.AddrPort{ptB, ptC},
			steps: func(s *Switch) {
				s.Serve([]uint32{42})
				s.SetPeers(42, []netip.AddrPort{ptD, ptC})
				s.SetPeers(43, []netip.AddrPort{ptD}) // not served: gossip's only
			},
			want:      map[uint32][]netip.AddrPort{42: {ptB, ptC, ptD}, 43: {ptD}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {42}, ptC: {42}, ptD: {42, 43}},
		},
		{
			name:   "served VNIs replaced",
			static: []netip.AddrPort{ptB},
			steps: func(s *Switch) {
				s.Serve([]uint32{42, 43})
				s.SetPeers(42, []netip.AddrPort{ptC})
				s.Serve([]uint32{43})
			},
			want:      map[uint32][]netip.AddrPort{42: {ptC}, 43: {ptB}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {43}, ptC: {42}},
		},
		{
			name:   "gossip list withdrawn",
			static: []netip.AddrPort{ptB},
			steps: func(s *Switch) {
				s.Serve([]uint32{42})
				s.SetPeers(42, []netip.AddrPort{ptB, ptC})
				s.SetPeers(42, nil)
			},
			want:      map[uint32][]netip.AddrPort{42: {ptB}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {42}},
		},
		{
			name:      "repeated static peer",
			static:    []netip.AddrPort{ptB, ptB},
			steps:     func(s *Switch) { s.Serve([]uint32{42}) },
			want:      map[uint32][]netip.AddrPort{42: {ptB}},
			wantStats: map[netip.AddrPort][]uint32{ptB: {42}},
		},
		{
			name:      "nothing served",
			static:    []netip.AddrPort{ptB},
			steps:     func(s *Switch) { s.Serve([]uint32{42}); s.Serve(nil) },
			want:      map[uint32][]netip.AddrPort{},
			wantStats: map[netip.AddrPort][]uint32{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Conn: &nullConn{closed: make(chan struct{})}, FDB: fdb.New(fdb.Config{}), StaticPeers: tt.static})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			tt.steps(s)
			if got := floodLists(s); !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("flood lists (-want +got)\n-%v\n+%v", tt.want, got)
			}
			if got := peerVNIs(s); !maps.EqualFunc(got, tt.wantStats, slices.Equal) {
				t.Errorf("Stats.Peers (-want +got)\n-%v\n+%v", tt.wantStats, got)
			}
		})
	}
}

// TestPeerCountersSurvive: a peer's counters are kept while it is no peer
// (a static peer of a VNI served again, a member back after a failure).
func TestPeerCountersSurvive(t *testing.T) {
	s, err := New(Config{Conn: &nullConn{closed: make(chan struct{})}, FDB: fdb.New(fdb.Config{}), StaticPeers: []netip.AddrPort{ptB}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Serve([]uint32{42})
	s.peers.Load().byAddr[ptB.Addr()].traffic.rx(3, 300)
	s.Serve(nil)
	s.SetPeers(42, []netip.AddrPort{ptB})
	if got := s.Stats().Peers; len(got) != 1 || got[0].RxFrames != 3 {
		t.Errorf("Stats.Peers %+v, want B with its 3 frames received", got)
	}
}

// TestStaticPeersInvalid: New refuses a static peer without an address.
func TestStaticPeersInvalid(t *testing.T) {
	conn := &nullConn{closed: make(chan struct{})}
	_, err := New(Config{Conn: conn, FDB: fdb.New(fdb.Config{}), StaticPeers: []netip.AddrPort{ptB, {}}})
	if err == nil {
		t.Fatal("New accepted an invalid static peer")
	}
	if want := fmt.Sprint(netip.AddrPort{}); err.Error() != "vtep: static peer "+want+" is not a valid address" {
		t.Errorf("error %q", err)
	}
}

// TestAcceptFromMembers: frames of a VNI with local ports are accepted from
// an alive member's VTEP before it is a peer of the VNI (a node that has
// just joined, whose VNIs have not reached us: defect 3 of issue 13), and
// counted in its counters; an address that is neither peer nor member is
// refused, members are not flooded to or listed, and a withdrawn member is
// refused again. Accepting allocates nothing.
func TestAcceptFromMembers(t *testing.T) {
	sw, dev, peer := hotRig(t)
	member := ptD
	msgs := kernelBatch(t, member)
	var q recvScratch
	notMember := func() uint64 { return sw.dropCount(dropNotMember) }

	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(len(msgs)) {
		t.Fatalf("before SetMembers: not_member drops = %d, want %d", got, len(msgs))
	}

	sw.SetMembers([]netip.AddrPort{member, peer})
	before := dev.written.Load()
	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(len(msgs)) {
		t.Errorf("from a member: not_member drops went from %d to %d", len(msgs), got)
	}
	if dev.written.Load() == before {
		t.Error("nothing from the member was delivered")
	}
	if got := sw.counters[member.Addr()].rxFrames.Load(); got != uint64(len(msgs)) {
		t.Errorf("member's rx frames = %d, want %d", got, len(msgs))
	}
	if n := testing.AllocsPerRun(100, func() { sw.receiveBatch(msgs, &q) }); n != 0 {
		t.Errorf("receiveBatch from a member allocs = %v, want 0", n)
	}
	// Not flooded to, not listed; the peer that is also a member is listed once.
	if got, want := floodLists(sw), map[uint32][]netip.AddrPort{42: {peer}}; !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("flood lists (-want +got)\n-%v\n+%v", want, got)
	}
	if got, want := peerVNIs(sw), map[netip.AddrPort][]uint32{peer: {42}}; !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Stats.Peers (-want +got)\n-%v\n+%v", want, got)
	}

	// A VNI without local ports stays unknown, whoever sends it.
	other := vxlanFor(t, 43, msgs[0])
	sw.receiveBatch([]Message{{Buf: other, N: len(other), Addr: member}}, &q)
	if got := sw.dropCount(dropUnknownVNI); got != 1 {
		t.Errorf("unknown_vni drops = %d, want 1", got)
	}
	// An address that is neither peer nor member is refused.
	sw.receiveBatch(kernelBatch(t, netip.MustParseAddrPort("192.0.2.99:4789")), &q)
	if got := notMember(); got != uint64(2*len(msgs)) {
		t.Errorf("from a stranger: not_member drops = %d, want %d", got, 2*len(msgs))
	}
	// Withdrawn: refused again.
	sw.SetMembers(nil)
	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(3*len(msgs)) {
		t.Errorf("from a withdrawn member: not_member drops = %d, want %d", got, 3*len(msgs))
	}
}

// vxlanFor returns a copy of the datagram in m with its VNI set to vni.
func vxlanFor(t *testing.T, vni uint32, m Message) []byte {
	t.Helper()
	b := slices.Clone(m.Buf[:m.N])
	if err := (Header{VNI: vni}).Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}
