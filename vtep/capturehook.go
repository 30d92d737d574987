package vtep

// This file holds the switch's side of packet capture (vtep/capture): the
// set of running sessions, read once per batch through an atomic pointer
// (nil while nothing is captured: the data path's one branch), and the
// hooks that offer frames to them. Frames read from a port are reserved
// before the switch decides (a proxy answer overwrites the request in
// place) and committed with the drop reason once it has; frames written
// to a port or sent to a peer are captured as they go; datagrams from a
// peer are captured with the reason the receive path would drop them for.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ovlsw/ovlsw/vtep/capture"
)

// maxCaptures bounds the sessions that run at once: each costs a copy of
// every frame it matches.
const maxCaptures = 4

// captureSet is the running sessions, copy-on-write under Switch.mu.
type captureSet struct {
	sessions []*capture.Session
}

// StartCapture starts capturing the frames f selects into a session of
// slots frames of up to snap bytes each (0: capture's defaults). Close the
// session to stop.
func (s *Switch) StartCapture(f capture.Filter, slots, snap int) (*capture.Session, error) {
	set := 0
	for _, b := range []bool{f.Port != 0, f.VNI != 0, f.Peer.IsValid()} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("vtep: capture: give one of a port, a VNI or a peer")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Port != 0 && s.ports.Load().byID[f.Port] == nil {
		return nil, fmt.Errorf("vtep: capture: no port %d", f.Port)
	}
	var old []*capture.Session
	if cs := s.captures.Load(); cs != nil {
		old = cs.sessions
	}
	if len(old) >= maxCaptures {
		return nil, fmt.Errorf("vtep: capture: %d captures already run; stop one first", maxCaptures)
	}
	var sess *capture.Session
	sess = capture.New(f, slots, snap, func() { s.stopCapture(sess) })
	s.captures.Store(&captureSet{sessions: append(slices.Clip(old), sess)})
	return sess, nil
}

func (s *Switch) stopCapture(sess *capture.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.captures.Load()
	if cs == nil {
		return
	}
	rest := slices.DeleteFunc(slices.Clone(cs.sessions), func(x *capture.Session) bool { return x == sess })
	if len(rest) == 0 {
		s.captures.Store(nil)
		return
	}
	s.captures.Store(&captureSet{sessions: rest})
}

// PortID returns the ID of the port named name.
func (s *Switch) PortID(name string) (int, bool) {
	for id, p := range s.ports.Load().byID {
		if p.name == name {
			return id, true
		}
	}
	return 0, false
}

// atPort returns cs if one of its sessions captures at port p, else nil:
// a batch read from a port nobody captures pays nothing per frame.
func (cs *captureSet) atPort(p *port) *captureSet {
	if cs == nil {
		return nil
	}
	for _, sess := range cs.sessions {
		if sess.MatchPort(p.id, p.vni) {
			return cs
		}
	}
	return nil
}

// atPeers returns cs if one of its sessions captures at peers (a peer's
// or a VNI's), else nil: with captures at ports only, the receive path
// pays nothing per datagram.
func (cs *captureSet) atPeers() *captureSet {
	if cs == nil {
		return nil
	}
	for _, sess := range cs.sessions {
		if f := sess.Filter(); f.Peer.IsValid() || f.VNI != 0 {
			return cs
		}
	}
	return nil
}

// captureScratch is a port reader's capture state for the frame in hand:
// the slots it reserved, and why the frame was dropped, if it was.
type captureScratch struct {
	slots [maxCaptures]struct {
		sess *capture.Session
		i    int
	}
	n       int
	why     DropReason
	dropped bool
}

// drop counts a drop of the frame in hand and remembers the reason for
// its capture.
func (sc *captureScratch) drop(d *dropCounters, r DropReason) {
	d.add(r, 1)
	sc.why, sc.dropped = r, true
}

// next commits the previous frame's slots and reserves slots for frame,
// read from port p, in the sessions that match it.
func (sc *captureScratch) next(cs *captureSet, p *port, frame []byte) {
	sc.flush()
	for _, sess := range cs.sessions {
		if sess.MatchPort(p.id, p.vni) {
			sc.slots[sc.n].sess = sess
			sc.slots[sc.n].i = sess.Reserve(capture.In, p.id, p.vni, netip.AddrPort{}, frame)
			sc.n++
		}
	}
}

// flush commits the slots reserved for the frame in hand.
func (sc *captureScratch) flush() {
	reason := ""
	if sc.dropped {
		reason = sc.why.String()
	}
	for i := range sc.n {
		sc.slots[i].sess.Commit(sc.slots[i].i, reason)
		sc.slots[i].sess = nil
	}
	sc.n, sc.dropped = 0, false
}

// portOut captures frames written to port p (written: how many of bufs
// went; the rest are write errors). Each frame sits at off in its buffer.
func (cs *captureSet) portOut(p *port, bufs [][]byte, written, off int) {
	for _, sess := range cs.sessions {
		if !sess.MatchPort(p.id, p.vni) {
			continue
		}
		for i, b := range bufs {
			drop := ""
			if i >= written {
				drop = dropWriteError.String()
			}
			sess.Capture(capture.Out, p.id, p.vni, netip.AddrPort{}, b[off:], drop)
		}
	}
}

// peerOut captures the inner frames of the VXLAN datagrams in m, sent
// (or not: a write error) to a peer.
func (cs *captureSet) peerOut(m *Message) {
	drop := ""
	if !m.Sent {
		drop = dropWriteError.String()
	}
	b := m.Buf[:m.N]
	seg := m.Segment
	if seg <= 0 || seg > len(b) {
		seg = len(b)
	}
	for len(b) > 0 {
		d := b[:min(seg, len(b))]
		b = b[len(d):]
		vni, frame, _, ok := decap(d)
		if !ok {
			continue
		}
		for _, sess := range cs.sessions {
			if sess.MatchPeer(m.Addr.Addr(), vni) {
				sess.Capture(capture.Out, 0, vni, m.Addr, frame, drop)
			}
		}
	}
}

// peerIn captures the inner frame of datagram d from addr (from: its
// peer, nil for a stranger), with the reason the receive path drops it
// for, if it does.
func (cs *captureSet) peerIn(d []byte, addr netip.AddrPort, from *peer, ports *portSet) {
	vni, frame, reason, ok := decap(d)
	drop := ""
	switch {
	case !ok:
		drop, frame = reason.String(), d
	case len(ports.byVNI[vni]) == 0:
		drop = dropUnknownVNI.String()
	case from == nil || !from.accepts(vni):
		drop = dropNotMember.String()
	}
	for _, sess := range cs.sessions {
		if sess.MatchPeer(addr.Addr(), vni) {
			sess.Capture(capture.In, 0, vni, addr, frame, drop)
		}
	}
}
