package offload

// This file holds the send-path segmentation: a TCP super-frame that a TAP
// with TUN_F_TSO4/6 returns becomes the wire-size frames VXLAN carries,
// written straight into the caller's send buffers.
//
// Design notes: the segments are built as the kernel's tcp_gso_segment and
// inet_gso_segment build them: a copy of the headers per segment, IPv4 total
// length, id (first id + k) and header checksum, IPv6 payload length, TCP
// sequence number advanced by k*gso_size, FIN and PSH kept only on the last
// segment, CWR only on the first, and a full TCP checksum. hdr_len and the
// csum fields of a GSO header are not trusted: the headers are parsed again,
// and every segment gets a complete checksum whatever the flags said.

import (
	"encoding/binary"
)

// Segmenter splits one frame read from a TAP into wire frames. The zero
// value is ready to use; it holds no buffers of its own and allocates
// nothing. A Segmenter belongs to one goroutine.
type Segmenter struct {
	frame  []byte // the frame given to Reset, the caller's; read-only
	count  int    // segments in total
	next   int    // index of the segment Next writes next
	gso    bool   // false: one segment, a copy of frame
	fixCs  bool   // !gso: complete the checksum at csumStart/csumField
	v6     bool   // gso: IPv6, else IPv4
	l3, l4 int    // gso: offsets of the IP and TCP headers in frame
	hdrLen int    // gso: Ethernet, IP and TCP headers
	mss    int    // gso: payload bytes in every segment but the last
	seq    uint32 // gso: sequence number of the first segment
	id     uint16 // gso, IPv4: id of the first segment
	flags  uint8  // gso: TCP flags of the super-frame

	csumStart, csumField int // !gso && fixCs
}

// Reset validates frame against h and prepares to produce its segments;
// frame must stay unchanged until the last Next. A frame with GSOType
// GSONone gives exactly one segment: a copy, its checksum completed if h
// has FlagNeedsCsum (any protocol). A TCPv4 or TCPv6 frame (optionally with
// GSOECN) behind an Ethernet header with at most one 802.1Q tag is split
// into segments of h.GSOSize payload bytes, the last possibly shorter (one
// segment when the payload is no longer than that).
//
// On error the Segmenter produces nothing; the error wraps ErrShort
// (headers or checksum field beyond the frame), ErrMalformed (gso_size 0,
// GSO type not matching the packet, IPv4 fragment, bad IHL or data offset,
// segments longer than IP allows) or ErrUnsupported (UDP GSO types, IPv6
// extension headers, stacked VLAN tags). The caller drops the frame.
func (s *Segmenter) Reset(frame []byte, h *VirtioNetHdr) error {
	*s = Segmenter{}
	if len(frame) < ethHeaderLen {
		return errShortEth
	}
	gsoType := h.GSOType &^ GSOECN
	if gsoType == GSONone {
		if h.GSOType&GSOECN != 0 {
			return errGSOECN
		}
		if h.Flags&FlagNeedsCsum != 0 {
			start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
			if field+2 > len(frame) {
				return errShortCsum
			}
			s.fixCs, s.csumStart, s.csumField = true, start, field
		}
		s.frame, s.count = frame, 1
		return nil
	}
	if gsoType != GSOTCPv4 && gsoType != GSOTCPv6 {
		return errGSOType
	}
	if h.GSOSize == 0 {
		return errGSOSize
	}

	l3 := ethHeaderLen
	etherType := binary.BigEndian.Uint16(frame[12:14])
	if etherType == etherTypeVLAN {
		if len(frame) < vlanHeaderLen {
			return errShortEth
		}
		l3 = vlanHeaderLen
		etherType = binary.BigEndian.Uint16(frame[16:18])
		if etherType == etherTypeVLAN || etherType == etherTypeQinQ {
			return errVLANStack
		}
	} else if etherType == etherTypeQinQ {
		return errVLANStack
	}

	var l4 int
	switch etherType {
	case etherTypeIPv4:
		if gsoType != GSOTCPv4 {
			return errGSOEtherType
		}
		if len(frame) < l3+ipv4MinHeaderLen {
			return errShortIP
		}
		ip := frame[l3:]
		if ip[0]>>4 != 4 {
			return errIPVersion
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < ipv4MinHeaderLen {
			return errIHL
		}
		if len(frame) < l3+ihl {
			return errShortIP
		}
		if binary.BigEndian.Uint16(ip[6:8])&ipv4FragMask != 0 {
			return errFragment
		}
		if ip[9] != protoTCP {
			return errNotTCP
		}
		l4 = l3 + ihl
		s.id = binary.BigEndian.Uint16(ip[4:6])
	case etherTypeIPv6:
		if gsoType != GSOTCPv6 {
			return errGSOEtherType
		}
		if len(frame) < l3+ipv6HeaderLen {
			return errShortIP
		}
		ip := frame[l3:]
		if ip[0]>>4 != 6 {
			return errIPVersion
		}
		if ip[6] != protoTCP {
			return errIPv6Ext
		}
		l4 = l3 + ipv6HeaderLen
		s.v6 = true
	default:
		return errGSOEtherType
	}

	if len(frame) < l4+tcpMinHeaderLen {
		return errShortTCP
	}
	tcp := frame[l4:]
	doff := int(tcp[12]>>4) * 4
	if doff < tcpMinHeaderLen {
		return errTCPOffset
	}
	hdrLen := l4 + doff
	if len(frame) < hdrLen {
		return errShortTCP
	}
	payload := len(frame) - hdrLen
	mss := int(h.GSOSize)
	ipLenFrom := l3 // IPv4 total length counts the IP header
	if s.v6 {
		ipLenFrom = l4 // IPv6 payload length does not
	}
	if hdrLen-ipLenFrom+min(mss, payload) > maxIPLen {
		return errSegmentTooLong
	}

	s.frame = frame
	s.gso = true
	s.l3, s.l4, s.hdrLen, s.mss = l3, l4, hdrLen, mss
	s.count = max(1, (payload+mss-1)/mss)
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.flags = tcp[13]
	return nil
}

// Count returns the number of segments the frame given to Reset makes
// (0 after a failed Reset).
func (s *Segmenter) Count() int { return s.count }

// FullLen returns the length of every segment's frame but possibly the last,
// which is never longer: the room Next needs in dst.
func (s *Segmenter) FullLen() int {
	if !s.gso {
		return len(s.frame)
	}
	return s.hdrLen + min(s.mss, len(s.frame)-s.hdrLen)
}

// Next writes the next segment's complete Ethernet frame, checksums done, to
// dst[0:] and returns its length; it returns 0 when all segments were
// written. It panics if dst is shorter than FullLen. It does not allocate.
func (s *Segmenter) Next(dst []byte) int {
	if s.next >= s.count {
		return 0
	}
	k := s.next
	s.next++
	if !s.gso {
		n := copy(dst[:len(s.frame)], s.frame)
		if s.fixCs {
			completeAt(dst[:n], s.csumStart, s.csumField)
		}
		return n
	}

	from := s.hdrLen + k*s.mss
	plen := min(s.mss, len(s.frame)-from)
	n := s.hdrLen + plen
	copy(dst[:s.hdrLen], s.frame[:s.hdrLen])
	copy(dst[s.hdrLen:n], s.frame[from:from+plen])

	ip := dst[s.l3:s.l4]
	tcp := dst[s.l4:n]
	if s.v6 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(tcp)))
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(n-s.l3))
		binary.BigEndian.PutUint16(ip[4:6], s.id+uint16(k))
		setIPv4Checksum(ip)
	}
	binary.BigEndian.PutUint32(tcp[4:8], s.seq+uint32(k*s.mss))
	flags := s.flags
	if k != s.count-1 {
		flags &^= tcpFIN | tcpPSH
	}
	if k != 0 {
		flags &^= tcpCWR
	}
	tcp[13] = flags
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:18], ^Checksum(tcp, tcpPseudo(ip, s.v6, len(tcp))))
	return n
}
