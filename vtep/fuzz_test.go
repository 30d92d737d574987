package vtep

import (
	"bytes"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
)

// FuzzDecap feeds arbitrary datagrams to the decapsulation and frame
// classification that every received packet goes through. Seeds: the
// committed corpus in testdata/fuzz/FuzzDecap (kernel-written packets and
// hand-made edge cases).
func FuzzDecap(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		vni, inner, reason, ok := decap(b)
		if !bytes.Equal(b, orig) {
			t.Fatal("decap modified its input")
		}
		if !ok {
			if reason != dropShort && reason != dropBadHeader {
				t.Fatalf("decap dropped with reason %v", reason)
			}
			return
		}
		if vni > fdb.MaxVNI || len(inner) != len(b)-HeaderLen || len(inner) < ethHeaderLen {
			t.Fatalf("decap = vni %d, inner %d bytes of %d", vni, len(inner), len(b))
		}
		// Re-encoding the header gives a packet that decodes the same.
		re := bytes.Clone(b)
		_ = Header{VNI: vni}.Encode(re)
		if v2, in2, _, ok := decap(re); !ok || v2 != vni || !bytes.Equal(in2, inner) {
			t.Fatalf("round trip: vni %d -> %d", vni, v2)
		}
		var c frameClass
		if _, ok := classify(inner, &c); ok {
			if c.L2Len < ethHeaderLen || c.L2Len > len(inner) {
				t.Fatalf("classify L2Len %d of a %d-byte frame", c.L2Len, len(inner))
			}
			if c.Src.IsMulticast() || c.Src.IsZero() {
				t.Fatalf("classify accepted source %v", c.Src)
			}
		}
	})
}

// FuzzClassify feeds arbitrary Ethernet frames to classify, as frames read
// from a TAP port.
func FuzzClassify(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c frameClass
		reason, ok := classify(frame, &c)
		if !ok {
			if reason != dropShort && reason != dropBadSource {
				t.Fatalf("reason %v", reason)
			}
			return
		}
		if c.L2Len < ethHeaderLen || c.L2Len > len(frame) {
			t.Fatalf("L2Len %d of %d", c.L2Len, len(frame))
		}
		_ = fitsMTU(frame, &c, 1450)
	})
}
