package vtep

import (
	"errors"

	"github.com/ovlsw/ovlsw/fdb"
)

// Ethernet framing constants.
const (
	ethHeaderLen  = 14 // destination MAC, source MAC, EtherType
	vlanTagLen    = 4  // an 802.1Q tag between source MAC and EtherType
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
)

// frameClass is what the switch needs to know about an Ethernet frame to
// forward it. classify fills it by reading fixed offsets; nothing is
// allocated.
type frameClass struct {
	Dst, Src  fdb.MAC
	EtherType uint16 // after any VLAN tags
	L2Len     int    // Ethernet header length including VLAN tags
}

// classify reads the Ethernet header of frame. It returns dropShort for a
// frame too short to hold one and dropBadSource for a multicast or zero
// source MAC, which no station may send; ok is false then.
func classify(frame []byte, c *frameClass) (reason DropReason, ok bool) {
	if len(frame) < ethHeaderLen {
		return dropShort, false
	}
	copy(c.Dst[:], frame[0:6])
	copy(c.Src[:], frame[6:12])
	if c.Src.IsMulticast() || c.Src.IsZero() {
		return dropBadSource, false
	}
	off := 12
	et := uint16(frame[off])<<8 | uint16(frame[off+1])
	for (et == etherTypeVLAN || et == etherTypeQinQ) && len(frame) >= off+vlanTagLen+2 {
		off += vlanTagLen
		et = uint16(frame[off])<<8 | uint16(frame[off+1])
	}
	c.EtherType = et
	c.L2Len = off + 2
	return 0, true
}

// maxFrameLen is the largest Ethernet frame a port with the given MTU
// carries: the MTU plus the Ethernet header plus one VLAN tag.
func maxFrameLen(mtu int) int { return mtu + ethHeaderLen + vlanTagLen }

// fitsMTU reports whether frame fits a port's MTU. An untagged frame may be
// MTU+14 bytes; a tagged one 4 more.
func fitsMTU(frame []byte, c *frameClass, mtu int) bool {
	return len(frame)-c.L2Len <= mtu
}

// decap checks a VXLAN datagram and returns its VNI and inner frame. On
// failure it returns the reason to count: dropShort, dropBadHeader.
func decap(b []byte) (vni uint32, inner []byte, reason DropReason, ok bool) {
	if len(b) < HeaderLen+ethHeaderLen {
		return 0, nil, dropShort, false
	}
	var h Header
	if err := h.Decode(b); err != nil {
		if errors.Is(err, ErrNoIFlag) {
			return 0, nil, dropBadHeader, false
		}
		return 0, nil, dropShort, false
	}
	return h.VNI, b[HeaderLen:], 0, true
}
