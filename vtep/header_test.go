package vtep

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ovlsw/ovlsw/fdb"
)

func TestHeaderEncodeDecode(t *testing.T) {
	tests := []struct {
		name    string
		vni     uint32
		want    []byte
		wantVNI uint32
	}{
		{"vni 1", 1, []byte{0x08, 0, 0, 0, 0, 0, 1, 0}, 1},
		{"vni 42", 42, []byte{0x08, 0, 0, 0, 0, 0, 42, 0}, 42},
		{"vni max", fdb.MaxVNI, []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}, fdb.MaxVNI},
		{"vni 0x123456", 0x123456, []byte{0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0}, 0x123456},
		{"high bits ignored", 1<<24 | 7, []byte{0x08, 0, 0, 0, 0, 0, 7, 0}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0xee}, HeaderLen)
			if err := (Header{VNI: tt.vni}).Encode(b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.want) {
				t.Errorf("Encode = % x, want % x", b, tt.want)
			}
			var h Header
			if err := h.Decode(b); err != nil || h.VNI != tt.wantVNI {
				t.Errorf("Decode = %v, %v; want %d", h.VNI, err, tt.wantVNI)
			}
		})
	}
}

func TestHeaderDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		err  error
		vni  uint32
	}{
		{"empty", nil, io.ErrShortBuffer, 0},
		{"seven bytes", []byte{8, 0, 0, 0, 0, 0, 1}, io.ErrShortBuffer, 0},
		{"I flag clear", []byte{0, 0, 0, 0, 0, 0, 1, 0}, ErrNoIFlag, 0},
		{"reserved bits ignored", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 9, 0xff}, nil, 9},
		{"GBP-style flags ignored", []byte{0x88, 0, 0x12, 0x34, 0, 0, 5, 0}, nil, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			err := h.Decode(tt.in)
			if !errors.Is(err, tt.err) || (err == nil && h.VNI != tt.vni) {
				t.Errorf("Decode(% x) = %d, %v; want %d, %v", tt.in, h.VNI, err, tt.vni, tt.err)
			}
		})
	}
	if err := (Header{}).Encode(make([]byte, 7)); !errors.Is(err, io.ErrShortBuffer) {
		t.Errorf("Encode into 7 bytes = %v, want io.ErrShortBuffer", err)
	}
}

// kernelPayloads returns the UDP payloads (VXLAN header and inner frame) of
// the packets the Linux kernel's vxlan driver wrote in shared/testdata.
func kernelPayloads(tb testing.TB) [][]byte {
	tb.Helper()
	// A copy of shared/testdata/kernel-vxlan-vni42.pcap, so the test never depends on shared/.
	f, err := os.Open("testdata/kernel-vxlan-vni42.pcap")
	if err != nil {
		tb.Fatalf("kernel capture: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			tb.Fatalf("packet without UDP: %v", p)
		}
		out = append(out, append([]byte(nil), udp.Payload...))
	}
	if len(out) == 0 {
		tb.Fatal("no packets in capture")
	}
	return out
}

// TestDecapKernelCapture checks decap against bytes the Linux kernel wrote,
// cross-checked with gopacket's VXLAN decoder, and that our Encode writes
// the same header the kernel does.
func TestDecapKernelCapture(t *testing.T) {
	for i, payload := range kernelPayloads(t) {
		vni, inner, reason, ok := decap(payload)
		if !ok {
			t.Fatalf("packet %d: dropped as %v", i, reason)
		}
		var vx layers.VXLAN
		if err := vx.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("packet %d: gopacket: %v", i, err)
		}
		if vni != 42 || vni != vx.VNI || !bytes.Equal(inner, vx.Payload) {
			t.Errorf("packet %d: decap vni %d (gopacket %d), inner %d bytes (gopacket %d)", i, vni, vx.VNI, len(inner), len(vx.Payload))
		}
		var c frameClass
		if reason, ok := classify(inner, &c); !ok {
			t.Errorf("packet %d: classify dropped as %v", i, reason)
		}
		eth := gopacket.NewPacket(inner, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if c.Dst.String() != eth.DstMAC.String() || c.Src.String() != eth.SrcMAC.String() || c.EtherType != uint16(eth.EthernetType) {
			t.Errorf("packet %d: classify %+v, gopacket dst %v src %v type %v", i, c, eth.DstMAC, eth.SrcMAC, eth.EthernetType)
		}
		ours := make([]byte, HeaderLen)
		_ = Header{VNI: vni}.Encode(ours)
		if !bytes.Equal(ours, payload[:HeaderLen]) {
			t.Errorf("packet %d: our header % x, kernel's % x", i, ours, payload[:HeaderLen])
		}
	}
}

func TestClassify(t *testing.T) {
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	src := []byte{0x02, 0, 0, 0, 0, 1}
	tests := []struct {
		name   string
		frame  []byte
		ok     bool
		reason DropReason
		et     uint16
		l2     int
	}{
		{"short", make([]byte, 13), false, dropShort, 0, 0},
		{"ipv4", cat(bcast, src, []byte{0x08, 0x00}), true, 0, 0x0800, 14},
		{"vlan", cat(bcast, src, []byte{0x81, 0x00, 0, 5, 0x86, 0xdd}), true, 0, 0x86dd, 18},
		{"qinq", cat(bcast, src, []byte{0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 6, 0x08, 0x06}), true, 0, 0x0806, 22},
		{"truncated tag", cat(bcast, src, []byte{0x81, 0x00, 0, 5}), true, 0, 0x8100, 14},
		{"multicast source", cat(src, bcast, []byte{0x08, 0x00}), false, dropBadSource, 0, 0},
		{"zero source", cat(bcast, make([]byte, 6), []byte{0x08, 0x00}), false, dropBadSource, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c frameClass
			reason, ok := classify(tt.frame, &c)
			if ok != tt.ok || reason != tt.reason || (ok && (c.EtherType != tt.et || c.L2Len != tt.l2)) {
				t.Errorf("classify = %v %v %+v; want %v %v type %#x l2 %d", reason, ok, c, tt.reason, tt.ok, tt.et, tt.l2)
			}
		})
	}
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestDecapDrops(t *testing.T) {
	frame := cat([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 0})
	tests := []struct {
		name   string
		in     []byte
		reason DropReason
	}{
		{"empty", nil, dropShort},
		{"header only", []byte{8, 0, 0, 0, 0, 0, 42, 0}, dropShort},
		{"header and 13 bytes", cat([]byte{8, 0, 0, 0, 0, 0, 42, 0}, frame[:13]), dropShort},
		{"I flag clear", cat([]byte{0, 0, 0, 0, 0, 0, 42, 0}, frame), dropBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, reason, ok := decap(tt.in); ok || reason != tt.reason {
				t.Errorf("decap = %v %v, want drop %v", reason, ok, tt.reason)
			}
		})
	}
}

func TestHotPathAllocs(t *testing.T) {
	payloads := kernelPayloads(t)
	buf := make([]byte, 2048)
	if n := testing.AllocsPerRun(1000, func() {
		_ = Header{VNI: 42}.Encode(buf)
	}); n != 0 {
		t.Errorf("Encode allocs = %v", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		for _, p := range payloads {
			_, inner, _, _ := decap(p)
			var c frameClass
			classify(inner, &c)
		}
	}); n != 0 {
		t.Errorf("decap+classify allocs = %v", n)
	}
}

func BenchmarkEncap(b *testing.B) {
	buf := make([]byte, 1514+HeaderLen)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		var c frameClass
		classify(buf[HeaderLen:], &c)
		_ = Header{VNI: 42}.Encode(buf)
	}
}

func BenchmarkDecap(b *testing.B) {
	p := kernelPayloads(b)[15] // the 1400-byte echo
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		_, inner, _, _ := decap(p)
		var c frameClass
		classify(inner, &c)
	}
}

func TestOverheadFor(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want int
	}{
		{"192.0.2.1", 50},
		{"::ffff:192.0.2.1", 50},
		{"2001:db8::1", 70},
		{"fe80::1%eth0", 70},
	} {
		if got := OverheadFor(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("OverheadFor(%s) = %d, want %d", tc.addr, got, tc.want)
		}
	}
}
