package vtep_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/vteptest"
)

const wait = 5 * time.Second // generous: only a broken switch ever waits this long

var (
	self  = netip.MustParseAddrPort("192.0.2.1:4789")
	peerB = netip.MustParseAddrPort("192.0.2.2:4789")
	peerC = netip.MustParseAddrPort("192.0.2.3:4789")
	alien = netip.MustParseAddrPort("192.0.2.99:4789")

	mac1 = fdb.MAC{0x02, 0, 0, 0, 0, 0x01} // on port p1
	mac2 = fdb.MAC{0x02, 0, 0, 0, 0, 0x02} // on port p2
	macR = fdb.MAC{0x02, 0, 0, 0, 0, 0xbb} // behind peer B
)

// rig is a switch with three ports (p1, p2 on VNI 42, p3 on VNI 43) and
// peers B and C on VNI 42, over fake TAPs and a fake UDP network.
type rig struct {
	t          *testing.T
	net        *vteptest.Network
	sw         *vtep.Switch
	fdb        *fdb.Table
	p1, p2, p3 *taptest.Device
	toB, toC   <-chan vteptest.Datagram
}

func newRig(t *testing.T) *rig {
	t.Helper()
	checkGoroutines(t)
	r := &rig{t: t, net: vteptest.NewNetwork()}
	r.toB, r.toC = r.net.Tap(peerB), r.net.Tap(peerC)
	r.fdb = fdb.New(fdb.DefaultConfig())
	sw, err := vtep.New(vtep.Config{Conn: r.net.Listen(self), FDB: r.fdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	r.sw = sw
	r.p1, r.p2, r.p3 = taptest.New("p1", 1450), taptest.New("p2", 1450), taptest.New("p3", 1450)
	for _, p := range []struct {
		d   *taptest.Device
		vni uint32
	}{{r.p1, 42}, {r.p2, 42}, {r.p3, 43}} {
		if _, err := sw.AddPort(vtep.PortConfig{VNI: p.vni, Device: p.d}); err != nil {
			t.Fatal(err)
		}
	}
	sw.SetPeers(42, []netip.AddrPort{peerB, peerC})
	return r
}

// checkGoroutines fails the test if it ends with more goroutines than it
// started with, once they have had a deadline to exit.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(time.Millisecond) // polling interval, not synchronisation
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

// drops returns the switch's drop counter for a reason, by the name ovlsw
// status shows (DropReason.String).
func drops(sw *vtep.Switch, reason string) uint64 { return sw.Stats().Drops[reason] }

func frame(dst, src fdb.MAC, payload string) []byte {
	f := append(append(append([]byte{}, dst[:]...), src[:]...), 0x08, 0x00)
	return append(f, payload...)
}

func vxlan(vni uint32, inner []byte) []byte {
	b := make([]byte, vtep.HeaderLen, vtep.HeaderLen+len(inner))
	_ = vtep.Header{VNI: vni}.Encode(b)
	return append(b, inner...)
}

func (r *rig) expectDatagram(ch <-chan vteptest.Datagram, name string, vni uint32, inner []byte) {
	r.t.Helper()
	select {
	case d := <-ch:
		if !bytes.Equal(d.Data, vxlan(vni, inner)) {
			r.t.Fatalf("to %s: got % x\nwant % x", name, d.Data, vxlan(vni, inner))
		}
		if d.From != self {
			r.t.Errorf("to %s: sent from %v, want %v", name, d.From, self)
		}
	case <-time.After(wait):
		r.t.Fatalf("nothing sent to %s", name)
	}
}

func (r *rig) expectFrame(d *taptest.Device, want []byte) {
	r.t.Helper()
	if got := d.Expect(r.t, wait); !bytes.Equal(got, want) {
		r.t.Fatalf("%s: got % x\nwant % x", d.Name(), got, want)
	}
}

// expectQuiet checks that nothing more was written to the devices and sent
// to the peers. Call it after a barrier: a later frame seen at its
// destination, so everything before it has been handled.
func (r *rig) expectQuiet(devs ...*taptest.Device) {
	r.t.Helper()
	for _, d := range devs {
		select {
		case f := <-d.Out:
			r.t.Errorf("%s: unexpected frame % x", d.Name(), f)
		default:
		}
	}
	for name, ch := range map[string]<-chan vteptest.Datagram{"B": r.toB, "C": r.toC} {
		select {
		case d := <-ch:
			r.t.Errorf("peer %s: unexpected datagram % x", name, d.Data)
		default:
		}
	}
}

// barrierFromPort floods a marker from p1 and waits for it everywhere it
// goes, so everything p1 sent before has been handled.
func (r *rig) barrierFromPort() {
	r.t.Helper()
	m := frame(fdb.Broadcast, mac1, "barrier")
	r.p1.Inject(m)
	r.expectFrame(r.p2, m)
	r.expectDatagram(r.toB, "B", 42, m)
	r.expectDatagram(r.toC, "C", 42, m)
}

// barrierFromWire sends a broadcast marker from peer B and waits for it on
// p1 and p2, so every datagram sent before it has been handled.
func (r *rig) barrierFromWire() {
	r.t.Helper()
	m := frame(fdb.Broadcast, macR, "barrier")
	r.net.Send(peerB, self, vxlan(42, m))
	r.expectFrame(r.p1, m)
	r.expectFrame(r.p2, m)
}

func TestFloodFromPort(t *testing.T) {
	r := newRig(t)
	b := frame(fdb.Broadcast, mac1, "who-has")
	r.p1.Inject(b)
	// Head-end replication to every member VTEP of VNI 42, and the other
	// port of VNI 42; never back to p1, never to VNI 43.
	r.expectFrame(r.p2, b)
	r.expectDatagram(r.toB, "B", 42, b)
	r.expectDatagram(r.toC, "C", 42, b)
	// Unknown unicast floods the same way.
	u := frame(fdb.MAC{0x02, 9, 9, 9, 9, 9}, mac1, "unknown")
	r.p1.Inject(u)
	r.expectFrame(r.p2, u)
	r.expectDatagram(r.toB, "B", 42, u)
	r.expectDatagram(r.toC, "C", 42, u)
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)

	if loc, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: mac1}); !ok || !loc.IsLocal() {
		t.Errorf("source MAC not learned on its port: %v %v", loc, ok)
	}
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 43, MAC: mac1}); ok {
		t.Error("MAC learned in the wrong VNI")
	}
}

func TestLearnAndUnicast(t *testing.T) {
	r := newRig(t)
	// p1 announces itself; B answers from macR to mac1.
	r.p1.Inject(frame(fdb.Broadcast, mac1, "hello"))
	r.expectFrame(r.p2, frame(fdb.Broadcast, mac1, "hello"))
	<-r.toB
	<-r.toC
	reply := frame(mac1, macR, "reply")
	r.net.Send(peerB, self, vxlan(42, reply))
	r.expectFrame(r.p1, reply) // known local MAC: only its port
	r.barrierFromWire()
	r.expectQuiet(r.p1, r.p2, r.p3)

	e, ok := r.fdb.Get(fdb.Key{VNI: 42, MAC: macR})
	if !ok || e.VTEP != peerB || e.Origin != fdb.OriginLearned {
		t.Fatalf("remote MAC learned as %+v %v, want behind %v", e, ok, peerB)
	}
	// Known unicast goes to its VTEP only.
	u := frame(macR, mac1, "unicast")
	r.p1.Inject(u)
	r.expectDatagram(r.toB, "B", 42, u)
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)

	// Between local ports: p2 learns, p1 sends to p2 without the underlay.
	r.p2.Inject(frame(fdb.Broadcast, mac2, "p2 here"))
	r.expectFrame(r.p1, frame(fdb.Broadcast, mac2, "p2 here"))
	<-r.toB
	<-r.toC
	l := frame(mac2, mac1, "local")
	r.p1.Inject(l)
	r.expectFrame(r.p2, l)
	r.barrierFromPort()
	r.expectQuiet(r.p1, r.p2, r.p3)

	st := r.sw.Stats()
	if st.Ports[0].RxFrames == 0 || st.Ports[1].TxFrames == 0 {
		t.Errorf("port counters: %+v", st.Ports)
	}
	var b vtep.PeerStats
	for _, p := range st.Peers {
		if p.Addr == peerB {
			b = p
		}
	}
	if b.RxFrames != 2 || b.TxFrames < 3 {
		t.Errorf("peer B counters %+v, want 2 received and at least 3 sent", b)
	}
}

// TestSplitHorizon: what arrives from the underlay goes to local ports only,
// never back out to any VTEP.
func TestSplitHorizon(t *testing.T) {
	r := newRig(t)
	b := frame(fdb.Broadcast, macR, "arp")
	r.net.Send(peerB, self, vxlan(42, b))
	r.expectFrame(r.p1, b)
	r.expectFrame(r.p2, b)
	u := frame(fdb.MAC{0x02, 7, 7, 7, 7, 7}, macR, "unknown")
	r.net.Send(peerB, self, vxlan(42, u))
	r.expectFrame(r.p1, u)
	r.expectFrame(r.p2, u)
	r.barrierFromWire()
	r.expectQuiet(r.p1, r.p2, r.p3)
}

func TestDropsByReason(t *testing.T) {
	r := newRig(t)
	ok := frame(fdb.Broadcast, macR, "x")
	big := frame(fdb.Broadcast, macR, string(make([]byte, 1451))) // 1451-byte payload > MTU 1450
	noI := vxlan(42, ok)
	noI[0] = 0
	r.net.Send(peerB, self, []byte{8, 0, 0, 0})                                  // short
	r.net.Send(peerB, self, vxlan(42, ok[:10]))                                  // short inner frame
	r.net.Send(peerB, self, noI)                                                 // bad header
	r.net.Send(peerB, self, vxlan(99, ok))                                       // unknown VNI
	r.net.Send(alien, self, vxlan(42, ok))                                       // not a member
	r.net.Send(peerB, self, vxlan(43, ok))                                       // B is not a member of VNI 43
	r.net.Send(peerB, self, vxlan(42, big))                                      // larger than the port MTU
	r.net.Send(peerB, self, vxlan(42, frame(fdb.Broadcast, fdb.Broadcast, "x"))) // multicast source
	r.barrierFromWire()
	r.barrierFromPort() // also learns mac1 on p1
	r.expectQuiet(r.p3)
	r.p1.Inject(frame(mac1, mac1, "hairpin"))
	r.p1.Inject(frame(fdb.Broadcast, fdb.MAC{}, "zero source"))
	r.barrierFromPort()

	want := map[string]uint64{
		"short": 2, "bad_header": 1, "unknown_vni": 1, "not_member": 2,
		"mtu":        2, // one per port of the VNI it would have gone to
		"bad_source": 2, "hairpin": 1,
	}
	got := r.sw.Stats().Drops
	for _, reason := range vtep.DropReasons() {
		if name := reason.String(); got[name] != want[name] {
			t.Errorf("drops[%v] = %d, want %d", reason, got[name], want[name])
		}
	}
	// Nothing dropped was learned.
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: fdb.Broadcast}); ok {
		t.Error("learned a multicast source")
	}
}

func TestRemovePortWithdrawsMACs(t *testing.T) {
	r := newRig(t)
	r.p2.Inject(frame(fdb.Broadcast, mac2, "p2"))
	r.expectFrame(r.p1, frame(fdb.Broadcast, mac2, "p2"))
	<-r.toB
	<-r.toC
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: mac2}); !ok {
		t.Fatal("mac2 not learned")
	}
	if err := r.sw.RemovePort(2); err != nil {
		t.Fatal(err)
	}
	if !r.p2.Closed() {
		t.Error("RemovePort left the device open")
	}
	if _, ok := r.fdb.Lookup(fdb.Key{VNI: 42, MAC: mac2}); ok {
		t.Error("removed port's MAC still in the FDB")
	}
	if err := r.sw.RemovePort(2); err == nil {
		t.Error("removing a removed port succeeded")
	}
	// The VNI keeps working on the remaining port.
	b := frame(fdb.Broadcast, macR, "still here")
	r.net.Send(peerB, self, vxlan(42, b))
	r.expectFrame(r.p1, b)
}

func TestCloseIsIdempotent(t *testing.T) {
	r := newRig(t)
	if err := r.sw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.sw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*taptest.Device{r.p1, r.p2, r.p3} {
		if !d.Closed() {
			t.Errorf("%s left open", d.Name())
		}
	}
	if _, err := r.sw.AddPort(vtep.PortConfig{VNI: 42, Device: taptest.New("late", 1450)}); err == nil {
		t.Error("AddPort after Close succeeded")
	}
}

// TestFloodRate: a port may flood FloodRate frames a second (a second's
// worth in a burst); the rest are dropped and counted, while known unicast
// is not limited. The clock stands still, so exactly the burst passes.
func TestFloodRate(t *testing.T) {
	checkGoroutines(t)
	net := vteptest.NewNetwork()
	now := time.Unix(1_700_000_000, 0)
	table := fdb.New(fdb.Config{Now: func() time.Time { return now }})
	sw, err := vtep.New(vtep.Config{Conn: net.Listen(self), FDB: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	p1, p2 := taptest.New("p1", 1450), taptest.New("p2", 1450)
	if _, err := sw.AddPort(vtep.PortConfig{VNI: 42, Device: p1, FloodRate: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddPort(vtep.PortConfig{VNI: 42, Device: p2}); err != nil {
		t.Fatal(err)
	}
	p2.Inject(frame(fdb.Broadcast, mac2, "p2 here")) // learn mac2 on p2
	p1.Expect(t, wait)
	for i := range 20 {
		p1.Inject(frame(fdb.Broadcast, mac1, fmt.Sprint("bcast ", i)))
	}
	barrier := frame(mac2, mac1, "known unicast is not limited")
	p1.Inject(barrier)
	var got int
	for {
		f := p2.Expect(t, wait)
		if bytes.Equal(f, barrier) {
			break
		}
		got++
	}
	if got != 5 || drops(sw, "flood_rate") != 15 {
		t.Errorf("flooded %d, dropped %d; want 5 and 15", got, drops(sw, "flood_rate"))
	}
}

// TestPeerCountersSkipFailedSend: a flood whose datagram to one member in
// the middle cannot be sent (port 0) still reaches the members after it,
// and the per-peer counters credit those that got it, not the first n
// messages of the batch.
func TestPeerCountersSkipFailedSend(t *testing.T) {
	r := newRig(t)
	bad := netip.MustParseAddrPort("192.0.2.9:0")
	r.sw.SetPeers(42, []netip.AddrPort{peerB, bad, peerC})
	b := frame(fdb.Broadcast, mac1, "flood")
	r.p1.Inject(b)
	r.expectDatagram(r.toB, "B", 42, b)
	r.expectDatagram(r.toC, "C", 42, b)
	tx := func() map[netip.AddrPort]uint64 {
		m := map[netip.AddrPort]uint64{}
		for _, p := range r.sw.Stats().Peers {
			m[p.Addr] = p.TxFrames
		}
		return m
	}
	deadline := time.Now().Add(wait)
	for drops(r.sw, "write_error") == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
	if got := drops(r.sw, "write_error"); got != 1 {
		t.Fatalf("write_error drops = %d, want 1", got)
	}
	if got := tx(); got[peerB] != 1 || got[peerC] != 1 || got[bad] != 0 {
		t.Errorf("tx frames by peer = %v, want B 1, C 1, %v 0", got, bad)
	}
}

// TestAddPortVNIRange: a port's VNI is checked by fdb.CheckVNI, and the
// error names the value.
func TestAddPortVNIRange(t *testing.T) {
	tests := []struct {
		name    string
		vni     uint32
		wantErr string // "" means accepted
	}{
		{"zero", 0, "VNI 0 out of range 1..16777215"},
		{"one", 1, ""},
		{"max", fdb.MaxVNI, ""},
		{"past max", fdb.MaxVNI + 1, "VNI 16777216 out of range 1..16777215"},
	}
	r := newRig(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.sw.AddPort(vtep.PortConfig{VNI: tt.vni, Device: taptest.New("v", 1450)})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("AddPort(VNI %d) = %v, want accepted", tt.vni, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("AddPort(VNI %d) = %v, want an error containing %q", tt.vni, err, tt.wantErr)
			}
		})
	}
}

// TestStaticPeers: a static peer gets the floods of the VNIs the switch
// serves, and may send their frames; for a VNI not served, neither, until
// it is.
func TestStaticPeers(t *testing.T) {
	checkGoroutines(t)
	net := vteptest.NewNetwork()
	toB := net.Tap(peerB)
	sw, err := vtep.New(vtep.Config{Conn: net.Listen(self), FDB: fdb.New(fdb.DefaultConfig()), StaticPeers: []netip.AddrPort{peerB}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	p1, p3 := taptest.New("p1", 1450), taptest.New("p3", 1450)
	for _, p := range []struct {
		d   *taptest.Device
		vni uint32
	}{{p1, 42}, {p3, 43}} {
		if _, err := sw.AddPort(vtep.PortConfig{VNI: p.vni, Device: p.d}); err != nil {
			t.Fatal(err)
		}
	}
	sw.Serve([]uint32{42})
	expect := func(vni uint32, inner []byte) {
		t.Helper()
		select {
		case d := <-toB:
			if !bytes.Equal(d.Data, vxlan(vni, inner)) {
				t.Fatalf("to B: got % x\nwant % x", d.Data, vxlan(vni, inner))
			}
		case <-time.After(wait):
			t.Fatal("nothing sent to B")
		}
	}
	b42 := frame(fdb.Broadcast, mac1, "on 42")
	p1.Inject(b42)
	expect(42, b42)
	fromB := frame(fdb.Broadcast, macR, "from B")
	net.Send(peerB, self, vxlan(43, fromB)) // 43 is not served: B is no peer of it
	net.Send(peerB, self, vxlan(42, fromB))
	if got := p1.Expect(t, wait); !bytes.Equal(got, fromB) {
		t.Fatalf("p1: got % x", got)
	}
	if got := drops(sw, "not_member"); got != 1 {
		t.Errorf("not_member drops = %d, want 1 (the frame for VNI 43)", got)
	}

	before := frame(fdb.Broadcast, mac2, "on 43, not served")
	p3.Inject(before)
	deadline := time.Now().Add(wait)
	for sw.Stats().Ports[1].RxFrames == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
	sw.Serve([]uint32{42, 43})
	after := frame(fdb.Broadcast, mac2, "on 43, served")
	p3.Inject(after)
	expect(43, after) // and not before
	if got := sw.Stats().Peers; len(got) != 1 || got[0].Addr != peerB || !slices.Equal(got[0].VNIs, []uint32{42, 43}) {
		t.Errorf("Stats.Peers %+v, want B on 42 and 43", got)
	}
}
