package dns

// This file holds the Ethernet, IPv4, IPv6, UDP and TCP headers: the cheap
// classification every frame a port sends passes through, the full parse of
// a frame addressed to the resolver, and the headers of the replies. All of
// it reads and writes fixed offsets by hand and allocates nothing.
//
// Design notes: incoming L4 checksums are not verified. A local TAP hands
// over frames whose checksum the kernel left partial for offload, and the
// frame never crossed a wire, so the check would only reject good queries.
// Outgoing IPv4 header, UDP and TCP checksums are always complete: the
// container's stack receives them as if from a wire.

import (
	"encoding/binary"
	"net/netip"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

// Header sizes and protocol numbers.
const (
	ethHeaderLen  = 14 // destination MAC, source MAC, EtherType
	ipv4HeaderLen = 20 // without options; replies carry none
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	tcpHeaderLen  = 20 // without options

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd

	protoTCP = 6
	protoUDP = 17

	dnsPort = 53

	// ethMinFrameLen is the shortest Ethernet frame without its FCS; shorter
	// replies (a bare TCP ACK over IPv4 is 54 bytes) are zero-padded to it.
	ethMinFrameLen = 60

	// replyHopLimit is the TTL or hop limit of replies, Linux's default.
	replyHopLimit = 64
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// packet is a frame addressed to the resolver, as parse found it. Offsets
// are from the start of the frame.
type packet struct {
	v6  bool
	tcp bool

	srcMAC, dstMAC [6]byte
	src, dst       netip.Addr
	sport          uint16

	// pay and end delimit the L4 payload (the DNS message over UDP, the
	// stream bytes over TCP); Ethernet padding past the IP length is not
	// in it.
	pay, end int

	// TCP only.
	seq, ack uint32
	flags    uint8
	mss      uint16 // the SYN's MSS option, 0 when absent
}

// classification is what classify says of a frame.
type classification uint8

const (
	notOurs   classification = iota // not a DNS query to the resolver
	ours                            // a query to the resolver, parsed into the packet
	malformed                       // to the resolver, but its headers do not add up
	fragment                        // to the resolver's address, but an IP fragment
)

// classify looks at frame f and, when it is UDP or TCP to port 53 of the
// network's DNS address, parses its headers into p. The checks run cheapest
// first (EtherType, protocol, port, address) since every frame a port
// sends comes through here; the Table is consulted last. It returns the
// network of vni when the frame is addressed to it. It does not allocate.
func classify(f []byte, t *Table, vni uint32, p *packet) (c classification, n *network) {
	if len(f) < ethHeaderLen+ipv4HeaderLen+udpHeaderLen {
		return notOurs, nil
	}
	var l4, end int
	var proto uint8
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeIPv4:
		vhl := f[ethHeaderLen]
		ihl := int(vhl&0x0f) * 4
		proto = f[ethHeaderLen+9]
		if vhl>>4 != 4 || ihl < ipv4HeaderLen || proto != protoUDP && proto != protoTCP {
			return notOurs, nil
		}
		l4 = ethHeaderLen + ihl
		frag := binary.BigEndian.Uint16(f[ethHeaderLen+6:]) & 0x3fff // MF and offset
		if frag&0x1fff == 0 && (len(f) < l4+4 || binary.BigEndian.Uint16(f[l4+2:]) != dnsPort) {
			return notOurs, nil
		}
		if n = t.network(vni); n == nil || !n.dns4.IsValid() || netip.AddrFrom4([4]byte(f[ethHeaderLen+16:ethHeaderLen+20])) != n.dns4 {
			return notOurs, nil
		}
		if frag != 0 {
			return fragment, n
		}
		end = ethHeaderLen + int(binary.BigEndian.Uint16(f[ethHeaderLen+2:]))
		if end < l4 || end > len(f) {
			return malformed, n
		}
		p.v6 = false
		p.src = netip.AddrFrom4([4]byte(f[ethHeaderLen+12 : ethHeaderLen+16]))
		p.dst = n.dns4
	case etherTypeIPv6:
		l4 = ethHeaderLen + ipv6HeaderLen
		if len(f) < l4+4 || f[ethHeaderLen]>>4 != 6 {
			return notOurs, nil
		}
		proto = f[ethHeaderLen+6]
		if proto != protoUDP && proto != protoTCP || binary.BigEndian.Uint16(f[l4+2:]) != dnsPort {
			return notOurs, nil // extension headers (fragments included) are not ours either
		}
		if n = t.network(vni); n == nil || !n.dns6.IsValid() || netip.AddrFrom16([16]byte(f[ethHeaderLen+24:ethHeaderLen+40])) != n.dns6 {
			return notOurs, nil
		}
		end = l4 + int(binary.BigEndian.Uint16(f[ethHeaderLen+4:]))
		if end > len(f) {
			return malformed, n
		}
		p.v6 = true
		p.src = netip.AddrFrom16([16]byte(f[ethHeaderLen+8 : ethHeaderLen+24]))
		p.dst = n.dns6
	default:
		return notOurs, nil
	}
	copy(p.dstMAC[:], f[0:6])
	copy(p.srcMAC[:], f[6:12])
	p.end = end
	p.tcp = proto == protoTCP
	if !p.tcp {
		if end-l4 < udpHeaderLen {
			return malformed, n
		}
		ulen := int(binary.BigEndian.Uint16(f[l4+4:]))
		if ulen < udpHeaderLen || ulen > end-l4 {
			return malformed, n
		}
		p.sport = binary.BigEndian.Uint16(f[l4:])
		p.pay, p.end = l4+udpHeaderLen, l4+ulen
		return ours, n
	}
	if end-l4 < tcpHeaderLen {
		return malformed, n
	}
	doff := int(f[l4+12]>>4) * 4
	if doff < tcpHeaderLen || doff > end-l4 {
		return malformed, n
	}
	p.sport = binary.BigEndian.Uint16(f[l4:])
	p.seq = binary.BigEndian.Uint32(f[l4+4:])
	p.ack = binary.BigEndian.Uint32(f[l4+8:])
	p.flags = f[l4+13]
	p.pay = l4 + doff
	p.mss = 0
	if p.flags&tcpSYN != 0 {
		p.mss = tcpMSSOption(f[l4+tcpHeaderLen : l4+doff])
	}
	return ours, n
}

// tcpMSSOption returns the MSS option's value in the TCP options opts, or 0.
func tcpMSSOption(opts []byte) uint16 {
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of options
			return 0
		case 1: // no-op
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return 0
		}
		if opts[0] == 2 && opts[1] == 4 {
			return binary.BigEndian.Uint16(opts[2:4])
		}
		opts = opts[opts[1]:]
	}
	return 0
}

// unicastSource reports whether p came from an address a reply may go to:
// a unicast MAC and an IP that is neither unspecified, loopback, multicast,
// nor a broadcast address (255.255.255.255 or that of one of the
// network's IPv4 subnets). The query must also have been sent to a
// unicast MAC, which the reply comes from.
func unicastSource(p *packet, n *network) bool {
	if p.srcMAC[0]&1 != 0 || p.srcMAC == [6]byte{} || p.dstMAC[0]&1 != 0 {
		return false
	}
	ip := p.src
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || p.sport == 0 {
		return false
	}
	if ip.Is4() {
		if ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return false
		}
		for _, s := range n.subnets {
			if s.Addr().Is4() && s.Bits() < 31 && s.Contains(ip) && lastAddr4(s) == ip {
				return false
			}
		}
	}
	return true
}

// lastAddr4 returns the broadcast address of the IPv4 prefix s.
func lastAddr4(s netip.Prefix) netip.Addr {
	a := s.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-s.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// reply is the addressing of a reply: the query's, reversed.
type reply struct {
	v6, tcp bool
	cliMAC  [6]byte // the asker's MAC: the reply's destination
	srvMAC  [6]byte // the MAC the query was sent to: the reply's source
	cli     netip.Addr
	srv     netip.Addr
	cport   uint16
}

// replyTo returns the addressing of a reply to p.
func replyTo(p *packet) reply {
	return reply{v6: p.v6, tcp: p.tcp, cliMAC: p.srcMAC, srvMAC: p.dstMAC, cli: p.src, srv: p.dst, cport: p.sport}
}

// ipLen is the reply's IP header length.
func (rp *reply) ipLen() int {
	if rp.v6 {
		return ipv6HeaderLen
	}
	return ipv4HeaderLen
}

// hdrLen is the length of the reply's headers before its payload, TCP
// without options.
func (rp *reply) hdrLen() int {
	if rp.tcp {
		return ethHeaderLen + rp.ipLen() + tcpHeaderLen
	}
	return ethHeaderLen + rp.ipLen() + udpHeaderLen
}

// writeL3 writes the Ethernet and IP headers of a reply carrying l4Len
// bytes of protocol proto into f and returns the L4 offset and the partial
// checksum of the pseudo-header.
func (rp *reply) writeL3(f []byte, proto uint8, l4Len int) (int, uint64) {
	copy(f[0:6], rp.cliMAC[:])
	copy(f[6:12], rp.srvMAC[:])
	ip := f[ethHeaderLen:]
	if rp.v6 {
		binary.BigEndian.PutUint16(f[12:14], etherTypeIPv6)
		binary.BigEndian.PutUint32(ip[0:4], 6<<28)
		binary.BigEndian.PutUint16(ip[4:6], uint16(l4Len))
		ip[6], ip[7] = proto, replyHopLimit
		s, d := rp.srv.As16(), rp.cli.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		return ethHeaderLen + ipv6HeaderLen, offload.PseudoHeaderSum6(rp.srv, rp.cli, uint32(l4Len), proto)
	}
	binary.BigEndian.PutUint16(f[12:14], etherTypeIPv4)
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipv4HeaderLen+l4Len))
	binary.BigEndian.PutUint32(ip[4:8], 0x4000) // ID 0, DF
	ip[8], ip[9] = replyHopLimit, proto
	ip[10], ip[11] = 0, 0
	s, d := rp.srv.As4(), rp.cli.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:12], ^offload.Checksum(ip[:ipv4HeaderLen], 0))
	pseudo := uint64(binary.BigEndian.Uint32(s[:])) + uint64(binary.BigEndian.Uint32(d[:])) +
		uint64(l4Len) + uint64(proto)
	return ethHeaderLen + ipv4HeaderLen, pseudo
}

// writeUDP writes the headers of a UDP reply whose payLen-byte payload
// already sits at f[rp.hdrLen():] and returns the frame length, padded to
// ethMinFrameLen if f has room. f must hold the whole frame.
func (rp *reply) writeUDP(f []byte, payLen int) int {
	l4, pseudo := rp.writeL3(f, protoUDP, udpHeaderLen+payLen)
	u := f[l4 : l4+udpHeaderLen+payLen]
	binary.BigEndian.PutUint16(u[0:2], dnsPort)
	binary.BigEndian.PutUint16(u[2:4], rp.cport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	u[6], u[7] = 0, 0
	c := ^offload.Checksum(u, pseudo)
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	return pad(f, l4+len(u))
}

// writeTCP writes the headers of a TCP reply segment whose payLen-byte
// payload already sits at f[rp.hdrLen()+optLen:], optLen being 4 when mss
// is not 0 (an MSS option, for a SYN-ACK) and 0 otherwise, and returns the
// frame length, padded to ethMinFrameLen if f has room.
func (rp *reply) writeTCP(f []byte, seq, ack uint32, flags uint8, mss uint16, payLen int) int {
	hl := tcpHeaderLen
	if mss != 0 {
		hl += 4
	}
	l4, pseudo := rp.writeL3(f, protoTCP, hl+payLen)
	t := f[l4 : l4+hl+payLen]
	binary.BigEndian.PutUint16(t[0:2], dnsPort)
	binary.BigEndian.PutUint16(t[2:4], rp.cport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12], t[13] = byte(hl/4)<<4, flags
	binary.BigEndian.PutUint16(t[14:16], 0xffff) // window
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0      // checksum, urgent pointer
	if mss != 0 {
		t[20], t[21] = 2, 4
		binary.BigEndian.PutUint16(t[22:24], mss)
	}
	binary.BigEndian.PutUint16(t[16:18], ^offload.Checksum(t, pseudo))
	return pad(f, l4+len(t))
}

// pad zero-pads the n-byte frame in f to ethMinFrameLen when f has room and
// returns its length.
func pad(f []byte, n int) int {
	if n < ethMinFrameLen && len(f) >= ethMinFrameLen {
		clear(f[n:ethMinFrameLen])
		return ethMinFrameLen
	}
	return n
}
