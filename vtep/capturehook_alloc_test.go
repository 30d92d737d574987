package vtep

import (
	"testing"

	"github.com/ovlsw/ovlsw/vtep/capture"
)

// TestCaptureAllocs: with captures running on the port and the peer (and
// nobody reading them, so their rings fill and then lose frames), sending
// and receiving still allocate nothing.
func TestCaptureAllocs(t *testing.T) {
	sw, _, peer := hotRig(t)
	p := sw.ports.Load().byVNI[42][0]
	onPort, err := sw.StartCapture(capture.Filter{Port: p.id}, 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer onPort.Close()
	onPeer, err := sw.StartCapture(capture.Filter{Peer: peer.Addr()}, 64, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer onPeer.Close()
	msgs := kernelBatch(t, peer)
	var q recvScratch
	sw.receiveBatch(msgs, &q)
	if n := testing.AllocsPerRun(100, func() { sw.receiveBatch(msgs, &q) }); n != 0 {
		t.Errorf("receiveBatch allocs with captures running = %v, want 0", n)
	}
	sc := newSendScratch(p)
	n := 0
	for _, payload := range kernelPayloads(t) {
		inner := payload[HeaderLen:]
		if n == len(sc.bufs) || len(inner) > p.mtu+ethHeaderLen {
			break
		}
		sc.sizes[n] = copy(sc.bufs[n][HeaderLen:], inner)
		n++
	}
	sw.sendBatch(p, sc, n)
	if allocs := testing.AllocsPerRun(100, func() { sw.sendBatch(p, sc, n) }); allocs != 0 {
		t.Errorf("sendBatch allocs with captures running = %v, want 0", allocs)
	}
	for _, s := range []*capture.Session{onPort, onPeer} {
		if captured, lost := s.Stats(); captured == 0 || lost == 0 {
			t.Errorf("%+v: captured %d, lost %d: want both (the ring fills)", s.Filter(), captured, lost)
		}
	}
}
