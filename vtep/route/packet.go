package route

// This file holds the parsing of an IP packet in an Ethernet frame and the
// header rewrite of one routed hop.
//
// Design notes: a routed frame is changed in four places only: the two MACs
// and the TTL (IPv4, with the header checksum) or hop limit (IPv6). The TCP
// and UDP checksums cover neither (their pseudo-headers hold addresses,
// never the TTL), so a TAP super-frame whose L4 checksum is left to the
// kernel or the segmenter (virtio-net NEEDS_CSUM) is rewritten once, before
// it is segmented, and every segment inherits the new TTL.

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers and header lengths.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	ipv4HeaderLen = 20 // without options
	ipv6HeaderLen = 40
	protoICMP     = 1
	protoICMPv6   = 58
)

// Packet is what Parse reads of the IP packet in a frame.
type Packet struct {
	V6       bool
	L3       int // offset of the IP header in the frame: the Ethernet header's length
	HdrLen   int // of the IP header: IHL*4 (IPv4), 40 (IPv6; extension headers are payload here)
	Len      int // of the IP packet as its header says: total length (IPv4), 40 + payload length (IPv6)
	Src, Dst netip.Addr
	TTL      uint8 // or hop limit
	Proto    uint8 // protocol (IPv4), next header (IPv6)
	DF       bool  // IPv4 Don't Fragment
	FragOff  int   // IPv4 fragment offset in 8-byte units; 0 for IPv6
}

// Parse reads the IPv4 or IPv6 header behind the l2Len-byte Ethernet header
// of frame, whose EtherType (after any VLAN tags) is etherType. It reports
// false for another EtherType, a header that does not fit, or a wrong
// version. The frame may be shorter than the packet's length says (a frame
// truncated by a read buffer sized for the MTU): the header is what counts.
// It does not allocate.
func Parse(frame []byte, l2Len int, etherType uint16, p *Packet) bool {
	if l2Len < 0 || l2Len > len(frame) {
		return false
	}
	l3 := frame[l2Len:]
	switch etherType {
	case etherTypeIPv4:
		if len(l3) < ipv4HeaderLen || l3[0]>>4 != 4 {
			return false
		}
		ihl := int(l3[0]&0x0f) * 4
		if ihl < ipv4HeaderLen || len(l3) < ihl {
			return false
		}
		frag := binary.BigEndian.Uint16(l3[6:8])
		*p = Packet{
			L3: l2Len, HdrLen: ihl, Len: int(binary.BigEndian.Uint16(l3[2:4])),
			Src: netip.AddrFrom4([4]byte(l3[12:16])), Dst: netip.AddrFrom4([4]byte(l3[16:20])),
			TTL: l3[8], Proto: l3[9], DF: frag&0x4000 != 0, FragOff: int(frag & 0x1fff),
		}
		return p.Len >= ihl
	case etherTypeIPv6:
		if len(l3) < ipv6HeaderLen || l3[0]>>4 != 6 {
			return false
		}
		*p = Packet{
			V6: true, L3: l2Len, HdrLen: ipv6HeaderLen, Len: ipv6HeaderLen + int(binary.BigEndian.Uint16(l3[4:6])),
			Src: netip.AddrFrom16([16]byte(l3[8:24])), Dst: netip.AddrFrom16([16]byte(l3[24:40])),
			TTL: l3[7], Proto: l3[6],
		}
		return true
	}
	return false
}

// Forward rewrites frame, whose packet Parse read into p, for one routed
// hop: the TTL or hop limit one less (and the IPv4 header checksum updated
// to match, RFC 1624), the destination MAC dstMAC and the source MAC
// routerMAC. It reports false and changes nothing when the TTL is 1 or 0:
// the packet dies here, and the caller sends time exceeded (BuildError). It
// does not allocate.
func Forward(frame []byte, p *Packet, routerMAC, dstMAC [6]byte) bool {
	if p.TTL <= 1 {
		return false
	}
	l3 := frame[p.L3:]
	if p.V6 {
		l3[7]--
	} else {
		// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m the 16-bit word
		// holding the TTL (high byte) and the protocol.
		old := binary.BigEndian.Uint16(l3[8:10])
		l3[8]--
		binary.BigEndian.PutUint16(l3[10:12], csumUpdate(binary.BigEndian.Uint16(l3[10:12]), old, old-0x0100))
	}
	p.TTL--
	copy(frame[0:6], dstMAC[:])
	copy(frame[6:12], routerMAC[:])
	return true
}

// csumUpdate returns checksum field hc after the 16-bit word it covers
// changed from old to new (RFC 1624 eqn. 3), in one's-complement arithmetic
// that never yields the +0 that eqn. 2 can (RFC 1624 section 3).
func csumUpdate(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}
