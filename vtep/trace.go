package vtep

// This file holds Trace: one frame walked through the TAP -> wire path's
// decisions (decide.go, the proxy's proxyDecide, routing's routeDecide) in
// a dry run, each step recorded. Nothing is learned, counted, answered or
// sent, and no flood token is taken. The name service (vtep/dns) is not
// traced: its verdict cannot be had without answering.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/route"
)

// SourcePorter is an optional capability of a Conn: the outer UDP source
// port a message with a given Flow leaves from (one of the source-port
// pool's sockets, or the bound one). Trace asks it; the data path never
// does. It may make a system call.
type SourcePorter interface {
	SourcePort(flow uint32) uint16
}

// TraceStep is one decision of a trace.
type TraceStep struct {
	Stage  string `json:"stage"`  // admit, port_security, proxy, route, fdb, flood_policy, flood_rate, egress
	Result string `json:"result"` // what was decided, in a word or two
	Detail string `json:"detail,omitempty"`
}

// TraceFDB is the FDB entry a trace found for the destination.
type TraceFDB struct {
	Origin string         `json:"origin"`
	Port   string         `json:"port,omitempty"`
	VTEP   netip.AddrPort `json:"vtep,omitzero"`
	Node   string         `json:"node,omitempty"` // owner, for gossip entries
	Seq    uint64         `json:"seq"`
	Age    float64        `json:"age_seconds"`
	Dup    bool           `json:"duplicate,omitempty"`
}

// TraceOut is one copy of the frame leaving the switch: to a local port,
// or to a remote VTEP from an outer UDP source port.
type TraceOut struct {
	Port       string         `json:"port,omitempty"`
	VTEP       netip.AddrPort `json:"vtep,omitzero"`
	SourcePort uint16         `json:"source_port,omitempty"`
	Group      bool           `json:"group,omitempty"` // the VNI's multicast group
}

// Trace is what the switch would do with one frame read from a port.
type Trace struct {
	Port  string      `json:"port"`
	VNI   uint32      `json:"vni"`
	Steps []TraceStep `json:"steps"`
	// Verdict is answered (the proxy replies on the port), local, remote,
	// flood or drop.
	Verdict string     `json:"verdict"`
	Drop    string     `json:"drop,omitempty"` // the drop reason, as ovlsw status counts it
	Answer  string     `json:"answer,omitempty"`
	FDB     *TraceFDB  `json:"fdb,omitempty"`
	Flow    uint32     `json:"flow_hash,omitempty"`
	Out     []TraceOut `json:"out,omitempty"`
}

func (t *Trace) step(stage, result, format string, args ...any) {
	t.Steps = append(t.Steps, TraceStep{Stage: stage, Result: result, Detail: fmt.Sprintf(format, args...)})
}

func (t *Trace) drop(r DropReason) Trace {
	t.Verdict, t.Drop = "drop", r.String()
	return *t
}

// Trace walks frame, as port portID would send it, through the forwarding
// decisions in a dry run. The frame is not modified.
func (s *Switch) Trace(portID int, frame []byte) (Trace, error) {
	ports, peers := s.ports.Load(), s.peers.Load()
	p := ports.byID[portID]
	if p == nil {
		return Trace{}, fmt.Errorf("vtep: no port %d", portID)
	}
	frame = slices.Clone(frame) // decisions read only; a private copy all the same
	t := Trace{Port: p.name, VNI: p.vni}
	var c frameClass
	reason, ok := classify(frame, &c)
	if ok {
		reason, ok = p.admit(frame, &c, len(frame) > maxFrameLen(p.mtu), false)
	}
	if !ok {
		if reason == dropPortSecurity {
			t.step("port_security", "drop", "source MAC %v is not the port's %v", c.Src, p.mac)
		} else {
			t.step("admit", "drop", "%v (port MTU %d)", reason, p.mtu)
		}
		return t.drop(reason), nil
	}
	t.step("admit", "ok", "%v -> %v, ethertype %#04x, %d bytes, port MTU %d", c.Src, c.Dst, c.EtherType, len(frame), p.mtu)
	if p.secure {
		t.step("port_security", "ok", "source MAC is the port's %v", p.mac)
	} else {
		t.step("port_security", "off", "the port may send from any MAC")
	}
	q := notQuestion
	if c.EtherType == 0x0806 || c.EtherType == 0x86dd {
		var v proxyVerdict
		s.proxyDecide(p, frame, &c, false, &v)
		q = v.q
		switch v.q {
		case answered:
			t.step("proxy", "answer", "the FDB vouches for %v at %v: answered on the port, nothing goes further", v.target, v.mac)
			t.Verdict, t.Answer = "answered", v.mac.String()
			t.Out = []TraceOut{{Port: p.name}}
			return t, nil
		case spoofed:
			t.step("proxy", "drop", "the port claims an address that is not its own")
			return t.drop(dropPortSecurity), nil
		case unknownQuestion:
			t.step("proxy", "unknown", "no vouched binding for %v: a question for the flood policy", v.target)
		default:
			t.step("proxy", "pass", "not a question the proxy answers")
		}
	}
	if c.Dst == RouterMAC(p.vni) { // routing.go: the same decision route acts on
		var pk route.Packet
		v, mac, kind := s.routeDecide(p, frame, &c, nil, &pk)
		switch v {
		case routeNoRoute:
			t.step("route", "drop", "to the router MAC, but not a packet a router forwards")
			return t.drop(dropNoRoute), nil
		case routeGateway:
			t.step("route", "gateway", "%v is the network's gateway address: an echo request is answered, anything else dropped (no_route)", pk.Dst)
			t.Verdict = "answered"
			t.Out = []TraceOut{{Port: p.name}}
			return t, nil
		case routeTTL:
			t.step("route", "drop", "TTL %d: %v sent back to the port", pk.TTL, kind)
			return t.drop(dropTTL), nil
		case routeUnreachable:
			t.step("route", "drop", "no endpoint holds %v: %v sent back to the port", pk.Dst, kind)
			return t.drop(dropNoRoute), nil
		}
		rmac := RouterMAC(p.vni)
		route.Forward(frame, &pk, rmac, mac) // the private copy, as route rewrites the frame
		c.Dst, c.Src = mac, rmac
		t.step("route", "forward", "routed to %v at %v, TTL %d -> %d", pk.Dst, mac, pk.TTL, pk.TTL-1)
	}
	loc, found := lookupDst(s.fdb, p.vni, c.Dst)
	kind, dp := p.place(loc, found, IsRouterMAC(c.Src), ports)
	if e, ok := s.fdb.Get(fdb.Key{VNI: p.vni, MAC: c.Dst}); ok && !c.Dst.IsMulticast() {
		t.FDB = &TraceFDB{Origin: e.Origin.String(), Node: e.Node, Seq: e.Seq, Dup: e.Duplicate,
			Age: s.fdb.Now().Sub(e.Seen).Round(time.Millisecond).Seconds()}
		if e.IsLocal() {
			t.FDB.Port = s.PortName(e.Port)
		} else {
			t.FDB.VTEP = e.VTEP
		}
	}
	switch kind {
	case destHairpin:
		t.step("fdb", "drop", "%v is on the port the frame came from", c.Dst)
		return t.drop(dropHairpin), nil
	case destLocal:
		t.step("fdb", "local", "%v is on local port %s (%s)", c.Dst, dp.name, t.FDB.describe())
		t.Verdict = "local"
		t.Out = []TraceOut{{Port: dp.name}}
		return t, nil
	case destRemote:
		t.step("fdb", "remote", "%v is behind VTEP %v (%s)", c.Dst, loc.VTEP, t.FDB.describe())
		t.Verdict = "remote"
		t.Flow = flowHash(frame, &c)
		to := peers.peerAt(loc.VTEP, &peer{})
		t.Out = []TraceOut{s.traceOut(to, t.Flow)}
		if sealed, ok := s.traceSeal(&t, p.vni, []*peer{to}); !ok {
			return t.drop(dropNoKey), nil
		} else if sealed {
			t.step("egress", "encap", "VXLAN VNI %d sealed to %v from source port %d (flow hash %#08x)", p.vni, loc.VTEP, t.Out[0].SourcePort, t.Flow)
			return t, nil
		}
		t.step("egress", "encap", "VXLAN VNI %d to %v from source port %d (flow hash %#08x)", p.vni, loc.VTEP, t.Out[0].SourcePort, t.Flow)
		return t, nil
	}
	switch {
	case c.Dst.IsMulticast():
		t.step("fdb", "flood", "%v is a broadcast or multicast address", c.Dst)
	case t.FDB != nil:
		t.step("fdb", "flood", "stale entry for %v (its port is gone): unknown unicast", c.Dst)
	default:
		t.step("fdb", "flood", "no entry for %v in VNI %d: unknown unicast", c.Dst, p.vni)
	}
	pol := s.policy(p.vni)
	if act := floodAction(pol, &c, q); act == Drop {
		t.step("flood_policy", "drop", "policy %v drops it", pol)
		return t.drop(dropPolicy), nil
	}
	t.step("flood_policy", "flood", "policy %v floods it", pol)
	if p.floodRate > 0 {
		p.floodMu.Lock()
		tokens := p.floodBudgetLocked(s.fdb.Now().UnixNano())
		p.floodMu.Unlock()
		if tokens < 1 {
			t.step("flood_rate", "drop", "the port's budget of %d floods a second is spent", p.floodRate)
			return t.drop(dropFloodRate), nil
		}
		t.step("flood_rate", "ok", "%.0f of %d floods a second left", tokens, p.floodRate)
	}
	t.Verdict = "flood"
	for _, q := range ports.byVNI[p.vni] {
		if q != p {
			t.Out = append(t.Out, TraceOut{Port: q.name})
		}
	}
	t.Flow = flowHash(frame, &c)
	s.traceSeal(&t, p.vni, peers.floodList(p.vni))
	_, group := peers.flood[p.vni]
	for _, to := range peers.floodList(p.vni) {
		o := s.traceOut(to, t.Flow)
		o.Group = group
		t.Out = append(t.Out, o)
	}
	t.step("egress", "flood", "%d local ports and %d VTEPs (head-end replication%s)", len(t.Out)-len(peers.floodList(p.vni)), len(peers.floodList(p.vni)), map[bool]string{true: ", to the VNI's group", false: ""}[group])
	return t, nil
}

// traceSeal adds the encryption step for copies of a VNI's frame to tos:
// whether they are sealed (an encrypted network), and which VTEPs have no
// key, to which nothing is sent (no_key). ok is false if none of tos can
// take the frame.
func (s *Switch) traceSeal(t *Trace, vni uint32, tos []*peer) (sealed, ok bool) {
	sb, enc := s.encrypted(vni)
	if !enc {
		t.step("encryption", "plain", "VNI %d is not an encrypted network: plain VXLAN", vni)
		return false, true
	}
	var without []string
	for _, to := range tos {
		if sb.keys == nil || to.seal == nil || !to.seal.HasKey() {
			without = append(without, to.addr.String())
		}
	}
	switch {
	case len(without) == 0:
		t.step("encryption", "sealed", "VNI %d is encrypted: each datagram sealed with the peer's data key (AEAD)", vni)
	case len(without) == len(tos):
		t.step("encryption", "drop", "VNI %d is encrypted and there is no data key for %s: nothing is sent in plaintext", vni, strings.Join(without, ", "))
		return true, false
	default:
		t.step("encryption", "sealed", "VNI %d is encrypted: sealed per peer; no data key yet for %s, which get nothing", vni, strings.Join(without, ", "))
	}
	return true, true
}

// traceOut describes a copy sent to peer to from the socket flow picks.
func (s *Switch) traceOut(to *peer, flow uint32) TraceOut {
	o := TraceOut{VTEP: to.addr, SourcePort: s.conn.LocalAddr().Port()}
	if sp, ok := s.conn.(SourcePorter); ok {
		o.SourcePort = sp.SourcePort(flow)
	}
	return o
}

// describe summarises an entry for a trace step.
func (e *TraceFDB) describe() string {
	if e == nil {
		return "no entry"
	}
	s := fmt.Sprintf("origin %s, seq %d, age %.1fs", e.Origin, e.Seq, e.Age)
	if e.Node != "" {
		s += ", owner " + e.Node
	}
	if e.Dup {
		s += ", flagged duplicate"
	}
	return s
}
