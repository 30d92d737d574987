package vtep

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
)

var group4 = netip.MustParseAddrPort("239.1.1.1:4789")

// TestSetGroup: a VNI in multicast mode floods to its group alone, keeps
// its peers (who may still send), and goes back to its peers when the
// group is removed; a group that is not multicast is refused.
func TestSetGroup(t *testing.T) {
	sw, _, peer := hotRig(t)
	sw.SetPeers(43, []netip.AddrPort{ptC})
	if err := sw.SetGroup(42, group4); err != nil {
		t.Fatal(err)
	}
	ps := sw.peers.Load()
	got := map[uint32][]netip.AddrPort{}
	for _, v := range []uint32{42, 43} {
		for _, p := range ps.floodList(v) {
			got[v] = append(got[v], p.addr)
		}
	}
	if want := (map[uint32][]netip.AddrPort{42: {group4}, 43: {ptC}}); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("flood lists (-want +got)\n-%v\n+%v", want, got)
	}
	if got, want := peerVNIs(sw), (map[netip.AddrPort][]uint32{group4: {42}, peer: {42}, ptC: {43}}); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Stats.Peers (-want +got)\n-%v\n+%v", want, got)
	}
	if err := sw.SetGroup(42, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if l := sw.peers.Load().floodList(42); len(l) != 1 || l[0].addr != peer {
		t.Errorf("after removing the group, VNI 42 floods to %v, want its peer %v", l, peer)
	}
	for _, bad := range []string{"192.0.2.9:4789", "239.1.1.1:0", "[ff02::1]:0"} {
		if err := sw.SetGroup(42, netip.MustParseAddrPort(bad)); err == nil {
			t.Errorf("SetGroup(%v) = nil, want an error", bad)
		}
	}
}

// TestGroupFlood: in multicast mode a broadcast, an unknown unicast and a
// multicast frame each leave as one datagram to the group instead of one
// per peer; a known unicast still goes straight to its VTEP. Sending
// allocates nothing.
func TestGroupFlood(t *testing.T) {
	sw, _, peer := hotRig(t)
	sw.SetPeers(42, []netip.AddrPort{peer, ptC, ptD})
	if err := sw.SetGroup(42, group4); err != nil {
		t.Fatal(err)
	}
	p := sw.ports.Load().byVNI[42][0]
	sc := newSendScratch(p)
	remote := fdb.MAC{2, 0, 0, 0, 0, 0xbb}
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: remote}, fdb.Location{VTEP: ptC}, fdb.OriginLearned, 1)
	src := fdb.MAC{2, 0, 0, 0, 0, 0x01}
	frames := [][]byte{
		ethFrame(fdb.Broadcast, src),                   // broadcast
		ethFrame(fdb.MAC{2, 9, 9, 9, 9, 9}, src),       // unknown unicast
		ethFrame(fdb.MAC{0x01, 0, 0x5e, 0, 0, 1}, src), // multicast
		ethFrame(remote, src),                          // known unicast
	}
	for i, f := range frames {
		sc.sizes[i] = copy(sc.bufs[i][HeaderLen:], f)
	}
	sent := func() map[netip.AddrPort]uint64 {
		out := map[netip.AddrPort]uint64{}
		for _, a := range []netip.AddrPort{group4, peer, ptC, ptD} {
			if c := sw.counters[a.Addr()]; c != nil && c.txFrames.Load() > 0 {
				out[a] = c.txFrames.Load()
			}
		}
		return out
	}
	sw.sendBatch(p, sc, len(frames))
	if got, want := sent(), (map[netip.AddrPort]uint64{group4: 3, ptC: 1}); !maps.Equal(got, want) {
		t.Errorf("frames sent by destination (-want +got)\n-%v\n+%v", want, got)
	}
	if allocs := testing.AllocsPerRun(100, func() { sw.sendBatch(p, sc, len(frames)) }); allocs != 0 {
		t.Errorf("sendBatch in multicast mode allocs = %v, want 0", allocs)
	}
}

// ethFrame returns a minimal IPv4-typed Ethernet frame, padded to 60 bytes.
func ethFrame(dst, src fdb.MAC) []byte {
	f := make([]byte, 60)
	copy(f, dst[:])
	copy(f[6:], src[:])
	f[12], f[13] = 0x08, 0x00
	return f
}

// TestGroupAccept: a VNI in multicast mode takes frames from any sender
// (a kernel VTEP on the group is no member and no peer), counted in the
// group's counters, and learns their inner source MACs against the
// sender's address and the VXLAN port, so unicast to them goes straight
// there; another VNI still refuses strangers; accepting allocates nothing.
func TestGroupAccept(t *testing.T) {
	sw, dev, _ := hotRig(t)
	dev43 := newNullDevice()
	if _, err := sw.AddPort(PortConfig{VNI: 43, Device: dev43}); err != nil {
		t.Fatal(err)
	}
	waitReading(t, &dev43.reads)
	stranger := netip.MustParseAddrPort("192.0.2.99:41234") // a kernel VTEP's flow-hash source port
	msgs := kernelBatch(t, stranger)
	var q recvScratch
	notMember := func() uint64 { return sw.dropCount(dropNotMember) }

	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(len(msgs)) {
		t.Fatalf("head-end mode: not_member drops = %d, want %d", got, len(msgs))
	}
	if err := sw.SetGroup(42, group4); err != nil {
		t.Fatal(err)
	}
	before := dev.written.Load()
	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(len(msgs)) {
		t.Errorf("multicast mode: not_member drops went from %d to %d", len(msgs), got)
	}
	if dev.written.Load() == before {
		t.Error("nothing from the stranger was delivered")
	}
	if got := sw.counters[group4.Addr()].rxFrames.Load(); got != uint64(len(msgs)) {
		t.Errorf("group's rx frames = %d, want %d", got, len(msgs))
	}
	var inner [6]byte
	copy(inner[:], msgs[0].Buf[HeaderLen+6:HeaderLen+12])
	loc, ok := sw.fdb.Lookup(fdb.Key{VNI: 42, MAC: inner})
	if want := netip.AddrPortFrom(stranger.Addr(), group4.Port()); !ok || loc.VTEP != want {
		t.Errorf("inner source %v learned at %v (found %v), want %v", fdb.MAC(inner), loc.VTEP, ok, want)
	}
	if n := testing.AllocsPerRun(100, func() { sw.receiveBatch(msgs, &q) }); n != 0 {
		t.Errorf("receiveBatch from a stranger allocs = %v, want 0", n)
	}
	// Two strangers in one batch: each is learned against its own address.
	other := netip.MustParseAddrPort("192.0.2.98:40000")
	b2 := slices.Clone(msgs[0].Buf[:msgs[0].N])
	b2[HeaderLen+11] ^= 0x40 // another inner source MAC
	sw.receiveBatch([]Message{msgs[0], {Buf: b2, N: len(b2), Addr: other}}, &q)
	var inner2 [6]byte
	copy(inner2[:], b2[HeaderLen+6:HeaderLen+12])
	if loc, ok := sw.fdb.Lookup(fdb.Key{VNI: 42, MAC: inner2}); !ok || loc.VTEP.Addr() != other.Addr() {
		t.Errorf("second stranger's MAC learned at %v (found %v), want %v", loc.VTEP, ok, other.Addr())
	}
	// VNI 43 is not in multicast mode: strangers stay out.
	sw.receiveBatch([]Message{{Buf: vxlanFor(t, 43, msgs[0]), N: msgs[0].N, Addr: stranger}}, &q)
	if got := notMember(); got != uint64(len(msgs))+1 {
		t.Errorf("VNI 43 from a stranger: not_member drops = %d, want %d", got, len(msgs)+1)
	}
	// Back to head-end replication: refused again.
	if err := sw.SetGroup(42, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	sw.receiveBatch(msgs, &q)
	if got := notMember(); got != uint64(2*len(msgs))+1 {
		t.Errorf("after the group is removed: not_member drops = %d, want %d", got, 2*len(msgs)+1)
	}
}
