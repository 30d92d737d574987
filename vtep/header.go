// Package vtep is the ovlsw data plane: the VXLAN header (RFC 7348), the
// batched UDP endpoint, and the switch that moves Ethernet frames between
// TAP ports and remote VTEPs. Nothing here knows about gossip.
package vtep

import (
	"errors"
	"io"
	"net/netip"

	"github.com/ovlsw/ovlsw/fdb"
)

// HeaderLen is the length of the VXLAN header in bytes.
const HeaderLen = 8

// Overhead is what VXLAN over IPv4 adds to an inner frame's IP packet:
// outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) = 50 bytes,
// so the inner MTU is the underlay MTU minus 50.
const Overhead = 50

// Overhead6 is what VXLAN over IPv6 adds: the outer IPv6 header is 40
// bytes, not 20 (RFC 8200 section 3), so outer IPv6 (40) + UDP (8) + VXLAN
// (8) + inner Ethernet (14) = 70 bytes, and the inner MTU is the underlay
// MTU minus 70 (1430 on a 1500 underlay). The UDP checksum is not optional
// over IPv6 (RFC 6935 allows zero only where both ends agree), and the
// kernel computes it for our sockets.
const Overhead6 = 70

// OverheadFor returns the VXLAN overhead over an underlay of addr's family:
// Overhead6 for an IPv6 address, Overhead for an IPv4 or IPv4-mapped one.
func OverheadFor(addr netip.Addr) int {
	if addr.Is6() && !addr.Is4In6() {
		return Overhead6
	}
	return Overhead
}

// DefaultPort is the IANA-assigned VXLAN UDP port.
const DefaultPort = 4789

// flagI is the "VNI valid" flag in the first header byte.
const flagI = 0x08

// ErrNoIFlag is returned by Decode when the I flag is clear: RFC 7348 says
// such a frame's VNI is not valid.
var ErrNoIFlag = errors.New("vxlan: I flag not set")

// Header is a VXLAN header (RFC 7348 section 5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Reserved bits are sent as zero and ignored on receipt.
type Header struct {
	VNI uint32 // at most fdb.MaxVNI (24 bits); higher bits are ignored by Encode
}

// Encode writes h into b[:HeaderLen] with the I flag set.
func (h Header) Encode(b []byte) error {
	if len(b) < HeaderLen {
		return io.ErrShortBuffer
	}
	b[0], b[1], b[2], b[3] = flagI, 0, 0, 0
	vni := h.VNI & fdb.MaxVNI
	b[4] = byte(vni >> 16)
	b[5] = byte(vni >> 8)
	b[6] = byte(vni)
	b[7] = 0
	return nil
}

// Decode reads a header from b; the VNI it reads is at most fdb.MaxVNI. It
// returns io.ErrShortBuffer if b is shorter than HeaderLen and ErrNoIFlag if
// the I flag is clear.
func (h *Header) Decode(b []byte) error {
	if len(b) < HeaderLen {
		return io.ErrShortBuffer
	}
	if b[0]&flagI == 0 {
		return ErrNoIFlag
	}
	h.VNI = uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	return nil
}
