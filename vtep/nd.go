package vtep

// This file holds proxy neighbour discovery, the IPv6 counterpart of
// arp.go: parsing neighbour solicitations and advertisements (RFC 4861) the
// switch learns IPv6 bindings from, and building the advertisements it sends
// in the hosts' stead. Everything reads and writes fixed offsets; nothing
// allocates.
//
// Design notes:
//   - Only ICMPv6 directly after the IPv6 header is accepted. Neighbour
//     discovery messages never carry extension headers in practice, and
//     walking them would bring fragments and unbounded chains onto the hot
//     path; a message we cannot parse is simply forwarded like any frame.
//   - Validation follows RFC 4861 sections 7.1.1 and 7.1.2 (hop limit 255,
//     valid checksum, code 0, length, no multicast target, no zero-length
//     option) so that what the switch learns is what a host would accept.
//     Link-layer address options must be 8 bytes (one unit), as Linux's
//     ndisc requires for Ethernet; the first of each kind counts.
//   - Our advertisements set Solicited=1 and Override=1 with the Router flag
//     given by the caller, as the Linux bridge's neigh_suppress does
//     (br_nd_send). RFC 4861 section 7.2.8 asks a proxy to clear Override so
//     that the owner's own answer wins, but the switch is not a proxy for
//     someone else's address in that sense: it answers only from bindings it
//     learned from the owner, with the owner's MAC, like EVPN ARP/ND
//     suppression. Override=1 lets the answer correct a stale cache entry
//     after a host moved. The Router flag must be the owner's, as learned from
//     its own advertisements: an NA with R=0 for a router's address makes
//     hosts drop it from their default router list (RFC 4861 section 7.2.5).

import (
	"encoding/binary"
	"net/netip"

	"github.com/ovlsw/ovlsw/fdb"
)

// Neighbour discovery constants.
const (
	// naLen is the length of the untagged neighbour advertisement frames
	// buildNA and buildUnsolicitedNA write: Ethernet header (14), IPv6 header
	// (40), ICMPv6 header, flags and target (24), Target Link-Layer Address
	// option (8). A reply to a tagged solicitation is 4 bytes longer per tag.
	naLen = ethHeaderLen + ndIPv6Len + ndMsgLen + ndLLAOptLen

	ndEtherType    = 0x86dd
	ndIPv6Len      = 40 // the fixed IPv6 header
	ndProtoICMPv6  = 58
	ndHopLimit     = 255 // RFC 4861: a node that receives less knows the message crossed a router
	ndMsgLen       = 24  // type, code, checksum, flags/reserved (4+4), target address (16)
	ndLLAOptLen    = 8   // type, length, 6-byte MAC: one 8-byte unit
	ndTypeNS       = 135
	ndTypeNA       = 136
	ndOptSLLA      = 1
	ndOptTLLA      = 2
	ndFlagRouter   = 0x80
	ndFlagSolicit  = 0x40
	ndFlagOverride = 0x20
)

// neighborSolicitation is an IPv6 neighbour solicitation (ICMPv6 type 135)
// as parseNS returns it.
type neighborSolicitation struct {
	// SrcMAC is the Ethernet source address of the frame. Replies go to it.
	SrcMAC fdb.MAC
	// Src is the IPv6 source address, :: for duplicate address detection.
	Src netip.Addr
	// Target is the address being asked about.
	Target netip.Addr
	// SourceLLA is the Source Link-Layer Address option, valid when
	// HasSourceLLA. It is the MAC to learn for Src (RFC 4861 section 7.2.3);
	// it is normally SrcMAC.
	SourceLLA    fdb.MAC
	HasSourceLLA bool
	// DAD reports Src == ::, a duplicate address detection probe (RFC 4862
	// section 5.4.2). The sender has no address yet, so nothing may be
	// learned from it and the switch never answers it: buildNA refuses.
	DAD bool
}

// neighborAdvertisement is an IPv6 neighbour advertisement (ICMPv6 type
// 136) as parseNA returns it.
type neighborAdvertisement struct {
	// SrcMAC is the Ethernet source address of the frame.
	SrcMAC fdb.MAC
	// Src and Dst are the IPv6 source and destination addresses.
	Src, Dst netip.Addr
	// Target is the address advertised.
	Target netip.Addr
	// TargetLLA is the Target Link-Layer Address option, valid when
	// HasTargetLLA: the MAC Target is at. An advertisement without it
	// (allowed when answering a unicast solicitation) teaches no binding.
	TargetLLA    fdb.MAC
	HasTargetLLA bool
	// Router, Solicited and Override are the advertisement's R, S and O
	// flags. The switch should remember Router with the binding and pass
	// it to buildNA. Override=0 means the advertisement must not replace a
	// different binding already known (RFC 4861 section 7.2.5).
	Router, Solicited, Override bool
}

// parseNS parses the neighbour solicitation in frame, whose Ethernet
// header classify described in c (c.EtherType must be 0x86dd; the IPv6
// header starts at c.L2Len). It checks what RFC 4861 section 7.1.1 asks:
// next header 58 directly (no extension headers), hop limit 255, ICMPv6
// type 135 code 0, at least 24 bytes, a valid ICMPv6 checksum, a target that
// is not multicast, and options that are neither zero-length nor truncated.
// It also rejects an unspecified or loopback target, a multicast or
// loopback source address, a Source Link-Layer Address option that is not 8
// bytes or holds a multicast or zero MAC, and a DAD probe (source ::) that
// carries that option or is not sent to a solicited-node multicast address.
// Bytes beyond the IPv6 payload length (Ethernet padding) are ignored.
//
// parseNS does not allocate and does not modify frame.
func parseNS(frame []byte, c *frameClass) (ns neighborSolicitation, ok bool) {
	ip, icmp, ok := ndMessage(frame, c, ndTypeNS)
	if !ok {
		return neighborSolicitation{}, false
	}
	ns.Src = netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	ns.Target = netip.AddrFrom16([16]byte(icmp[8:24]))
	ns.SourceLLA, ns.HasSourceLLA, ok = ndLLAOption(icmp[ndMsgLen:], ndOptSLLA)
	if !ok || badNDTarget(ns.Target) || ns.Src.IsMulticast() || ns.Src.IsLoopback() {
		return neighborSolicitation{}, false
	}
	ns.DAD = ns.Src.IsUnspecified()
	if ns.DAD && (ns.HasSourceLLA || !isSolicitedNode(dst)) {
		return neighborSolicitation{}, false
	}
	copy(ns.SrcMAC[:], frame[6:12])
	return ns, true
}

// parseNA parses the neighbour advertisement in frame, classified as for
// parseNS. It checks what RFC 4861 section 7.1.2 asks: next header 58
// directly, hop limit 255, ICMPv6 type 136 code 0, at least 24 bytes, a
// valid ICMPv6 checksum, a target that is not multicast, Solicited clear
// when sent to a multicast address, and options that are neither
// zero-length nor truncated. It also rejects an unspecified or loopback
// target, a multicast, unspecified or loopback source address and a Target
// Link-Layer Address option that is not 8 bytes or holds a multicast or zero
// MAC.
//
// parseNA does not allocate and does not modify frame.
func parseNA(frame []byte, c *frameClass) (na neighborAdvertisement, ok bool) {
	ip, icmp, ok := ndMessage(frame, c, ndTypeNA)
	if !ok {
		return neighborAdvertisement{}, false
	}
	na.Src = netip.AddrFrom16([16]byte(ip[8:24]))
	na.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
	na.Target = netip.AddrFrom16([16]byte(icmp[8:24]))
	flags := icmp[4]
	na.Router = flags&ndFlagRouter != 0
	na.Solicited = flags&ndFlagSolicit != 0
	na.Override = flags&ndFlagOverride != 0
	na.TargetLLA, na.HasTargetLLA, ok = ndLLAOption(icmp[ndMsgLen:], ndOptTLLA)
	if !ok || badNDTarget(na.Target) || na.Src.IsMulticast() || na.Src.IsUnspecified() || na.Src.IsLoopback() ||
		(na.Solicited && na.Dst.IsMulticast()) {
		return neighborAdvertisement{}, false
	}
	copy(na.SrcMAC[:], frame[6:12])
	return na, true
}

// badNDTarget reports a target address no neighbour can own: multicast
// (RFC 4861 forbids it), unspecified or loopback.
func badNDTarget(a netip.Addr) bool {
	return a.IsMulticast() || a.IsUnspecified() || a.IsLoopback()
}

// ndMessage checks the IPv6 and ICMPv6 headers common to neighbour
// solicitations and advertisements and returns the IPv6 header and the
// ICMPv6 message, cut to the IPv6 payload length.
func ndMessage(frame []byte, c *frameClass, typ byte) (ip, icmp []byte, ok bool) {
	if c.EtherType != ndEtherType || c.L2Len < ethHeaderLen || c.L2Len > len(frame) {
		return nil, nil, false
	}
	ip = frame[c.L2Len:]
	if len(ip) < ndIPv6Len+ndMsgLen || ip[0]>>4 != 6 || ip[6] != ndProtoICMPv6 || ip[7] != ndHopLimit {
		return nil, nil, false
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < ndMsgLen || plen > len(ip)-ndIPv6Len {
		return nil, nil, false
	}
	icmp = ip[ndIPv6Len : ndIPv6Len+plen]
	if icmp[0] != typ || icmp[1] != 0 {
		return nil, nil, false
	}
	// Pseudo-header: addresses (ip[8:40]), length, next header.
	sum := checksum(ip[8:40], uint64(plen)+ndProtoICMPv6)
	if checksum(icmp, uint64(sum)) != 0xffff {
		return nil, nil, false
	}
	return ip[:ndIPv6Len], icmp, true
}

// ndLLAOption walks the options of a neighbour discovery message and
// returns the first link-layer address option of type want. ok is false if
// an option is zero-length or truncated, or a want option is not 8 bytes or
// holds a multicast or zero MAC.
func ndLLAOption(opts []byte, want byte) (mac fdb.MAC, found, ok bool) {
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 {
			return fdb.MAC{}, false, false
		}
		n := int(opts[1]) * 8
		if n > len(opts) {
			return fdb.MAC{}, false, false
		}
		if opts[0] == want && !found {
			if n != ndLLAOptLen {
				return fdb.MAC{}, false, false
			}
			copy(mac[:], opts[2:8])
			if mac.IsMulticast() || mac.IsZero() {
				return fdb.MAC{}, false, false
			}
			found = true
		}
		opts = opts[n:]
	}
	return mac, found, true
}

// isSolicitedNode reports whether a is a solicited-node multicast address,
// ff02::1:ffXX:XXXX (RFC 4291 section 2.7.1).
func isSolicitedNode(a netip.Addr) bool {
	b := a.As16()
	return a.Is6() && b[0] == 0xff && b[1] == 0x02 && b[2]|b[3]|b[4]|b[5]|b[6]|b[7]|b[8]|b[9]|b[10] == 0 &&
		b[11] == 1 && b[12] == 0xff
}

// buildNA writes into dst the solicited neighbour advertisement answering
// ns, which parseNS parsed from nsFrame as classified by c, that ns.Target
// is at answerMAC:
//
//	Ethernet dst = ns.SrcMAC, src = answerMAC, the VLAN tags of nsFrame
//	IPv6 src = ns.Target, dst = ns.Src, hop limit 255
//	ICMPv6 136: Solicited=1, Override=1, Router=router, target ns.Target,
//	Target Link-Layer Address option answerMAC, checksum filled in
//
// router must be the Router flag the owner of ns.Target advertises (see the
// design notes at the top of this file for the flags). buildNA returns the
// frame length, c.L2Len+72 (naLen untagged), or 0 with nothing written if
// dst is too short, c does not fit nsFrame, an address in ns is not IPv6, or
// ns.DAD is set: a DAD probe is never answered, since the prober would give
// up its address; the caller should just not forward it where the address is
// unknown. dst may be nsFrame itself (built in place) but must not otherwise
// overlap it. buildNA does not allocate.
func buildNA(dst []byte, ns neighborSolicitation, nsFrame []byte, c *frameClass, answerMAC fdb.MAC, router bool) int {
	l2 := c.L2Len
	if ns.DAD || l2 < ethHeaderLen || l2 > len(nsFrame) || !ns.Src.Is6() || !ns.Target.Is6() {
		return 0
	}
	n := l2 + ndIPv6Len + ndMsgLen + ndLLAOptLen
	if len(dst) < n {
		return 0
	}
	copy(dst[0:6], ns.SrcMAC[:])
	copy(dst[6:12], answerMAC[:])
	copy(dst[12:l2-2], nsFrame[12:l2-2]) // VLAN tags, if any
	flags := byte(ndFlagSolicit | ndFlagOverride)
	if router {
		flags |= ndFlagRouter
	}
	putNA(dst[l2-2:n], ns.Target, ns.Src, flags, answerMAC)
	return n
}

// buildUnsolicitedNA writes into dst an untagged unsolicited neighbour
// advertisement (RFC 4861 section 7.2.6) that ip is at mac, sent from ip to
// the all-nodes address ff02::1 (Ethernet 33:33:00:00:00:01) with
// Solicited=0, Override=1, Router=router and a Target Link-Layer Address
// option; hosts that have ip in their cache update it to mac. The switch
// sends it when a binding moves. It returns naLen, or 0 with nothing written
// if dst is shorter or ip is not a unicast IPv6 address. It does not
// allocate.
func buildUnsolicitedNA(dst []byte, mac fdb.MAC, ip netip.Addr, router bool) int {
	if !ip.Is6() || ip.IsUnspecified() || ip.IsMulticast() || len(dst) < naLen {
		return 0
	}
	copy(dst[0:6], allNodesMAC[:])
	copy(dst[6:12], mac[:])
	flags := byte(ndFlagOverride)
	if router {
		flags |= ndFlagRouter
	}
	putNA(dst[12:naLen], ip, allNodes, flags, mac)
	return naLen
}

// allNodes is ff02::1, the link-local all-nodes multicast address, and
// allNodesMAC the Ethernet group it maps to (RFC 2464: 33:33 and the low 32
// bits of the address).
var (
	allNodes    = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 1})
	allNodesMAC = fdb.MAC{0x33, 0x33, 0, 0, 0, 1}
)

// putNA writes into b, which must be exactly 2+40+32 bytes, an EtherType,
// an IPv6 header from target to dst and a neighbour advertisement for target
// with the given flags and Target Link-Layer Address option tlla, and fills
// in the ICMPv6 checksum.
func putNA(b []byte, target, dst netip.Addr, flags byte, tlla fdb.MAC) {
	_ = b[2+ndIPv6Len+ndMsgLen+ndLLAOptLen-1]
	binary.BigEndian.PutUint16(b[0:2], ndEtherType)
	ip := b[2 : 2+ndIPv6Len]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28) // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip[4:6], ndMsgLen+ndLLAOptLen)
	ip[6], ip[7] = ndProtoICMPv6, ndHopLimit
	s16, d16 := target.As16(), dst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	icmp := b[2+ndIPv6Len:]
	icmp[0], icmp[1], icmp[2], icmp[3] = ndTypeNA, 0, 0, 0
	icmp[4], icmp[5], icmp[6], icmp[7] = flags, 0, 0, 0
	copy(icmp[8:24], s16[:])
	icmp[24], icmp[25] = ndOptTLLA, 1
	copy(icmp[26:32], tlla[:])
	sum := checksum(ip[8:40], uint64(len(icmp))+ndProtoICMPv6)
	binary.BigEndian.PutUint16(icmp[2:4], ^checksum(icmp, uint64(sum)))
}
