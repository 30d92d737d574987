package route

// This file holds the ICMP (RFC 792) and ICMPv6 (RFC 4443) errors the
// gateway sends back to a port: time exceeded, destination unreachable, and
// fragmentation needed (RFC 1191) or packet too big, which carry the MTU
// path MTU discovery learns from.
//
// Design notes:
//   - The error is built in place, over the frame it is about: the quoted
//     bytes are moved back behind the new headers (a memmove) and the headers
//     written in front. The read buffer is large enough for the MTU, so the
//     quote is cut to what fits behind the headers as well as to the RFCs'
//     bounds: an IPv4 error at most 576 bytes long (RFC 1812 4.3.2.3: "as
//     much of the original datagram as possible without the length of the
//     ICMP datagram exceeding 576 bytes"), an IPv6 one at most the IPv6
//     minimum MTU, 1280 (RFC 4443 2.4(c)).
//   - The quote is the packet as it arrived (the TTL not yet decremented) up
//     to its own length (Ethernet padding is not quoted), or what the frame
//     holds of it when a read buffer cut it short.
//   - No error about an error, a non-first fragment, or a packet to or from
//     an address that does not name one host (RFC 1812 4.3.2.7, RFC 4443
//     2.4(e)); MayError says so.

import (
	"encoding/binary"
	"net/netip"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

// Kind is an ICMP error the gateway sends.
type Kind uint8

// ICMP error kinds.
const (
	// TimeExceeded: the TTL or hop limit ran out here (ICMP 11/0, ICMPv6
	// 3/0). traceroute shows the gateway's hop by it.
	TimeExceeded Kind = iota + 1
	// HostUnreachable: the address is in one of the network's subnets but
	// no endpoint holds it (ICMP 3/1, ICMPv6 1/3 address unreachable).
	HostUnreachable
	// NetUnreachable: the address is in none of the network's subnets
	// (ICMP 3/0, ICMPv6 1/0 no route to destination).
	NetUnreachable
	// TooBig: the packet is larger than the MTU and may not be fragmented
	// (ICMP 3/4 fragmentation needed with the next-hop MTU, RFC 1191;
	// ICMPv6 2/0 packet too big).
	TooBig
)

// String names the kind as counters and tests print it.
func (k Kind) String() string {
	switch k {
	case TimeExceeded:
		return "time_exceeded"
	case HostUnreachable:
		return "host_unreachable"
	case NetUnreachable:
		return "net_unreachable"
	case TooBig:
		return "too_big"
	}
	return "unknown"
}

// Error bounds and header lengths.
const (
	icmpHeaderLen  = 8    // type, code, checksum, 4 bytes of unused/MTU
	maxErrorIPv4   = 576  // RFC 1812 4.3.2.3: the whole IP datagram
	maxErrorIPv6   = 1280 // RFC 4443 2.4(c): the IPv6 minimum MTU
	errorTTL       = 64   // of the errors sent, as Linux's default
	minQuoteIPv4   = 8    // RFC 792: the IP header and the first 64 bits of its payload
	tosInternetCtl = 0xc0 // precedence internetwork control, as routers send errors (RFC 1812 4.3.2.5)
)

// typeCode returns the ICMP or ICMPv6 type and code of k.
func (k Kind) typeCode(v6 bool) (typ, code uint8) {
	switch {
	case k == TimeExceeded && !v6:
		return 11, 0
	case k == TimeExceeded:
		return 3, 0
	case k == HostUnreachable && !v6:
		return 3, 1
	case k == HostUnreachable:
		return 1, 3
	case k == NetUnreachable && !v6:
		return 3, 0
	case k == NetUnreachable:
		return 1, 0
	case k == TooBig && !v6:
		return 3, 4
	default:
		return 2, 0
	}
}

// MayError reports whether an ICMP error may be sent about the packet in
// frame that Parse read into p: not about an ICMP error, a fragment other
// than the first, a frame to a multicast or broadcast MAC, or a packet whose
// source or destination is not one host's unicast address.
func MayError(frame []byte, p *Packet) bool {
	if len(frame) < 6 || frame[0]&1 != 0 {
		return false
	}
	for _, a := range [2]netip.Addr{p.Src, p.Dst} {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return false
		}
	}
	if p.FragOff != 0 {
		return false
	}
	l4 := p.L3 + p.HdrLen
	switch {
	case !p.V6 && p.Proto == protoICMP:
		if len(frame) <= l4 {
			return false
		}
		switch frame[l4] {
		case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
			return false
		}
	case p.V6 && p.Proto == protoICMPv6:
		if len(frame) <= l4 || frame[l4] < 128 { // types below 128 are errors (RFC 4443 2.1)
			return false
		}
	}
	return true
}

// BuildError turns the frame in b[:n], whose packet Parse read into p, into
// an Ethernet frame carrying the ICMP (IPv4) or ICMPv6 (IPv6) error kind
// about it, in place, and returns the new frame's length. The error goes
// from the address from (the sender's gateway) and routerMAC back to the
// packet's source and its MAC; VLAN tags are kept. mtu is the MTU a TooBig
// error carries. b may be longer than n: the error uses room up to len(b).
// It returns 0, leaving b unchanged, when from is not of the packet's
// family or b has no room for the headers and the quote the RFCs ask for
// (the IP header and 8 bytes of payload for IPv4). It does not allocate.
func BuildError(b []byte, n int, p *Packet, kind Kind, from netip.Addr, routerMAC [6]byte, mtu int) int {
	ipLen, limit, minQuote := ipv4HeaderLen, maxErrorIPv4, p.HdrLen+minQuoteIPv4
	if p.V6 {
		ipLen, limit, minQuote = ipv6HeaderLen, maxErrorIPv6, ipv6HeaderLen
	}
	if from.Is4() == p.V6 || !from.IsValid() || n > len(b) || n < p.L3+p.HdrLen {
		return 0
	}
	hdrs := p.L3 + ipLen + icmpHeaderLen
	quote := min(n, p.L3+p.Len) - p.L3 // what the frame holds of the packet
	quote = min(quote, limit-ipLen-icmpHeaderLen, len(b)-hdrs)
	if quote < min(minQuote, min(n, p.L3+p.Len)-p.L3) {
		return 0
	}
	var srcMAC [6]byte
	copy(srcMAC[:], b[6:12])
	copy(b[hdrs:hdrs+quote], b[p.L3:p.L3+quote])
	copy(b[0:6], srcMAC[:])
	copy(b[6:12], routerMAC[:])

	ip, icmp := b[p.L3:p.L3+ipLen], b[p.L3+ipLen:hdrs+quote]
	typ, code := kind.typeCode(p.V6)
	icmp[0], icmp[1] = typ, code
	clear(icmp[2:8])
	if kind == TooBig {
		if p.V6 {
			binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
		} else {
			binary.BigEndian.PutUint16(icmp[6:8], uint16(min(mtu, 0xffff)))
		}
	}
	if p.V6 {
		binary.BigEndian.PutUint32(ip[0:4], 6<<28)
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
		ip[6], ip[7] = protoICMPv6, errorTTL
		src, dst := from.As16(), p.Src.As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		sum := offload.PseudoHeaderSum6(from, p.Src, uint32(len(icmp)), protoICMPv6)
		binary.BigEndian.PutUint16(icmp[2:4], ^offload.Checksum(icmp, sum))
	} else {
		ip[0], ip[1] = 0x45, tosInternetCtl
		binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen+len(icmp)))
		clear(ip[4:8]) // identification, flags, fragment offset
		ip[8], ip[9] = errorTTL, protoICMP
		clear(ip[10:12])
		src, dst := from.As4(), p.Src.As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		binary.BigEndian.PutUint16(ip[10:12], ^offload.Checksum(ip, 0))
		binary.BigEndian.PutUint16(icmp[2:4], ^offload.Checksum(icmp, 0))
	}
	return hdrs + quote
}
