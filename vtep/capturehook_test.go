package vtep_test

import (
	"context"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/capture"
)

// next reads one record from sess within wait.
func next(t *testing.T, sess *capture.Session) capture.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var r capture.Record
	if err := sess.Next(ctx, &r); err != nil {
		c, l := sess.Stats()
		t.Fatalf("capture: %v (captured %d, lost %d)", err, c, l)
	}
	return r
}

// TestCapturePoints: a capture on a port sees frames read from it, with
// the drop reason of those dropped, and frames written to it; one on a
// peer the inner frames sent to it and received from it; one on a VNI
// both.
func TestCapturePoints(t *testing.T) {
	r := newRig(t)
	if _, err := r.sw.StartCapture(capture.Filter{}, 0, 0); err == nil {
		t.Error("a capture with no filter started")
	}
	if _, err := r.sw.StartCapture(capture.Filter{Port: 99}, 0, 0); err == nil {
		t.Error("a capture on a port that does not exist started")
	}
	id, ok := r.sw.PortID("p1")
	if !ok {
		t.Fatal("no port p1")
	}
	onPort, err := r.sw.StartCapture(capture.Filter{Port: id}, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	onPeer, err := r.sw.StartCapture(capture.Filter{Peer: peerB.Addr()}, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	drop, _ := vtep.ParseFloodPolicy("unicast=drop")
	r.sw.SetFloodPolicy(42, drop)

	unknown := frame(fdb.MAC{0x02, 0, 0, 0, 0, 0x77}, mac1, "unknown")
	r.p1.Inject(unknown)
	if rec := next(t, onPort); rec.Dir != capture.In || rec.Drop != "flood_policy" || string(rec.Data) != string(unknown) || rec.VNI != 42 {
		t.Errorf("dropped frame: %+v", rec)
	}
	bc := frame(fdb.Broadcast, mac1, "hello")
	r.p1.Inject(bc)
	if rec := next(t, onPort); rec.Dir != capture.In || rec.Drop != "" || string(rec.Data) != string(bc) {
		t.Errorf("flooded frame at the port: %+v", rec)
	}
	if rec := next(t, onPeer); rec.Dir != capture.Out || rec.Peer != peerB || string(rec.Data) != string(bc) {
		t.Errorf("flooded frame at peer B: %+v", rec)
	}
	r.expectDatagram(r.toB, "B", 42, bc)

	back := frame(mac1, macR, "back")
	r.net.Send(peerB, self, vxlan(42, back))
	if rec := next(t, onPeer); rec.Dir != capture.In || rec.Peer != peerB || string(rec.Data) != string(back) || rec.Drop != "" {
		t.Errorf("frame from peer B: %+v", rec)
	}
	if rec := next(t, onPort); rec.Dir != capture.Out || string(rec.Data) != string(back) {
		t.Errorf("frame written to p1: %+v", rec)
	}
	r.expectFrame(r.p1, back)
	r.net.Send(peerB, self, vxlan(77, back))
	if rec := next(t, onPeer); rec.Drop != "unknown_vni" {
		t.Errorf("frame of an unknown VNI: %+v", rec)
	}
	notMember := drops(r.sw, "not_member")
	r.net.Send(alien, self, vxlan(42, back))
	deadline := time.Now().Add(wait)
	for drops(r.sw, "not_member") == notMember && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval
	}
	onPeer.Close()
	onPort.Close()

	onVNI, err := r.sw.StartCapture(capture.Filter{VNI: 42}, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer onVNI.Close()
	r.p2.Inject(frame(mac1, mac2, "to p1"))
	var dirs []capture.Dir
	for range 2 {
		dirs = append(dirs, next(t, onVNI).Dir)
	}
	if dirs[0] != capture.In || dirs[1] != capture.Out {
		t.Errorf("VNI capture directions %v, want in then out", dirs)
	}
	r.expectFrame(r.p1, frame(mac1, mac2, "to p1"))
}
