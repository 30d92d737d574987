package vtep

// This file holds multicast mode: a VNI whose broadcast, multicast and
// unknown unicast go to an underlay multicast group (SetGroup), one
// datagram however many VTEPs there are, instead of a copy to each member
// VTEP (head-end replication, the default). It is the Linux vxlan device's
// group mode (`ip link add ... type vxlan id 42 group 239.1.1.1`), and
// interoperates with it: the VTEPs on the group need not be gossip members
// or --peers. The conn joins the group and receives what is sent there
// (ConnConfig.Group at Listen, or later through JoinGroup, which starts a
// receive goroutine for the group's socket); the switch only picks the
// destination and decides whom to accept.
//
// Design notes:
//   - A VNI in group mode accepts datagrams from any sender, whether it
//     sent them to the group or (having learned one of our MACs from the
//     group traffic, as the kernel's vxlan does) by unicast to our
//     address: the group is an open door on the underlay segment, and
//     multicast mode trusts that segment (README, trust model). Other
//     VNIs keep the peer and member check.
//   - A sender that is neither a peer nor a member is a "stranger": one
//     peer value per receive goroutine stands in for it, its address set
//     per message, so accepting it allocates nothing. Its inner source
//     MACs are learned against its address and the group's port (the
//     VXLAN port every VTEP of the segment listens on; the sender's own
//     source port is a flow hash), so unicast to them goes straight to
//     it. Its traffic counts in the group's row of the peer counters.
//   - The group stands in the peer set as a peer of its VNI (so status
//     shows what was sent to it) but is no sender: nothing comes from a
//     multicast address.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// GroupJoiner is a Conn that joins multicast groups after Listen, for
// networks created with a group (Switch.JoinGroup finds it by type
// assertion). Its methods are safe for concurrent use and do not block.
type GroupJoiner interface {
	// JoinGroup has the conn receive what is sent to group at its port,
	// joined on interface ifindex (0: the kernel picks by route), and
	// send to groups out of ifindex with TTL (IPv6: hop limit) ttl (0:
	// 1). It returns a reader of the group's datagrams, to be read by one
	// goroutine, or nil if the conn already receives the group; each call
	// that succeeds takes a reference that LeaveGroup gives back.
	JoinGroup(group netip.Addr, ifindex, ttl int) (BatchReader, error)
	// LeaveGroup gives back a reference JoinGroup took. The last one
	// closes the group's reader: its ReadBatch returns an error that
	// errors.Is net.ErrClosed. The group of ConnConfig.Group is never
	// left.
	LeaveGroup(group netip.Addr) error
}

// JoinGroup has the conn receive group (GroupJoiner.JoinGroup) and, if
// that opens a new reader, starts a goroutine reading it, stopped by
// LeaveGroup or Close. It does not put a VNI in multicast mode: SetGroup
// does.
func (s *Switch) JoinGroup(group netip.Addr, ifindex, ttl int) error {
	gj, ok := s.conn.(GroupJoiner)
	if !ok {
		return fmt.Errorf("vtep: group %v: the UDP endpoint cannot join multicast groups", group)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() {
		return errors.New("vtep: switch closed")
	}
	r, err := gj.JoinGroup(group, ifindex, ttl)
	if err != nil {
		return err
	}
	if r != nil {
		s.wg.Add(1) // under mu, before Close can close closing and wait
		go s.receiveLoop(r)
	}
	return nil
}

// LeaveGroup gives back what JoinGroup took (GroupJoiner.LeaveGroup); the
// last leave stops the group's receive goroutine.
func (s *Switch) LeaveGroup(group netip.Addr) error {
	gj, ok := s.conn.(GroupJoiner)
	if !ok {
		return fmt.Errorf("vtep: group %v: the UDP endpoint cannot join multicast groups", group)
	}
	return gj.LeaveGroup(group)
}

// SetGroup puts vni in multicast mode with group, an IPv4 or IPv6
// multicast address and the VXLAN port (the conn must have joined it:
// ConnConfig.Group): the VNI's floods go to the group as one datagram, and
// its datagrams are accepted from any sender. A zero group puts the VNI
// back to head-end replication. It does not block.
func (s *Switch) SetGroup(vni uint32, group netip.AddrPort) error {
	if group.IsValid() && (!group.Addr().IsMulticast() || group.Port() == 0) {
		return fmt.Errorf("vtep: group %v of VNI %d is not a multicast address and port", group, vni)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !group.IsValid() {
		delete(s.groups, vni)
	} else {
		if s.groups == nil {
			s.groups = make(map[uint32]netip.AddrPort)
		}
		s.groups[vni] = group
	}
	s.rebuildPeersLocked()
	return nil
}

// addGroupsLocked adds the groups to a peer snapshot being built: each as
// a peer of its VNI and that VNI's flood list, and the VNIs in group mode
// as open to every sender. Called with s.mu held.
func (s *Switch) addGroupsLocked(next *peerSet) {
	if len(s.groups) == 0 {
		return
	}
	next.flood = make(map[uint32][]*peer, len(s.groups))
	for v, g := range s.groups {
		p := next.byAddr[g.Addr()]
		if p == nil {
			p = &peer{addr: g, traffic: s.countersLocked(g.Addr())}
			next.byAddr[g.Addr()] = p
		}
		if !p.serves(v) {
			p.vnis = append(p.vnis, v)
		}
		next.flood[v] = []*peer{p}
		next.open = append(next.open, v)
	}
	slices.Sort(next.open)
	// Strangers count against the group of the lowest VNI in group mode.
	first := s.groups[next.open[0]]
	next.stranger = peer{addr: netip.AddrPortFrom(netip.Addr{}, first.Port()), vnis: next.open,
		traffic: s.countersLocked(first.Addr())}
	for _, p := range next.byAddr {
		p.open = next.open
	}
}

// floodList returns the VTEPs a flood of vni goes to: its group in
// multicast mode, else each of its peers.
func (ps *peerSet) floodList(vni uint32) []*peer {
	if l, ok := ps.flood[vni]; ok {
		return l
	}
	return ps.byVNI[vni]
}

// stranger returns the peer standing in for a sender at addr that is
// neither a peer nor a member (nil if no VNI is in group mode, so none is
// accepted). It reuses rs's storage and forgets the batch's memo when the
// stranger changes.
func (rs *recvScratch) strangerAt(addr netip.Addr, ps *peerSet) *peer {
	if len(ps.open) == 0 {
		return nil
	}
	st := &rs.stranger
	at := netip.AddrPortFrom(addr, ps.stranger.addr.Port())
	if st.addr != at {
		rs.memo.valid = false // the memo knows senders by pointer
	}
	*st = ps.stranger
	st.addr = at
	return st
}
