package vtep

// This file holds proxy ARP: parsing ARP packets the switch learns IPv4
// bindings from, and building the replies and announcements it sends in the
// hosts' stead. Everything reads and writes fixed offsets; nothing allocates.
//
// Design notes: the switch answers an ARP request itself when it knows the
// target's MAC, as Linux bridge neigh_suppress and EVPN ARP suppression do,
// so broadcasts do not cross the overlay. The reply copies the request's
// VLAN tags, so a tagged request gets a reply on the same VLAN. Replies go to
// the ARP sender hardware address, as the Linux kernel's do.

import (
	"encoding/binary"
	"net/netip"

	"github.com/ovlsw/ovlsw/fdb"
)

// ARP constants (RFC 826) for IPv4 over Ethernet.
const (
	// arpOpRequest and arpOpReply are the ARP opcodes parseARP accepts.
	arpOpRequest = 1
	arpOpReply   = 2

	// arpLen is the length of an ARP packet for IPv4 over Ethernet:
	// htype, ptype (2+2), hlen, plen (1+1), op (2), sender MAC and IP (6+4),
	// target MAC and IP (6+4).
	arpLen = 28

	// ethMinFrameLen is the shortest Ethernet frame without its FCS: the
	// 64-byte minimum less the 4-byte FCS. Frames the switch builds are
	// padded with zeros to this length.
	ethMinFrameLen = 60

	arpEtherType  = 0x0806
	arpHTypeEther = 1      // hardware type Ethernet
	arpPTypeIPv4  = 0x0800 // protocol type IPv4
)

// arpRequest is an ARP packet for IPv4 over Ethernet as parseARP returns it.
// Despite its name it describes replies as well; parseARP returns the opcode
// beside it.
type arpRequest struct {
	// SenderMAC and SenderIP are the ARP sender hardware and protocol
	// addresses: the binding the packet announces, unless Probe is set.
	SenderMAC fdb.MAC
	SenderIP  netip.Addr
	// TargetIP is the address asked about (requests) or the requester's
	// address (replies). It is 0.0.0.0 in a reply to a probe.
	TargetIP netip.Addr
	// Gratuitous reports SenderIP == TargetIP with SenderIP set: an
	// announcement (RFC 5227 section 2.3) or a gratuitous reply. It is not a
	// question, so the switch learns from it and never answers it.
	Gratuitous bool
	// Probe reports SenderIP 0.0.0.0: an RFC 5227 address probe. The sender
	// has no address yet, so the switch must not learn a binding from it.
	// A probe may be answered (the Linux kernel answers probes for its own
	// addresses; the reply's target IP is 0.0.0.0), but a proxy should do so
	// only when the target belongs to a different MAC than SenderMAC, since
	// any reply makes the prober give up its address.
	Probe bool
}

// parseARP parses the ARP packet in frame, whose Ethernet header classify
// described in c: c.EtherType must be 0x0806 and the ARP packet starts at
// c.L2Len, after any VLAN tags. It accepts only IPv4 over Ethernet (htype 1,
// ptype 0x0800, hlen 6, plen 4) and opcodes arpOpRequest and arpOpReply,
// which it returns as op. Bytes after the 28-byte ARP packet (Ethernet
// padding) are ignored.
//
// To keep bogus bindings out of the FDB it also rejects a multicast or zero
// sender MAC (no station has one) and a sender or target IP that is
// multicast, loopback or the limited broadcast address.
//
// parseARP does not allocate and does not modify frame.
func parseARP(frame []byte, c *frameClass) (req arpRequest, op uint16, ok bool) {
	if c.EtherType != arpEtherType || c.L2Len < ethHeaderLen || c.L2Len > len(frame) {
		return arpRequest{}, 0, false
	}
	a := frame[c.L2Len:]
	if len(a) < arpLen {
		return arpRequest{}, 0, false
	}
	if binary.BigEndian.Uint16(a[0:2]) != arpHTypeEther || binary.BigEndian.Uint16(a[2:4]) != arpPTypeIPv4 ||
		a[4] != 6 || a[5] != 4 {
		return arpRequest{}, 0, false
	}
	op = binary.BigEndian.Uint16(a[6:8])
	if op != arpOpRequest && op != arpOpReply {
		return arpRequest{}, 0, false
	}
	copy(req.SenderMAC[:], a[8:14])
	if req.SenderMAC.IsMulticast() || req.SenderMAC.IsZero() {
		return arpRequest{}, 0, false
	}
	req.SenderIP = netip.AddrFrom4([4]byte(a[14:18]))
	req.TargetIP = netip.AddrFrom4([4]byte(a[24:28]))
	if badARPAddr(req.SenderIP) || badARPAddr(req.TargetIP) {
		return arpRequest{}, 0, false
	}
	req.Probe = req.SenderIP.IsUnspecified()
	req.Gratuitous = !req.Probe && req.SenderIP == req.TargetIP
	return req, op, true
}

// badARPAddr reports an address no host may claim or ask about in ARP.
func badARPAddr(ip netip.Addr) bool {
	return ip.IsMulticast() || ip.IsLoopback() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// buildARPReply writes into dst the reply to the ARP request req, which
// parseARP parsed from reqFrame as classified by c, answering that
// req.TargetIP is at answerMAC:
//
//	Ethernet dst = req.SenderMAC, src = answerMAC, the VLAN tags of reqFrame
//	ARP op 2, sender = answerMAC / req.TargetIP, target = req.SenderMAC / req.SenderIP
//
// The frame is zero-padded to ethMinFrameLen. buildARPReply returns its
// length, max(c.L2Len+arpLen, ethMinFrameLen), or 0 with nothing written if
// dst is too short, c does not fit reqFrame, or an address in req is not
// IPv4. dst may be reqFrame itself (the reply is then built in place) but
// must not otherwise overlap it.
//
// Deciding whether to answer is the caller's: the switch should answer only
// requests (op 1) that are not Gratuitous, and Probes only as described at
// arpRequest.Probe. buildARPReply does not allocate.
func buildARPReply(dst []byte, req arpRequest, reqFrame []byte, c *frameClass, answerMAC fdb.MAC) int {
	l2 := c.L2Len
	if l2 < ethHeaderLen || l2 > len(reqFrame) || !req.SenderIP.Is4() || !req.TargetIP.Is4() {
		return 0
	}
	n := max(l2+arpLen, ethMinFrameLen)
	if len(dst) < n {
		return 0
	}
	copy(dst[0:6], req.SenderMAC[:])
	copy(dst[6:12], answerMAC[:])
	copy(dst[12:l2-2], reqFrame[12:l2-2]) // VLAN tags, if any
	binary.BigEndian.PutUint16(dst[l2-2:l2], arpEtherType)
	putARP(dst[l2:l2+arpLen], arpOpReply, answerMAC, req.TargetIP, req.SenderMAC, req.SenderIP)
	clear(dst[l2+arpLen : n])
	return n
}

// buildGratuitousARP writes into dst an untagged broadcast ARP announcement
// (RFC 5227 section 2.3) that ip is at mac: an ARP request with sender and
// target IP both ip, sender MAC mac and target MAC zero, zero-padded to
// ethMinFrameLen. Hosts that have ip in their cache update it to mac; the
// switch sends it when a binding moves. It returns ethMinFrameLen, or 0
// with nothing written if dst is shorter or ip is not IPv4 (an IPv4-mapped
// IPv6 address is unmapped). It does not allocate.
func buildGratuitousARP(dst []byte, mac fdb.MAC, ip netip.Addr) int {
	ip = ip.Unmap()
	if !ip.Is4() || len(dst) < ethMinFrameLen {
		return 0
	}
	copy(dst[0:6], fdb.Broadcast[:])
	copy(dst[6:12], mac[:])
	binary.BigEndian.PutUint16(dst[12:14], arpEtherType)
	putARP(dst[ethHeaderLen:ethHeaderLen+arpLen], arpOpRequest, mac, ip, fdb.MAC{}, ip)
	clear(dst[ethHeaderLen+arpLen : ethMinFrameLen])
	return ethMinFrameLen
}

// putARP writes a 28-byte IPv4-over-Ethernet ARP packet into a. The
// addresses must be IPv4.
func putARP(a []byte, op uint16, sha fdb.MAC, spa netip.Addr, tha fdb.MAC, tpa netip.Addr) {
	_ = a[arpLen-1]
	binary.BigEndian.PutUint16(a[0:2], arpHTypeEther)
	binary.BigEndian.PutUint16(a[2:4], arpPTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha[:])
	s4 := spa.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], tha[:])
	t4 := tpa.As4()
	copy(a[24:28], t4[:])
}
