package vtep

// This file holds the peer registry: which remote VTEPs the switch floods
// a VNI's broadcast and unknown traffic to, and accepts the VNI's frames
// from. The switch owns the whole set: static peers (Config.StaticPeers)
// are peers of every VNI it serves (Serve), the control plane adds the
// member VTEPs of each VNI (SetPeers), and the VTEPs of every alive member
// of the cluster (SetMembers) may send frames of any VNI with local ports.
// The data plane reads the set as one copy-on-write snapshot, without
// locks.
//
// Design notes:
//   - The merge of static and gossip peers used to live in the daemon,
//     which called SetPeers with the merged list; with it here gossip can
//     talk to the switch directly, and the daemon only says which VNIs it
//     serves.
//   - A node that has just joined sends its first frames (an ARP request)
//     before its VNI membership has reached the receiver: it joins with no
//     VNIs and advertises its networks a moment later. Accepting only from
//     a VNI's peers dropped those frames as not_member and cost the sender
//     a 1 s ARP retry (defect 3 of issue 13). Frames of a VNI with local
//     ports are therefore also accepted from any alive member's VTEP: the
//     cluster vouches for its members, and an address that is neither a
//     peer nor a member is still refused. Floods still go to the VNI's
//     peers only.

import (
	"net/netip"
	"slices"

	"github.com/ovlsw/ovlsw/vtep/seal"
)

// peer is a remote VTEP as seen in one snapshot: a peer of some VNIs, an
// alive member of the cluster, or both. Counters survive snapshots.
type peer struct {
	addr    netip.AddrPort
	vnis    []uint32 // sorted; empty for a member that is no VNI's peer
	member  bool     // an alive gossip member: may send frames of any VNI
	open    []uint32 // the VNIs in multicast mode (group.go): anyone may send their frames
	traffic *trafficCounters
	seal    *seal.Peer // sealing state (sealing.go); nil without keys
}

func (p *peer) serves(vni uint32) bool { return slices.Contains(p.vnis, vni) }

// accepts reports whether frames of vni (a VNI with local ports) are taken
// from p: it is a peer of the VNI or an alive member, or the VNI is in
// multicast mode.
func (p *peer) accepts(vni uint32) bool {
	return p.member || p.serves(vni) || slices.Contains(p.open, vni)
}

// peerSet is a snapshot of the peers and members, by underlay address (the
// key frames from the wire are looked up by) and of the peers by VNI (the
// flood lists, in order: static peers first, then the control plane's).
type peerSet struct {
	byAddr map[netip.Addr]*peer
	byVNI  map[uint32][]*peer

	// Multicast mode (group.go): the flood list of each VNI in it (its
	// group), those VNIs sorted, and the template of a stranger.
	flood    map[uint32][]*peer
	open     []uint32
	stranger peer
}

// SetPeers sets the member VTEPs the control plane reports for vni (not
// this node's own): broadcast and unknown traffic of the VNI is replicated
// to each of them and to the static peers if the VNI is served, and only
// they and the alive members (SetMembers) may send the VNI's frames. An
// empty list means the VNI has no other members. It does not block: gossip
// calls it with its lock held.
func (s *Switch) SetPeers(vni uint32, vteps []netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(vteps) == 0 {
		delete(s.gossipPeers, vni)
	} else {
		s.gossipPeers[vni] = slices.Clone(vteps)
	}
	s.rebuildPeersLocked()
}

// SetMembers sets the VTEPs of every alive member of the cluster (not this
// node's own): each may send frames of any VNI that has local ports, even
// before its membership of the VNI is known here (SetPeers). Members are
// not flooded to, and Stats.Peers does not list one that is no VNI's peer;
// its traffic still counts in its peer counters, kept if it becomes one. It
// does not block: gossip calls it with its lock held.
func (s *Switch) SetMembers(vteps []netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members = slices.Clone(vteps)
	s.rebuildPeersLocked()
}

// Serve replaces the set of VNIs this node serves (its networks, whether
// or not they have ports yet): the static peers are peers of exactly these.
func (s *Switch) Serve(vnis []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served = slices.Compact(slices.Sorted(slices.Values(vnis)))
	s.rebuildPeersLocked()
}

// peerListsLocked returns each VNI's peers as the snapshot lists them: the
// static peers if the VNI is served, then the control plane's not already
// listed, without repeats.
func (s *Switch) peerListsLocked() map[uint32][]netip.AddrPort {
	lists := make(map[uint32][]netip.AddrPort, len(s.served)+len(s.gossipPeers))
	add := func(vni uint32, as []netip.AddrPort) {
		l := lists[vni]
		for _, a := range as {
			if !slices.Contains(l, a) {
				l = append(l, a)
			}
		}
		if len(l) > 0 {
			lists[vni] = l
		}
	}
	if len(s.staticPeers) > 0 {
		for _, v := range s.served {
			add(v, s.staticPeers)
		}
	}
	for v, as := range s.gossipPeers {
		add(v, as)
	}
	return lists
}

// rebuildPeersLocked publishes a new peer snapshot from the static peers,
// the served VNIs, the control plane's lists and the members. Called with
// s.mu held.
func (s *Switch) rebuildPeersLocked() {
	next := &peerSet{byAddr: map[netip.Addr]*peer{}, byVNI: map[uint32][]*peer{}}
	for v, as := range s.peerListsLocked() {
		for _, a := range as {
			p := next.byAddr[a.Addr()]
			if p == nil {
				p = &peer{addr: a, traffic: s.countersLocked(a.Addr()), seal: s.sealPeerLocked(a.Addr())}
				next.byAddr[a.Addr()] = p
			}
			if p.serves(v) {
				continue // the same address with another port: one peer
			}
			p.vnis = append(p.vnis, v)
			next.byVNI[v] = append(next.byVNI[v], p)
		}
	}
	for _, a := range s.members {
		p := next.byAddr[a.Addr()]
		if p == nil {
			p = &peer{addr: a, traffic: s.countersLocked(a.Addr()), seal: s.sealPeerLocked(a.Addr())}
			next.byAddr[a.Addr()] = p
		}
		p.member = true
	}
	s.addGroupsLocked(next)
	for _, p := range next.byAddr {
		slices.Sort(p.vnis)
	}
	s.peers.Store(next)
}

// countersLocked returns the counters of the peer at addr, made on first
// use and kept while the switch lives, so they survive the peer leaving and
// coming back. Called with s.mu held.
func (s *Switch) countersLocked(addr netip.Addr) *trafficCounters {
	c := s.counters[addr]
	if c == nil {
		c = new(trafficCounters)
		s.counters[addr] = c
	}
	return c
}
