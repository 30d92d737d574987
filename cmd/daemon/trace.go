package daemon

// This file holds `ovlsw trace`: the frames a source (an endpoint or a
// port) would send to reach a destination (an IP address or a MAC), built
// here with gopacket and walked through the switch's own forwarding
// decisions in a dry run (vtep.Switch.Trace). For an IP address the source
// first asks for its MAC (ARP, or neighbour solicitation for IPv6): that
// question is traced first, then the packet to the MAC the answer gives.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// traceSrcPort is the L4 source port of traced TCP and UDP packets: the
// real one is the sender's choice, and the outer source port follows it.
const traceSrcPort = 40000

// portOf returns the switch port of the endpoint named name.
func (e *endpoints) portOf(name string) (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, a := range e.byPort {
		if a.ep.Name == name {
			return id, true
		}
	}
	return 0, false
}

// traceSource is who sends the traced frames.
type traceSource struct {
	port int
	name string
	vni  uint32
	mac  fdb.MAC
	ips  []netip.Addr
}

// source finds req.From: an endpoint of the network, or a port on its VNI.
func (d *Daemon) traceSource(from string, vni uint32) (traceSource, error) {
	for _, ep := range d.eps.list("") {
		if ep.Name != from {
			continue
		}
		if ep.VNI != vni {
			return traceSource{}, userErrorf("endpoint %s is on VNI %d, not the network's %d", from, ep.VNI, vni)
		}
		id, ok := d.eps.portOf(from)
		if !ok {
			break
		}
		return traceSource{port: id, name: from, vni: vni, mac: ep.MAC, ips: []netip.Addr{ep.Address.Addr()}}, nil
	}
	id, ok := d.sw.PortID(from)
	if !ok {
		return traceSource{}, fmt.Errorf("no endpoint or port %s on this node: %w", from, errNotFound)
	}
	src := traceSource{port: id, name: from, vni: vni}
	if h := d.host; h != nil && h.id == id {
		if h.vni != vni {
			return traceSource{}, userErrorf("port %s is on VNI %d, not the network's %d", from, h.vni, vni)
		}
		for _, a := range h.addrs {
			src.ips = append(src.ips, a.Addr())
		}
		if ifc, err := net.InterfaceByName(h.name); err == nil && len(ifc.HardwareAddr) == 6 {
			src.mac = fdb.MAC(ifc.HardwareAddr)
		}
		return src, nil
	}
	for _, ep := range d.eps.list("") {
		if p, ok := d.eps.portOf(ep.Name); ok && p == id {
			src.mac, src.ips = ep.MAC, []netip.Addr{ep.Address.Addr()}
		}
	}
	if src.mac.IsZero() { // a port of no endpoint: the MAC learned on it, if one was
		for _, e := range d.fdb.Entries() {
			if e.Port == id && e.VNI == vni {
				src.mac, src.ips = e.MAC, e.IPs
				break
			}
		}
	}
	if src.mac.IsZero() {
		return traceSource{}, userErrorf("port %s: no MAC is known on it; trace from an endpoint, or give --src-mac", from)
	}
	return src, nil
}

// parseProto reads --proto: icmp, tcp/PORT or udp/PORT.
func parseProto(s string) (proto string, port uint16, err error) {
	if s == "" || s == "icmp" {
		return "icmp", 0, nil
	}
	p, ps, ok := strings.Cut(s, "/")
	n, perr := strconv.ParseUint(ps, 10, 16)
	if !ok || (p != "tcp" && p != "udp") || perr != nil || n == 0 {
		return "", 0, userErrorf("proto %q: want icmp, tcp/PORT or udp/PORT (e.g. tcp/80)", s)
	}
	return p, uint16(n), nil
}

func (d *Daemon) trace(req control.TraceRequest) (control.Trace, error) {
	out := control.Trace{Request: req}
	n, ok := d.nets.get(req.Network)
	if !ok {
		return out, fmt.Errorf("network %s: %w", req.Network, errNotFound)
	}
	proto, dport, err := parseProto(req.Proto)
	if err != nil {
		return out, err
	}
	src, err := d.traceSource(req.From, n.VNI)
	if err != nil {
		return out, err
	}
	note := func(format string, args ...any) { out.Notes = append(out.Notes, fmt.Sprintf(format, args...)) }
	if req.SrcMAC != "" {
		mac, err := fdb.ParseMAC(req.SrcMAC)
		if err != nil {
			return out, userErrorf("source MAC %q: %v", req.SrcMAC, err)
		}
		if mac != src.mac {
			note("frames sent from %v, not %s's own %v", mac, src.name, src.mac)
		}
		src.mac = mac
	}
	if hw, err := net.ParseMAC(req.To); err == nil && len(hw) == 6 {
		dst := fdb.MAC(hw)
		var dstIP netip.Addr
		if e, ok := d.fdb.Get(fdb.Key{VNI: n.VNI, MAC: dst}); ok && len(e.IPs) > 0 {
			dstIP = e.IPs[0]
		}
		srcIP := pickSource(src.ips, dstIP)
		if !dstIP.IsValid() {
			dstIP = netip.IPv4Unspecified()
			if srcIP.Is6() {
				dstIP = netip.IPv6Unspecified()
			}
		}
		ft, err := d.traceFrame(src, packet(src.mac, dst, srcIP, dstIP, proto, dport))
		out.Frames = append(out.Frames, ft)
		return out, err
	}
	dstIP, err := netip.ParseAddr(req.To)
	if err != nil {
		return out, userErrorf("to %q: want an IP address or a MAC", req.To)
	}
	dstIP = dstIP.Unmap()
	hop := dstIP
	srcIP := pickSource(src.ips, dstIP)
	// The source's own subnet (the network's subnet holding its address)
	// is on link; anything else goes to that subnet's gateway.
	var own gossip.NetSubnet
	for _, sn := range n.Subnets() {
		if srcIP.IsValid() && sn.Prefix.Contains(srcIP) || !srcIP.IsValid() && own.Prefix == (netip.Prefix{}) {
			own = sn
		}
	}
	if own.Prefix.IsValid() && !own.Prefix.Contains(dstIP) {
		if !own.Gateway.IsValid() {
			return out, userErrorf("%v is outside %s's subnet %v and it has no gateway: the source has no route to it", dstIP, n.Name, own.Prefix)
		}
		hop = own.Gateway
		note("%v is outside %v: the source sends it to the gateway %v", dstIP, own.Prefix, hop)
	}
	if !srcIP.IsValid() {
		srcIP = pickSource(src.ips, hop)
	}
	if !srcIP.IsValid() {
		return out, userErrorf("%s has no %s address to send from", src.name, map[bool]string{true: "IPv4", false: "IPv6"}[hop.Is4()])
	}
	// First the question for the next hop's MAC.
	q, desc := neighbourQuestion(src.mac, srcIP, hop)
	ft, err := d.traceFrame(src, q)
	ft.Frame = desc
	out.Frames = append(out.Frames, ft)
	if err != nil {
		return out, err
	}
	var dst fdb.MAC
	switch {
	case ft.Verdict == "answered":
		dst, _ = fdb.ParseMAC(ft.Answer)
	case ft.Verdict == "drop":
		note("the question goes nowhere: the source learns no MAC for %v, and sends nothing more", hop)
		return out, nil
	default:
		mac, ok := d.fdb.LookupIP(fdb.IPKey{VNI: n.VNI, IP: hop})
		if !ok {
			note("no node knows %v: the question floods and nobody answers; the source sends nothing more", hop)
			return out, nil
		}
		dst = mac
		note("the question is not answered by the proxy; %v's owner %v answers it itself", hop, mac)
	}
	ft, err = d.traceFrame(src, packet(src.mac, dst, srcIP, dstIP, proto, dport))
	out.Frames = append(out.Frames, ft)
	return out, err
}

// pickSource returns the first of ips of dst's family (any, for none).
func pickSource(ips []netip.Addr, dst netip.Addr) netip.Addr {
	for _, a := range ips {
		if !dst.IsValid() || a.Is4() == dst.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// traceFrame traces one frame from src.
func (d *Daemon) traceFrame(src traceSource, frame []byte) (control.FrameTrace, error) {
	t, err := d.sw.Trace(src.port, frame)
	if err != nil {
		return control.FrameTrace{}, err
	}
	ft := control.FrameTrace{Frame: describeFrame(frame), Port: t.Port, VNI: t.VNI, Verdict: t.Verdict, Drop: t.Drop,
		Answer: t.Answer, Flow: t.Flow}
	for _, s := range t.Steps { // vtep's types, field for field
		ft.Steps = append(ft.Steps, control.TraceStep(s))
	}
	if t.FDB != nil {
		f := control.TraceFDB(*t.FDB)
		ft.FDB = &f
	}
	for _, o := range t.Out {
		ft.Out = append(ft.Out, control.TraceOut(o))
	}
	return ft, nil
}

// serialize builds a frame from layers, lengths and checksums filled in.
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil
	}
	return buf.Bytes()
}

// neighbourQuestion is the ARP request (IPv4) or neighbour solicitation
// (IPv6) src sends for target's MAC, and its description.
func neighbourQuestion(mac fdb.MAC, src, target netip.Addr) ([]byte, string) {
	if target.Is4() {
		eth := &layers.Ethernet{SrcMAC: mac[:], DstMAC: fdb.Broadcast[:], EthernetType: layers.EthernetTypeARP}
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: mac[:], SourceProtAddress: src.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()}
		return serialize(eth, arp), fmt.Sprintf("ARP who-has %v tell %v", target, src)
	}
	t16 := target.As16()
	group := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]})
	g16 := group.As16()
	dmac := fdb.MAC{0x33, 0x33, g16[12], g16[13], g16[14], g16[15]}
	eth := &layers.Ethernet{SrcMAC: mac[:], DstMAC: dmac[:], EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: group.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	_ = icmp.SetNetworkLayerForChecksum(ip)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: mac[:]}}}
	return serialize(eth, ip, icmp, ns), fmt.Sprintf("NS who-has %v tell %v", target, src)
}

// packet is an ICMP echo request, TCP SYN or UDP datagram from src to dst.
func packet(smac, dmac fdb.MAC, src, dst netip.Addr, proto string, dport uint16) []byte {
	eth := &layers.Ethernet{SrcMAC: smac[:], DstMAC: dmac[:], EthernetType: layers.EthernetTypeIPv4}
	var l3 gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if dst.Is4() {
		if !src.IsValid() || !src.Is4() {
			src = netip.IPv4Unspecified()
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		l3, nl = ip, ip
		switch proto {
		case "tcp":
			ip.Protocol = layers.IPProtocolTCP
		case "udp":
			ip.Protocol = layers.IPProtocolUDP
		default:
			ip.Protocol = layers.IPProtocolICMPv4
		}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		if !src.IsValid() || src.Is4() {
			src = netip.IPv6Unspecified()
		}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		l3, nl = ip, ip
		switch proto {
		case "tcp":
			ip.NextHeader = layers.IPProtocolTCP
		case "udp":
			ip.NextHeader = layers.IPProtocolUDP
		default:
			ip.NextHeader = layers.IPProtocolICMPv6
		}
	}
	payload := gopacket.Payload([]byte("ovlsw trace"))
	switch proto {
	case "tcp":
		tcp := &layers.TCP{SrcPort: traceSrcPort, DstPort: layers.TCPPort(dport), SYN: true, Window: 64240}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		return serialize(eth, l3, tcp)
	case "udp":
		udp := &layers.UDP{SrcPort: traceSrcPort, DstPort: layers.UDPPort(dport)}
		_ = udp.SetNetworkLayerForChecksum(nl)
		return serialize(eth, l3, udp, payload)
	}
	if dst.Is4() {
		return serialize(eth, l3, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}, payload)
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	_ = icmp.SetNetworkLayerForChecksum(nl)
	return serialize(eth, l3, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1}, payload)
}

// describeFrame says in one line what a traced frame is.
func describeFrame(b []byte) string {
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		return fmt.Sprintf("%d bytes", len(b))
	}
	head := fmt.Sprintf("%v > %v", eth.SrcMAC, eth.DstMAC)
	var src, dst string
	if nl := p.NetworkLayer(); nl != nil {
		src, dst = nl.NetworkFlow().Src().String(), nl.NetworkFlow().Dst().String()
	}
	switch l := p.TransportLayer().(type) {
	case *layers.TCP:
		return fmt.Sprintf("%s, TCP SYN %s:%d > %s:%d", head, src, l.SrcPort, dst, l.DstPort)
	case *layers.UDP:
		return fmt.Sprintf("%s, UDP %s:%d > %s:%d", head, src, l.SrcPort, dst, l.DstPort)
	}
	if p.Layer(layers.LayerTypeICMPv4) != nil || p.Layer(layers.LayerTypeICMPv6Echo) != nil {
		return fmt.Sprintf("%s, ICMP echo request %s > %s", head, src, dst)
	}
	if src != "" {
		return fmt.Sprintf("%s, IP %s > %s", head, src, dst)
	}
	return head
}
