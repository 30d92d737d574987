package offload

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// pkt describes an Ethernet frame with a TCP or UDP packet that gopacket
// builds, so that tests compare this package's hand-written bytes with an
// independent serializer.
type pkt struct {
	v6       bool
	udp      bool
	vlan     uint16 // 802.1Q VLAN id; 0 means untagged
	srcMAC   net.HardwareAddr
	dstMAC   net.HardwareAddr
	src, dst net.IP

	// IPv4
	tos    uint8
	id     uint16
	df     bool
	ipOpts []layers.IPv4Option
	// IPv6
	tclass    uint8
	flowLabel uint32
	// both
	ttl uint8

	sport, dport uint16
	seq, ack     uint32
	flags        uint8 // tcpFIN... bits
	window       uint16
	urgent       uint16
	opts         []layers.TCPOption
	payload      []byte
}

func basePkt(v6 bool) pkt {
	p := pkt{
		v6:     v6,
		srcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		dstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		src:    net.IP{10, 0, 0, 1},
		dst:    net.IP{10, 0, 0, 2},
		tos:    0x10,
		id:     0x1234,
		df:     true,
		ttl:    64,
		sport:  40000,
		dport:  5201,
		seq:    0xfffff000, // wraps within a 64 KB super-frame
		ack:    0x01020304,
		flags:  tcpACK,
		window: 502,
	}
	if v6 {
		p.src = net.ParseIP("fd00::1")
		p.dst = net.ParseIP("fd00::2")
		p.tclass = 0x20
		p.flowLabel = 0x12345
	}
	return p
}

// build serializes p with lengths and checksums computed by gopacket.
func (p pkt) build(tb testing.TB) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	etherType := layers.EthernetTypeIPv4
	if p.v6 {
		etherType = layers.EthernetTypeIPv6
	}
	if p.vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: p.vlan, Type: etherType})
	} else {
		eth.EthernetType = etherType
	}
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	var netLayer gopacket.NetworkLayer
	if p.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: p.tclass, FlowLabel: p.flowLabel, NextHeader: proto,
			HopLimit: p.ttl, SrcIP: p.src, DstIP: p.dst}
		ls, netLayer = append(ls, ip), ip
	} else {
		ip := &layers.IPv4{Version: 4, TOS: p.tos, Id: p.id, TTL: p.ttl, Protocol: proto,
			SrcIP: p.src.To4(), DstIP: p.dst.To4(), Options: p.ipOpts}
		if p.df {
			ip.Flags = layers.IPv4DontFragment
		}
		ls, netLayer = append(ls, ip), ip
	}
	if p.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		if err := u.SetNetworkLayerForChecksum(netLayer); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	} else {
		f := p.flags
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport),
			Seq: p.seq, Ack: p.ack, Window: p.window, Urgent: p.urgent, Options: p.opts,
			FIN: f&tcpFIN != 0, SYN: f&tcpSYN != 0, RST: f&tcpRST != 0, PSH: f&tcpPSH != 0,
			ACK: f&tcpACK != 0, URG: f&tcpURG != 0, ECE: f&tcpECE != 0, CWR: f&tcpCWR != 0}
		if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(p.payload))
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	// gopacket pads Ethernet frames to 60 bytes; a TAP never does.
	b := sb.Bytes()
	l3, _ := p.offsets()
	if p.v6 {
		b = b[:l3+40+int(binary.BigEndian.Uint16(b[l3+4:]))]
	} else {
		b = b[:l3+int(binary.BigEndian.Uint16(b[l3+2:]))]
	}
	return append([]byte(nil), b...)
}

// offsets returns the offsets of the IP and L4 headers of a frame p built.
func (p pkt) offsets() (l3, l4 int) {
	l3 = 14
	if p.vlan != 0 {
		l3 = 18
	}
	if p.v6 {
		return l3, l3 + 40
	}
	n := 0
	for _, o := range p.ipOpts {
		n += int(o.OptionLength)
		if o.OptionLength == 0 {
			n++
		}
	}
	return l3, l3 + 20 + (n+3)&^3
}

// tsoOpts are TCP options as Linux sends them on an established connection:
// NOP, NOP, timestamps.
func tsoOpts() []layers.TCPOption {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint32(ts[0:4], 0x11223344)
	binary.BigEndian.PutUint32(ts[4:8], 0x55667788)
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// partialize turns the complete L4 checksum of frame (L4 header at l4, the
// checksum field at l4+csumOff) into the folded pseudo-header sum a TAP
// reads with NEEDS_CSUM, and returns the matching header.
func partialize(frame []byte, l3, l4, csumOff int, v6 bool, proto uint8) VirtioNetHdr {
	var ps uint64
	if v6 {
		ps = pseudo6(frame[l3+8:l3+24], frame[l3+24:l3+40], uint32(len(frame)-l4), proto)
	} else {
		ps = pseudo4(frame[l3+12:l3+16], frame[l3+16:l3+20], uint32(len(frame)-l4), proto)
	}
	binary.BigEndian.PutUint16(frame[l4+csumOff:], fold64(ps))
	return VirtioNetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: uint16(csumOff)}
}

// tcpChecksumOK reports whether the TCP checksum of the IPv4 or IPv6 packet
// in frame at l3 verifies, and the IPv4 header checksum too. The lengths
// come from the IP header.
func tcpChecksumOK(frame []byte, l3 int) bool {
	ip := frame[l3:]
	switch ip[0] >> 4 {
	case 4:
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if Checksum(ip[:ihl], 0) != 0xffff || total > len(ip) {
			return false
		}
		return Checksum(ip[ihl:total], tcpPseudo(ip, false, total-ihl)) == 0xffff
	case 6:
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return false
		}
		return Checksum(ip[40:40+plen], tcpPseudo(ip, true, plen)) == 0xffff
	}
	return false
}
