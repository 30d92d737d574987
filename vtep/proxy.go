package vtep

// This file holds the ARP and neighbour-discovery proxy and the flood
// policy. A frame read from a port that asks for an address the FDB binds
// to a MAC (an ARP request, or a neighbour solicitation) is answered on that
// port, in place in its read buffer, and goes no further, provided a local
// port or the control plane vouches for the binding. ARP packets and
// neighbour advertisements seen in either direction teach IP -> MAC
// bindings. What the FDB cannot place (a question about an unknown address,
// unknown unicast, other broadcasts) is flooded or dropped as the VNI's
// policy says; other multicast is always replicated.
//
// Design notes: a binding learned only from decapsulated traffic (its MAC's
// entry has origin learned) is not answered from. With static peers and no
// gossip nothing tells this node when the remote host behind it goes and
// another takes its address with its own MAC (a kernel vxlan device in a
// restarted node's place, say); answering from the snooped binding would
// send the asker's traffic to a MAC nobody holds until the entry ages out,
// 300 s. Such a question is an unknown question instead: it floods (as the
// policy says) and the address's real owner answers. Learning is unchanged.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/offload"
)

// FloodAction is what happens to one kind of frame the FDB cannot place.
type FloodAction uint8

// Flood actions.
const (
	Flood FloodAction = iota // replicate to every member VTEP and local port of the VNI
	Drop                     // drop and count (flood_policy)
)

func (a FloodAction) String() string {
	if a == Drop {
		return "drop"
	}
	return "flood"
}

// FloodPolicy says what a VNI does with traffic its FDB cannot place. The
// zero value floods everything, as a learning bridge (and the kernel's
// vxlan device) does.
type FloodPolicy struct {
	// UnknownARP: ARP requests and neighbour solicitations for addresses
	// the FDB does not know, or knows only from remote traffic (see the
	// design notes above). With gossip every endpoint's address is known,
	// so "drop" keeps ARP off the underlay entirely.
	UnknownARP FloodAction
	// UnknownUnicast: unicast to a MAC the FDB does not know.
	UnknownUnicast FloodAction
	// Broadcast: broadcasts other than ARP (DHCP, NetBIOS, ...).
	Broadcast FloodAction
}

// ParseFloodPolicy parses "flood" (everything floods), "drop" (nothing
// does), or a comma list of arp=, unicast=, broadcast= with flood or drop,
// starting from everything flooded.
func ParseFloodPolicy(s string) (FloodPolicy, error) {
	switch s {
	case "", "flood":
		return FloodPolicy{}, nil
	case "drop":
		return FloodPolicy{Drop, Drop, Drop}, nil
	}
	var p FloodPolicy
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		var a FloodAction
		switch v {
		case "flood":
			a = Flood
		case "drop":
			a = Drop
		default:
			ok = false
		}
		if !ok {
			return p, fmt.Errorf("flood policy %q: want flood, drop, or a list like arp=drop,unicast=flood,broadcast=flood", s)
		}
		switch k {
		case "arp":
			p.UnknownARP = a
		case "unicast":
			p.UnknownUnicast = a
		case "broadcast":
			p.Broadcast = a
		default:
			return p, fmt.Errorf("flood policy %q: unknown kind %q (arp, unicast, broadcast)", s, k)
		}
	}
	return p, nil
}

// String formats p as ParseFloodPolicy reads it.
func (p FloodPolicy) String() string {
	return fmt.Sprintf("arp=%v,unicast=%v,broadcast=%v", p.UnknownARP, p.UnknownUnicast, p.Broadcast)
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	ARPAnswered    uint64 `json:"arp_answered"`
	NDAnswered     uint64 `json:"nd_answered"`
	Flooded        uint64 `json:"flooded"`         // questions about unknown addresses flooded
	Dropped        uint64 `json:"dropped"`         // questions about unknown addresses dropped by policy
	GratuitousSent uint64 `json:"gratuitous_sent"` // gratuitous ARPs and unsolicited NAs after a move
}

type proxyCounters struct {
	arpAnswered, ndAnswered, flooded, dropped, gratuitous atomic.Uint64
}

func (c *proxyCounters) snapshot() ProxyStats {
	return ProxyStats{
		ARPAnswered: c.arpAnswered.Load(), NDAnswered: c.ndAnswered.Load(),
		Flooded: c.flooded.Load(), Dropped: c.dropped.Load(), GratuitousSent: c.gratuitous.Load(),
	}
}

// SetFloodPolicy sets the policy of vni.
func (s *Switch) SetFloodPolicy(vni uint32, p FloodPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	storeVNI(&s.policies, vni, p, false)
}

func (s *Switch) policy(vni uint32) FloodPolicy {
	return (*s.policies.Load())[vni]
}

// ndType returns the ICMPv6 type of an IPv6 frame without extension
// headers, or 0.
func ndType(frame []byte, c *frameClass) uint8 {
	const ipv6Len = 40
	if c.EtherType != 0x86dd || len(frame) < c.L2Len+ipv6Len+4 || frame[c.L2Len+6] != 58 {
		return 0
	}
	return frame[c.L2Len+ipv6Len]
}

// question says what a frame from a port asks, for the proxy.
type question uint8

const (
	notQuestion     question = iota
	answered                 // answered in place: the buffer now holds the reply
	unknownQuestion          // asks about an address the FDB does not vouch for
	spoofed                  // a secure port claims an address that is not its own
)

// owns reports whether a secure port may claim ip: one of its addresses,
// or an IPv6 link-local one (which hosts make up themselves).
func (p *port) owns(ip netip.Addr) bool {
	return !p.secure || ip.IsLinkLocalUnicast() || slices.Contains(p.ips, ip)
}

// proxyVerdict is what the proxy makes of an ARP or ND frame read from a
// port: the question, and for one it can answer the parsed request and the
// MAC to answer with.
type proxyVerdict struct {
	q      question
	nd     bool // an IPv6 neighbour solicitation, not an ARP request
	arp    arpRequest
	ns     neighborSolicitation
	target netip.Addr // the address asked about
	mac    fdb.MAC    // the answer, when q is answered
}

// proxyDecide reads the ARP or ND frame read from port p and says what the
// proxy does with it: answer (q answered, with the MAC the FDB vouches
// for), flood it as a question about an unknown address, drop it as
// spoofed, or let it pass. With learn it also learns the bindings the frame
// announces, as the data path does; without, it changes nothing (trace).
// It fills v, which the caller zeroed (a pointer: the verdict is too large
// to return by value on the data path).
func (s *Switch) proxyDecide(p *port, frame []byte, c *frameClass, learn bool, v *proxyVerdict) {
	switch c.EtherType {
	case 0x0806:
		req, op, ok := parseARP(frame, c)
		if !ok {
			return
		}
		if !req.Probe {
			if p.secure && (req.SenderMAC != p.mac || !p.owns(req.SenderIP)) {
				v.q = spoofed
				return
			}
			if learn {
				s.fdb.BindIP(fdb.Key{VNI: p.vni, MAC: req.SenderMAC}, req.SenderIP)
			}
		}
		if op != arpOpRequest || req.Gratuitous {
			return
		}
		v.arp, v.target = req, req.TargetIP
		mac, ok := s.proxyTarget(p.vni, req.TargetIP)
		if !ok {
			v.q = unknownQuestion
			return
		}
		if mac == req.SenderMAC {
			return // someone asking about itself: let the owner answer
		}
		v.q, v.mac = answered, mac
	case 0x86dd:
		switch ndType(frame, c) {
		case 135:
			ns, ok := parseNS(frame, c)
			if !ok {
				return
			}
			if ns.DAD {
				return // never answered: the prober would give up its address
			}
			if ns.HasSourceLLA && learn {
				s.fdb.BindIP(fdb.Key{VNI: p.vni, MAC: ns.SourceLLA}, ns.Src)
			}
			v.nd, v.ns, v.target = true, ns, ns.Target
			mac, ok := s.proxyTarget(p.vni, ns.Target)
			if !ok {
				v.q = unknownQuestion
				return
			}
			if mac == ns.SrcMAC {
				return
			}
			v.q, v.mac = answered, mac
		case 136:
			if p.secure {
				if na, ok := parseNA(frame, c); ok && (!p.owns(na.Target) || (na.HasTargetLLA && na.TargetLLA != p.mac)) {
					v.q = spoofed
					return
				}
			}
			if learn {
				s.learnNA(p.vni, frame, c)
			}
		}
	}
}

// proxy learns bindings from the ARP or ND frame in buf[off:off+size],
// read from port p, and answers it in place if it asks about an address the
// FDB vouches for (fdb.Table.LookupIPVouched). It returns the reply's length
// when answered.
func (s *Switch) proxy(p *port, buf []byte, off, size int, c *frameClass) (question, int) {
	frame := buf[off : off+size]
	var v proxyVerdict
	s.proxyDecide(p, frame, c, true, &v)
	if v.q != answered {
		return v.q, 0
	}
	if v.nd {
		n := buildNA(buf[off:], v.ns, frame, c, v.mac, IsRouterMAC(v.mac))
		if n == 0 {
			return notQuestion, 0
		}
		s.proxyCtr.ndAnswered.Add(1)
		return answered, n
	}
	n := buildARPReply(buf[off:], v.arp, frame, c, v.mac)
	if n == 0 {
		return notQuestion, 0
	}
	s.proxyCtr.arpAnswered.Add(1)
	return answered, n
}

// learnFromWire learns bindings from ARP and NA frames decapsulated from a
// VTEP. It never answers: questions from afar are the remote proxy's.
func (s *Switch) learnFromWire(vni uint32, frame []byte, c *frameClass) {
	switch c.EtherType {
	case 0x0806:
		if req, _, ok := parseARP(frame, c); ok && !req.Probe {
			s.fdb.BindIP(fdb.Key{VNI: vni, MAC: req.SenderMAC}, req.SenderIP)
		}
	case 0x86dd:
		if ndType(frame, c) == 136 {
			s.learnNA(vni, frame, c)
		}
	}
}

// learnNA learns the binding a neighbour advertisement announces. Two kinds
// are left alone (RFC 4861 section 7.2.5): a router's (the proxy answers
// with R=0, which would drop the router from hosts' default-router lists;
// so routers answer for themselves), and one with Override clear that
// disagrees with a binding already known.
func (s *Switch) learnNA(vni uint32, frame []byte, c *frameClass) {
	na, ok := parseNA(frame, c)
	if !ok || !na.HasTargetLLA || na.Router {
		return
	}
	if !na.Override {
		if cur, ok := s.fdb.LookupIP(fdb.IPKey{VNI: vni, IP: na.Target}); ok && cur != na.TargetLLA {
			return
		}
	}
	s.fdb.BindIP(fdb.Key{VNI: vni, MAC: na.TargetLLA}, na.Target)
}

// AnnounceIP tells the local ports of vni that ip is now at mac: a
// gratuitous ARP (IPv4) or an unsolicited neighbour advertisement (IPv6)
// on every port of the VNI except the one mac is on. Hosts that cache the
// old binding update it at once instead of after their cache times out.
// The switch calls it when the FDB says a binding moved to a different MAC
// (ipMoved), and the node after a restart.
func (s *Switch) AnnounceIP(vni uint32, ip netip.Addr, mac fdb.MAC) {
	// Room for either layout's header in front: a zero virtio-net header
	// asks nothing of the kernel.
	const off = offload.VirtioNetHdrLen
	buf := make([]byte, off+max(naLen, ethMinFrameLen))
	var n int
	if ip.Unmap().Is4() {
		n = buildGratuitousARP(buf[off:], mac, ip)
	} else {
		n = buildUnsolicitedNA(buf[off:], mac, ip, false)
	}
	if n == 0 {
		return
	}
	loc, _ := s.fdb.Lookup(fdb.Key{VNI: vni, MAC: mac})
	ports := s.ports.Load()
	pkt := [][]byte{buf[off-ports.lay.frameOff : off+n]}
	for _, p := range ports.byVNI[vni] {
		if loc.Port == p.id {
			continue
		}
		if w, _ := p.dev.Write(pkt, ports.lay.ioOff); w == 1 {
			p.traffic.tx(1, n)
			s.proxyCtr.gratuitous.Add(1)
		}
	}
}

// maxSourceIPs bounds how many addresses source learning binds to one MAC.
// A host has one or two; a router forwarding others' packets under its
// own MAC would otherwise bind every address it routes.
const maxSourceIPs = 4

// learnSourceIP binds the source address of an IPv4 or IPv6 frame from a
// local port to its source MAC, if the address is bound to no MAC yet and
// the MAC has fewer than maxSourceIPs: a host that never sends ARP or NA
// (static neighbour entries) still gets its address known and announced.
// An address bound already is left to ARP, ND and gossip. Known addresses
// cost one read-locked lookup and no allocation.
func (s *Switch) learnSourceIP(vni uint32, frame []byte, c *frameClass) {
	var ip netip.Addr
	l3 := frame[c.L2Len:]
	switch {
	case c.EtherType == 0x0800 && len(l3) >= 20 && l3[0]>>4 == 4:
		ip = netip.AddrFrom4([4]byte(l3[12:16]))
	case c.EtherType == 0x86dd && len(l3) >= 40 && l3[0]>>4 == 6:
		ip = netip.AddrFrom16([16]byte(l3[8:24]))
	default:
		return
	}
	if !ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() {
		return
	}
	if _, ok := s.fdb.LookupIP(fdb.IPKey{VNI: vni, IP: ip}); ok {
		return
	}
	k := fdb.Key{VNI: vni, MAC: c.Src}
	if s.fdb.NumIPs(k) >= maxSourceIPs {
		return
	}
	s.fdb.BindIP(k, ip)
}
