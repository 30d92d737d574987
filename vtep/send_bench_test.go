package vtep

import (
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
)

// sendBench is a port's read batch of the kernel-written frames, every
// other one to a known remote MAC (unicast to the peer), the rest as
// captured (mostly floods).
func sendBench(tb testing.TB) (*Switch, *port, *sendScratch, int) {
	sw, _, peer := hotRig(tb)
	p := sw.ports.Load().byVNI[42][0]
	sc := newSendScratch(p)
	remote := fdb.MAC{2, 0, 0, 0, 0, 0xbb}
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: remote}, fdb.Location{VTEP: peer}, fdb.OriginLearned, 1)
	n := 0
	for _, payload := range kernelPayloads(tb) {
		inner := payload[HeaderLen:]
		if n == len(sc.bufs) || len(inner) > p.mtu+ethHeaderLen {
			break
		}
		sc.sizes[n] = copy(sc.bufs[n][HeaderLen:], inner)
		if n%2 == 0 {
			copy(sc.bufs[n][HeaderLen:], remote[:])
		}
		n++
	}
	return sw, p, sc, n
}

// BenchmarkSendBatch: the TAP -> wire path's per-frame decisions over a
// batch of plain frames (no offloads), the cost the capture branch and
// the decision functions would show in.
func BenchmarkSendBatch(b *testing.B) {
	sw, p, sc, n := sendBench(b)
	sw.sendBatch(p, sc, n)
	b.ReportAllocs()
	for b.Loop() {
		sw.sendBatch(p, sc, n)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "frames/s")
}
