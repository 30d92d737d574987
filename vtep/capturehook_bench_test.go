package vtep

import (
	"testing"

	"github.com/ovlsw/ovlsw/vtep/capture"
)

// BenchmarkSendBatchCaptureElsewhere is BenchmarkSendBatch with a capture
// running on another port: every frame pays the capture branch and the
// session's match, nothing is copied.
func BenchmarkSendBatchCaptureElsewhere(b *testing.B) {
	sw, p, sc, n := sendBench(b)
	other := newNullDevice()
	id, err := sw.AddPort(PortConfig{VNI: 43, Device: other})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := sw.StartCapture(capture.Filter{Port: id}, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	sw.sendBatch(p, sc, n)
	b.ReportAllocs()
	for b.Loop() {
		sw.sendBatch(p, sc, n)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "frames/s")
	if c, _ := sess.Stats(); c != 0 {
		b.Errorf("the capture on another port took %d frames", c)
	}
}
