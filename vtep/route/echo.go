package route

// This file holds the gateway's answer to a ping: an echo reply made of the
// request in place (RFC 792, RFC 4443 4.2).

import "encoding/binary"

// Echo message types.
const (
	echoRequest4 = 8
	echoReply4   = 0
	echoRequest6 = 128
	echoReply6   = 129
)

// EchoReply turns the ICMP or ICMPv6 echo request in frame, whose packet
// Parse read into p, into the echo reply to it, in place: addresses and
// MACs swapped (the source MAC routerMAC), a fresh TTL, the type changed
// and the checksums updated. It reports false, changing nothing, for
// anything but a whole echo request without IPv4 options or IPv6 extension
// headers, or one sent to a multicast or broadcast MAC. It does not
// allocate.
func EchoReply(frame []byte, p *Packet, routerMAC [6]byte) bool {
	l4 := p.L3 + p.HdrLen
	if frame[0]&1 != 0 || p.HdrLen != ipv4HeaderLen && !p.V6 || p.L3+p.Len > len(frame) || p.Len < p.HdrLen+icmpHeaderLen || p.FragOff != 0 {
		return false
	}
	ip := frame[p.L3:l4]
	icmp := frame[l4 : p.L3+p.Len]
	if p.V6 && (p.Proto != protoICMPv6 || icmp[0] != echoRequest6 || icmp[1] != 0) ||
		!p.V6 && (p.Proto != protoICMP || icmp[0] != echoRequest4 || icmp[1] != 0 || binary.BigEndian.Uint16(ip[6:8])&0x2000 != 0) {
		return false
	}
	// Swapping the addresses leaves every sum as it was (the pseudo-header's
	// too); the type byte is the high byte of the first ICMP word.
	old := binary.BigEndian.Uint16(icmp[0:2])
	if p.V6 {
		icmp[0] = echoReply6
		var a [16]byte
		copy(a[:], ip[8:24])
		copy(ip[8:24], ip[24:40])
		copy(ip[24:40], a[:])
		ip[7] = errorTTL
	} else {
		icmp[0] = echoReply4
		var a [4]byte
		copy(a[:], ip[12:16])
		copy(ip[12:16], ip[16:20])
		copy(ip[16:20], a[:])
		oldTTL := binary.BigEndian.Uint16(ip[8:10])
		ip[8] = errorTTL
		binary.BigEndian.PutUint16(ip[10:12], csumUpdate(binary.BigEndian.Uint16(ip[10:12]), oldTTL, binary.BigEndian.Uint16(ip[8:10])))
	}
	binary.BigEndian.PutUint16(icmp[2:4], csumUpdate(binary.BigEndian.Uint16(icmp[2:4]), old, binary.BigEndian.Uint16(icmp[0:2])))
	copy(frame[0:6], frame[6:12])
	copy(frame[6:12], routerMAC[:])
	p.Src, p.Dst = p.Dst, p.Src
	return true
}
