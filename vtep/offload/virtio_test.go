package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func TestVirtioNetHdr(t *testing.T) {
	tests := []struct {
		name string
		h    VirtioNetHdr
	}{
		{"zero", VirtioNetHdr{}},
		{"needs csum TCPv4", VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}},
		{"TCPv6 ECN", VirtioNetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16}},
		{"data valid", VirtioNetHdr{Flags: FlagDataValid}},
		{"all ones", VirtioNetHdr{0xff, 0xff, 0xffff, 0xffff, 0xffff, 0xffff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, VirtioNetHdrLen+2)
			b[VirtioNetHdrLen], b[VirtioNetHdrLen+1] = 0xaa, 0xbb
			tt.h.Encode(b)
			if b[VirtioNetHdrLen] != 0xaa || b[VirtioNetHdrLen+1] != 0xbb {
				t.Errorf("Encode wrote past %d bytes: % x", VirtioNetHdrLen, b)
			}
			// Host byte order, field by field, as struct virtio_net_hdr lays it out.
			want := make([]byte, VirtioNetHdrLen)
			want[0], want[1] = tt.h.Flags, tt.h.GSOType
			for i, v := range []uint16{tt.h.HdrLen, tt.h.GSOSize, tt.h.CsumStart, tt.h.CsumOffset} {
				binary.NativeEndian.PutUint16(want[2+2*i:], v)
			}
			if !bytes.Equal(b[:VirtioNetHdrLen], want) {
				t.Errorf("Encode = % x, want % x", b[:VirtioNetHdrLen], want)
			}
			var got VirtioNetHdr
			if err := got.Decode(b); err != nil || got != tt.h {
				t.Errorf("Decode(Encode(h)) = %+v, %v; want %+v", got, err, tt.h)
			}
		})
	}
	for n := 0; n < VirtioNetHdrLen; n++ {
		h := VirtioNetHdr{Flags: 7}
		if err := h.Decode(make([]byte, n)); !errors.Is(err, ErrShort) || h.Flags != 7 {
			t.Errorf("Decode(%d bytes) = %v, h %+v; want ErrShort, h unchanged", n, err, h)
		}
	}
}

func TestCompleteChecksum(t *testing.T) {
	tests := []struct {
		name    string
		p       pkt
		csumOff int
	}{
		{"TCPv4", basePkt(false), 16},
		{"TCPv6", basePkt(true), 16},
		{"TCPv4 VLAN", func() pkt { p := basePkt(false); p.vlan = 7; return p }(), 16},
		{"TCPv4 options", func() pkt { p := basePkt(false); p.opts = tsoOpts(); return p }(), 16},
		{"UDPv4", func() pkt { p := basePkt(false); p.udp = true; return p }(), 6},
		{"UDPv6 VLAN", func() pkt { p := basePkt(true); p.udp = true; p.vlan = 4094; return p }(), 6},
	}
	for _, tt := range tests {
		for _, n := range []int{0, 1, 2, 3, 1001, 1448, 9000} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				p := tt.p
				p.payload = bytes.Repeat([]byte{byte(n), 0x5a, 0xc3}, n)[:n]
				want := p.build(t)
				l3, l4 := p.offsets()
				proto := uint8(protoTCP)
				if p.udp {
					proto = 17
				}
				frame := bytes.Clone(want)
				h := partialize(frame, l3, l4, tt.csumOff, p.v6, proto)
				if err := completeChecksum(frame, &h); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(frame, want) {
					t.Errorf("checksum %#04x, gopacket's %#04x",
						binary.BigEndian.Uint16(frame[l4+tt.csumOff:]), binary.BigEndian.Uint16(want[l4+tt.csumOff:]))
				}
			})
		}
	}
}

func TestCompleteChecksumErrors(t *testing.T) {
	frame := basePkt(false).build(t) // 54 bytes, TCP at 34
	tests := []struct {
		name string
		h    VirtioNetHdr
		err  error
	}{
		{"no flag, bad offsets", VirtioNetHdr{CsumStart: 1000, CsumOffset: 1000}, nil},
		{"data valid only", VirtioNetHdr{Flags: FlagDataValid, CsumStart: 1000}, nil},
		{"start beyond", VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: 60, CsumOffset: 0}, ErrShort},
		{"field beyond", VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: 19}, ErrShort},
		{"field at the end", VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: 18}, nil},
		{"offsets overflow 16 bits", VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: 0xffff, CsumOffset: 0xffff}, ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(frame)
			err := completeChecksum(b, &tt.h)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("completeChecksum = %v, want %v", err, tt.err)
			}
			if err != nil || tt.h.Flags&FlagNeedsCsum == 0 {
				if !bytes.Equal(b, frame) {
					t.Errorf("frame changed")
				}
			}
		})
	}
}

// TestCompleteChecksumZero: a sum that complements to 0 is stored as 0xffff,
// as the kernel does, so a UDP checksum never reads as "none".
func TestCompleteChecksumZero(t *testing.T) {
	// UDP header with checksum field 0, the 4 bytes after it chosen so that
	// everything sums to 0xffff.
	frame := []byte{0x12, 0x34, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
	binary.BigEndian.PutUint16(frame[4:], ^Checksum(frame, 0))
	h := VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: 0, CsumOffset: 6}
	if err := completeChecksum(frame, &h); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(frame[6:]); got != 0xffff {
		t.Errorf("checksum %#04x, want 0xffff", got)
	}
	if Checksum(frame, 0) != 0xffff {
		t.Errorf("frame does not verify")
	}
}

func TestCompleteChecksumAllocs(t *testing.T) {
	p := basePkt(true)
	p.payload = make([]byte, 1400)
	frame := p.build(t)
	_, l4 := p.offsets()
	h := VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: 16}
	var hb [VirtioNetHdrLen]byte
	if n := testing.AllocsPerRun(1000, func() {
		h.Encode(hb[:])
		_ = h.Decode(hb[:])
		_ = completeChecksum(frame, &h)
		_ = completeChecksum(frame[:10], &h) // error path
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}
