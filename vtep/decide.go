package vtep

// This file holds the forwarding decisions of the TAP -> wire path as small
// functions: admission (after classification: MTU, port security), where
// the FDB places a destination, and the flood policy. sendBatch (send.go) calls
// them for every frame and Trace (trace.go) for one frame in a dry run, so
// a trace shows what the data path does, not a re-implementation of it.
// None of them allocates, and none changes state: the data path counts and
// learns around them.

import (
	"net/netip"

	"github.com/ovlsw/ovlsw/fdb"
)

// admit checks a frame read from port p, which classify has described in
// c: that it fits the port's MTU (oversize: it filled its read buffer, or
// it is a TSO super-frame whose segments would not fit, superTooBig;
// super: a TSO super-frame, larger than the MTU by design) and comes from
// the port's own MAC on a secure port, and never from a router MAC
// (routing.go). It returns the drop reason when it does not. It is small
// enough to be inlined into the data path.
func (p *port) admit(frame []byte, c *frameClass, oversize, super bool) (DropReason, bool) {
	if oversize || (!super && !fitsMTU(frame, c, p.mtu)) {
		return dropMTU, false
	}
	if p.secure && c.Src != p.mac || IsRouterMAC(c.Src) {
		return dropPortSecurity, false
	}
	return 0, true
}

// destKind says where the FDB places a frame's destination.
type destKind uint8

const (
	destFlood   destKind = iota // broadcast, multicast, unknown, or a stale local entry
	destRemote                  // behind a remote VTEP
	destLocal                   // on another local port
	destHairpin                 // on the port the frame came from: dropped
)

// lookupDst looks dst up in vni of table t; a broadcast or multicast
// destination has no entry.
func lookupDst(t *fdb.Table, vni uint32, dst fdb.MAC) (loc fdb.Location, found bool) {
	if dst[0]&1 == 0 { // not multicast (fdb.MAC.IsMulticast, spelled out to stay within the inliner's budget)
		loc, found = t.Lookup(fdb.Key{VNI: vni, MAC: dst})
	}
	return loc, found
}

// place says where a frame from port p goes given its destination's
// entry (loc, if found): to the entry's VTEP, to another local port (in
// ports), nowhere (the port it came from, unless routed: a routed frame
// may go back out its port), or flooded.
func (p *port) place(loc fdb.Location, found, routed bool, ports *portSet) (destKind, *port) {
	switch {
	case !found:
		return destFlood, nil
	case !loc.IsLocal():
		return destRemote, nil
	case loc.Port == p.id && !routed:
		return destHairpin, nil
	}
	if dp := ports.byID[loc.Port]; dp != nil {
		return destLocal, dp
	}
	return destFlood, nil // a stale local entry: treat as unknown
}

// peerAt returns the peer at vtep, or orphan (its address set) for a VTEP
// that is not a peer: its frames still go, counted apart.
func (ps *peerSet) peerAt(vtep netip.AddrPort, orphan *peer) *peer {
	if to := ps.byAddr[vtep.Addr()]; to != nil && to.addr == vtep {
		return to
	}
	orphan.addr = vtep
	return orphan
}

// floodAction is what policy pol does with a frame the FDB cannot place,
// given what the proxy made of it (q). Multicast other than ARP and ND
// always floods.
func floodAction(pol FloodPolicy, c *frameClass, q question) FloodAction {
	switch {
	case q == unknownQuestion, c.EtherType == 0x0806:
		return pol.UnknownARP
	case c.Dst == fdb.Broadcast:
		return pol.Broadcast
	case !c.Dst.IsMulticast():
		return pol.UnknownUnicast
	}
	return Flood
}
