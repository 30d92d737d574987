package vtep

// This file holds the switch's routing stage, the distributed anycast
// gateway: a frame a port sends to its VNI's router MAC (RouterMAC) is
// routed between the subnets of the VNI's network, and the ICMP errors of
// that and of the MTU check go back to the port (vtep/route builds them).
//
// Design notes:
//   - Every subnet of a network shares the network's VNI, so routing is
//     within one VNI: the destination is looked up among the VNI's IP
//     bindings (gossip's endpoints, the FDB's {VNI, IP} -> MAC), the frame
//     rewritten (TTL, checksum, MACs) and then switched exactly as a
//     bridged frame from the same port: FDB lookup, local port or the
//     owning VTEP, flood policy and flood rate for an unknown MAC. Routing
//     is asymmetric: the ingress node routes, the egress node only bridges,
//     so a routed packet crosses one encapsulation like a bridged one.
//   - A TAP super-frame (virtio-net GSO) is rewritten once, before it is
//     segmented: the TCP checksum does not cover the TTL.
//   - The gateway addresses themselves (Switch.SetGatewayAddrs) are not
//     routed: a ping is answered (route.EchoReply), anything else dropped.
//     Other stages that answer for such an address (the DNS responder) come
//     before this one in sendBatch.
//   - ICMP errors go from the gateway of the sender's subnet; for a bridged
//     packet too big in a network without one, from the packet's own
//     destination (as if that host had answered; hosts accept path MTU
//     from any source that quotes their packet). An IPv4 packet larger than
//     the MTU without DF is dropped, never fragmented (RFC 7348 4.3).
//   - Frames with a router MAC as their source are never learned, from a
//     port or from the wire: every node sends routed frames from the same
//     router MAC, and no port may claim it.

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/offload"
	"github.com/ovlsw/ovlsw/vtep/route"
)

// Subnet is one subnet of a VNI's network and its gateway address (the
// zero Addr for none), for routing.
type Subnet struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// RouteStats counts what the routing stage did.
type RouteStats struct {
	Routed       uint64 `json:"routed"`        // frames rewritten and switched on
	EchoReplies  uint64 `json:"echo_replies"`  // pings to a gateway address answered
	TimeExceeded uint64 `json:"time_exceeded"` // ICMP errors sent, by kind
	Unreachable  uint64 `json:"unreachable"`
	TooBig       uint64 `json:"too_big"`
	Limited      uint64 `json:"limited"` // errors not sent: the port's rate limit
}

type routeCounters struct {
	routed, echo, timeExceeded, unreachable, tooBig, limited atomic.Uint64
}

// RouteStats returns a snapshot of the routing counters.
func (s *Switch) RouteStats() RouteStats {
	c := &s.routeCtr
	return RouteStats{Routed: c.routed.Load(), EchoReplies: c.echo.Load(), TimeExceeded: c.timeExceeded.Load(),
		Unreachable: c.unreachable.Load(), TooBig: c.tooBig.Load(), Limited: c.limited.Load()}
}

// SetSubnets sets the subnets of vni's network, which the routing stage
// routes between; nil or empty removes them. Frames to the router MAC are
// routed whether or not the VNI has subnets: they say which destinations
// are unreachable hosts (an address in a subnet that no endpoint holds)
// rather than unreachable networks, and where errors come from.
func (s *Switch) SetSubnets(vni uint32, subnets []Subnet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	storeVNI(&s.subnets, vni, slices.Clone(subnets), len(subnets) == 0)
}

// Subnets returns vni's subnets as SetSubnets set them.
func (s *Switch) Subnets(vni uint32) []Subnet {
	return slices.Clone(s.vniSubnets(vni))
}

func (s *Switch) vniSubnets(vni uint32) []Subnet {
	if p := s.subnets.Load(); p != nil {
		return (*p)[vni]
	}
	return nil
}

// routeMemo is the last destination a port reader routed to in its
// current batch and the MAC the FDB gave it: the frames of one flow in a
// batch (a burst of small packets, segments the sender did not coalesce)
// are looked up once, as the receive path's rxMemo does. sendBatch
// invalidates it at the start of each batch.
type routeMemo struct {
	valid bool
	dst   netip.Addr
	mac   fdb.MAC
}

// routeVerdict is what routing does with a frame sent to the router MAC.
type routeVerdict uint8

const (
	routeForward     routeVerdict = iota // rewritten for its next hop and switched on
	routeGateway                         // to a gateway address: an echo request is answered, the rest dropped
	routeNoRoute                         // not routable: dropped (no_route)
	routeTTL                             // TTL or hop limit spent: time exceeded (ttl)
	routeUnreachable                     // no MAC for the destination: unreachable (no_route)
)

// routeDecide parses the frame (c: what classify made of it) that port p
// sent to its VNI's router MAC into pk and says what routing does with it:
// for routeForward the next hop's MAC, for routeUnreachable the kind of
// ICMP error. memo is the batch's last routed destination (nil: none). It
// changes nothing: route acts on its verdict, Trace reports it.
func (s *Switch) routeDecide(p *port, frame []byte, c *frameClass, memo *routeMemo, pk *route.Packet) (routeVerdict, fdb.MAC, route.Kind) {
	if !route.Parse(frame, c.L2Len, c.EtherType, pk) || !routable(pk) {
		return routeNoRoute, fdb.MAC{}, 0
	}
	hit := memo != nil && memo.valid && memo.dst == pk.Dst // then it is no gateway address, and its MAC is known
	if !hit && s.gatewayAddr(p.vni, pk.Dst) {
		return routeGateway, fdb.MAC{}, 0
	}
	if pk.TTL <= 1 {
		return routeTTL, fdb.MAC{}, route.TimeExceeded
	}
	var mac fdb.MAC
	ok := hit
	if hit {
		mac = memo.mac
	} else {
		mac, ok = s.fdb.LookupIP(fdb.IPKey{VNI: p.vni, IP: pk.Dst})
	}
	if !ok || mac == RouterMAC(p.vni) {
		kind := route.NetUnreachable
		for _, sn := range s.vniSubnets(p.vni) {
			if sn.Prefix.Contains(pk.Dst) {
				kind = route.HostUnreachable
			}
		}
		return routeUnreachable, fdb.MAC{}, kind
	}
	return routeForward, mac, 0
}

// route routes the frame in buf (the frame at p.lay.frameOff, ending at
// end) that port p sent to its VNI's router MAC. It reports true when the
// frame was rewritten for its next hop (c now says so) and is to be
// switched on; false when it was consumed: answered, turned into an ICMP
// error queued back to p, or dropped and counted.
func (s *Switch) route(p *port, sc *sendScratch, buf []byte, end int, c *frameClass, now int64) bool {
	frame := buf[p.lay.frameOff:end]
	var pk route.Packet
	rmac := RouterMAC(p.vni)
	v, mac, kind := s.routeDecide(p, frame, c, &sc.route, &pk)
	switch v {
	case routeNoRoute:
		s.drops.add(dropNoRoute, 1)
		return false
	case routeGateway:
		if route.EchoReply(frame, &pk, rmac) {
			s.routeCtr.echo.Add(1)
			s.reply(p, sc, buf, len(frame))
			return false
		}
		s.drops.add(dropNoRoute, 1)
		return false
	case routeTTL:
		s.drops.add(dropTTL, 1)
		s.icmpError(p, sc, buf, end, &pk, kind, now)
		return false
	case routeUnreachable:
		s.drops.add(dropNoRoute, 1)
		s.icmpError(p, sc, buf, end, &pk, kind, now)
		return false
	}
	sc.route = routeMemo{valid: true, dst: pk.Dst, mac: mac}
	route.Forward(frame, &pk, rmac, mac)
	c.Dst, c.Src = mac, rmac
	s.routeCtr.routed.Add(1)
	return true
}

// routable reports whether a router may forward pk at all: not to or from
// a link-local address (RFC 4291 2.5.6, RFC 3927 2.6.2), not to a
// multicast one, not from an unspecified one.
func routable(pk *route.Packet) bool {
	return !pk.Dst.IsLinkLocalUnicast() && !pk.Src.IsLinkLocalUnicast() && !pk.Dst.IsMulticast() &&
		!pk.Src.IsUnspecified() && !pk.Dst.IsUnspecified()
}

// tooBig answers a frame from port p that the MTU check refused (in buf
// as for route; a frame longer than the read buffer arrives cut at its
// end) with fragmentation needed or packet too big, if it is an IPv6
// packet or an IPv4 one with DF, and the port may send it (port security).
func (s *Switch) tooBig(p *port, sc *sendScratch, buf []byte, end int, c *frameClass, now int64) {
	if p.secure && c.Src != p.mac || IsRouterMAC(c.Src) {
		return
	}
	var pk route.Packet
	if !route.Parse(buf[p.lay.frameOff:end], c.L2Len, c.EtherType, &pk) || !pk.V6 && !pk.DF {
		return
	}
	s.icmpError(p, sc, buf, end, &pk, route.TooBig, now)
}

// superTooBig reports whether the segments a TAP super-frame (virtio-net
// header h) stands for are larger than mtu: each is the IP header, the TCP
// (or, USO, UDP) header and up to GSOSize bytes. A container whose MTU is
// above the network's sends them; they get fragmentation needed or packet
// too big like a single frame that is too large, or TCP would only recover
// once it retransmits without TSO.
func superTooBig(frame []byte, c *frameClass, h *offload.VirtioNetHdr, mtu int) bool {
	l3 := c.L2Len
	var ipLen int
	switch {
	case c.EtherType == 0x0800 && len(frame) > l3:
		ipLen = int(frame[l3]&0x0f) * 4
	case c.EtherType == 0x86dd:
		ipLen = 40
	default:
		return false
	}
	l4Len := 8 // UDP
	if h.GSOType&^offload.GSOECN != offload.GSOUDPL4 {
		if len(frame) < l3+ipLen+13 {
			return false // the segmenter refuses it
		}
		l4Len = int(frame[l3+ipLen+12]>>4) * 4
	}
	return ipLen+l4Len+int(h.GSOSize) > mtu
}

// icmpError turns the frame in buf into the ICMP error kind about it and
// queues it back to port p, unless no error may be sent about it, the
// port's error budget is spent, or there is no address to send it from.
func (s *Switch) icmpError(p *port, sc *sendScratch, buf []byte, end int, pk *route.Packet, kind route.Kind, now int64) {
	frame := buf[p.lay.frameOff:end]
	if !route.MayError(frame, pk) {
		return
	}
	from := s.errorSource(p.vni, pk.Src, pk.V6)
	if !from.IsValid() && kind == route.TooBig {
		from = pk.Dst
	}
	if !from.IsValid() {
		return
	}
	if !p.icmp.Allow(now, route.ErrorRate, route.ErrorBurst) {
		s.routeCtr.limited.Add(1)
		return
	}
	n := route.BuildError(buf[p.lay.frameOff:], len(frame), pk, kind, from, RouterMAC(p.vni), p.mtu)
	if n == 0 {
		return
	}
	switch kind {
	case route.TimeExceeded:
		s.routeCtr.timeExceeded.Add(1)
	case route.TooBig:
		s.routeCtr.tooBig.Add(1)
	default:
		s.routeCtr.unreachable.Add(1)
	}
	s.reply(p, sc, buf, n)
}

// reply queues the n-byte frame built in buf back to port p.
func (s *Switch) reply(p *port, sc *sendScratch, buf []byte, n int) {
	clear(buf[:p.lay.frameOff]) // no offload asked of the reply
	sc.local.add(p, buf[:p.lay.frameOff+n])
}

// errorSource returns the address the gateway sends an error to src from:
// the gateway of src's subnet, else the first gateway of src's family.
func (s *Switch) errorSource(vni uint32, src netip.Addr, v6 bool) netip.Addr {
	var any netip.Addr
	for _, sn := range s.vniSubnets(vni) {
		g := sn.Gateway
		if !g.IsValid() || g.Is6() != v6 {
			continue
		}
		if sn.Prefix.Contains(src) {
			return g
		}
		if !any.IsValid() {
			any = g
		}
	}
	return any
}
