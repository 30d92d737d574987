// memberlist's callbacks: the Delegate (metadata, broadcasts, push/pull
// state) and the EventDelegate (joins, updates, departures), and the
// per-VNI peer lists and the member VTEPs derived from membership.
//
// memberlist calls the event methods with its node lock held, so nothing
// called with Agent.mu held may call back into memberlist.

package gossip

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
)

// delegate is the Agent seen as memberlist's delegate, so that the
// callbacks are not part of the Agent's API.
type delegate Agent

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// broadcast is one message in the retransmit queue, named by (VNI, MAC),
// by leaving owner or by network, so that a newer one replaces it.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// NodeMeta returns our metadata, as New or SetVNIs encoded it.
func (d *delegate) NodeMeta(limit int) []byte {
	md := *d.meta.Load()
	if len(md) > limit {
		return nil // cannot happen: the VNI count is checked
	}
	return md
}

// NotifyMsg applies a received binding, leave or network message and
// rebroadcasts it if it was news.
func (d *delegate) NotifyMsg(b []byte) {
	a := (*Agent)(d)
	a.msgIn.Add(1)
	a.bytesIn.Add(uint64(len(b)))
	if len(b) >= 2 && b[0] == wireVersion && b[1] == typeNetwork {
		a.notifyNetwork(b)
		return
	}
	m, err := decodeMessage(b)
	if err != nil {
		a.malformed.Add(1)
		return
	}
	a.lock()
	defer a.unlock()
	if a.closed {
		return
	}
	if m.Leave {
		if a.leavingLocked(m.Owner, m.Rec.Gen) {
			a.queueNamed(leaveName(m.Owner), bytes.Clone(b))
		}
		return
	}
	if a.applyLocked(m.Owner, m.Rec) {
		a.queueNamed(keyName(m.Rec.Key), bytes.Clone(b))
	}
}

// notifyNetwork applies a network message.
func (a *Agent) notifyNetwork(b []byte) {
	r, err := decodeNetMessage(b)
	if err != nil {
		a.malformed.Add(1)
		return
	}
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed && a.applyNetLocked(r, now) {
		a.queueNamed(netName(r.Net.Name), bytes.Clone(b))
	}
}

// GetBroadcasts hands memberlist queued messages.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	a := (*Agent)(d)
	if a.dropOut.Load() {
		return nil
	}
	bs := a.queue.GetBroadcasts(overhead, limit)
	a.msgOut.Add(uint64(len(bs)))
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	a.bytesOut.Add(uint64(n))
	return bs
}

// LocalState returns this node's own bindings, complete at its current
// generation, and what it holds of every other live owner's, so that one
// push/pull with anyone repairs broadcasts missed from anyone; and every
// network record, tombstones included.
func (d *delegate) LocalState(join bool) []byte {
	a := (*Agent)(d)
	now := a.cfg.Now()
	a.lock()
	self := a.cfg.Name
	s := state{Sections: []section{a.sectionLocked(self, a.gen)}, Nets: a.netRecordsLocked(now)}
	total := len(s.Sections[0].Recs)
	for owner, keys := range a.byOwner {
		if owner == self || !a.liveLocked(owner) || len(keys) > MaxStateBindings ||
			total+len(keys) > MaxStateRecords || len(s.Sections) >= MaxSections {
			continue
		}
		total += len(keys)
		s.Sections = append(s.Sections, a.sectionLocked(owner, a.horizon[owner]))
	}
	a.unlock()
	a.statesOut.Add(1)
	return encodeState(&s)
}

func (a *Agent) sectionLocked(owner string, gen uint64) section {
	keys := a.byOwner[owner]
	sec := section{Owner: owner, Gen: gen, Recs: make([]record, 0, len(keys))}
	for k := range keys {
		sec.Recs = append(sec.Recs, recordOf(k, a.keys[k].cur))
	}
	return sec
}

// MergeRemoteState applies another node's state, section by section, then
// its network records.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	a := (*Agent)(d)
	a.statesIn.Add(1)
	if len(buf) == 0 {
		return
	}
	s, err := decodeState(buf)
	if err != nil {
		a.malformed.Add(1)
		return
	}
	a.lock()
	defer a.unlock()
	if a.closed {
		return
	}
	for _, sec := range s.Sections {
		if sec.Owner != a.cfg.Name { // we know our own bindings
			a.mergeSectionLocked(sec)
		}
	}
	now := a.cfg.Now()
	for i := range s.Nets {
		if r := &s.Nets[i]; a.applyNetLocked(*r, now) {
			a.queueNamed(netName(r.Net.Name), encodeNetMessage(r))
		}
	}
}

// mergeSectionLocked applies what a state says of one owner: the listed
// records like broadcasts; and, since the list is complete up to sec.Gen,
// the owner's bindings held here from no later than that but not listed
// are withdrawn. The owner's horizon, the generation up to which this node
// now holds its complete list, advances to sec.Gen.
func (a *Agent) mergeSectionLocked(sec section) {
	listed := make(map[fdb.Key]struct{}, len(sec.Recs))
	for _, rec := range sec.Recs {
		listed[rec.Key] = struct{}{}
		if a.applyLocked(sec.Owner, rec) {
			a.queueLocked(sec.Owner, rec)
		}
	}
	if sec.Gen == 0 {
		return
	}
	for k := range a.byOwner[sec.Owner] {
		c := a.keys[k].cur
		if _, ok := listed[k]; ok || c.gen > sec.Gen {
			continue
		}
		rec := record{Key: k, Withdrawn: true, Seq: c.seq, Gen: sec.Gen}
		if a.applyLocked(sec.Owner, rec) {
			a.queueLocked(sec.Owner, rec)
		}
	}
	if a.liveLocked(sec.Owner) && sec.Gen > a.horizon[sec.Owner] {
		a.horizon[sec.Owner] = sec.Gen
	}
}

// NotifyJoin records a member that joined or came back.
func (d *delegate) NotifyJoin(n *memberlist.Node) { (*Agent)(d).memberEvent(n, stateAlive) }

// NotifyUpdate records a member's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { (*Agent)(d).memberEvent(n, stateAlive) }

// NotifyLeave records a member that left or was declared dead: its
// bindings leave the FDB and its VTEP the peer lists. (memberlist does not
// say which: Node.State is stale here. A member that leaves on purpose
// broadcasts a leave message, before or after which this arrives.)
func (d *delegate) NotifyLeave(n *memberlist.Node) { (*Agent)(d).memberEvent(n, stateDead) }

// leavingLocked records owner's leave message and reports whether it was
// news.
func (a *Agent) leavingLocked(owner string, gen uint64) bool {
	m := a.members[owner]
	if m == nil || owner == a.cfg.Name || gen < m.meta.Epoch {
		a.stale.Add(1)
		return false
	}
	if m.leaving >= gen {
		return false
	}
	m.leaving = gen
	if m.state == stateDead {
		m.state = stateLeft
	}
	return true
}

func (a *Agent) memberEvent(n *memberlist.Node, st string) {
	if n.Name == a.cfg.Name {
		return
	}
	md, err := decodeMeta(n.Meta)
	if err != nil && st == stateAlive {
		a.malformed.Add(1)
	}
	a.lock()
	defer a.unlock()
	if a.closed {
		return // leaving or closed: the FDB and peers are no longer ours to change
	}
	now := a.cfg.Now()
	m := a.members[n.Name]
	if m == nil {
		m = &member{name: n.Name}
		a.members[n.Name] = m
	}
	ip, _ := netip.AddrFromSlice(n.Addr)
	m.addr = netip.AddrPortFrom(ip.Unmap(), n.Port)
	wasLive := m.state == stateAlive
	if err == nil {
		m.meta = md
	}
	if st == stateDead && m.leaving != 0 && m.leaving >= m.meta.Epoch {
		st = stateLeft
	}
	if m.state != st {
		m.state, m.since = st, now
		a.log.Info("member "+map[string]string{stateAlive: "joined", stateDead: "failed", stateLeft: "left"}[st],
			"member", n.Name, "addr", m.addr, "vtep", md.VTEP)
	}
	if err == nil {
		// Claims older than the member's process are from an earlier one.
		for k := range a.byOwner[n.Name] {
			if ks := a.keys[k]; ks.cur.gen < md.Epoch {
				a.setCurLocked(k, ks, nil, now)
			}
		}
	}
	if st != stateAlive {
		// Parked claims may expire before it returns: claim nothing.
		delete(a.horizon, n.Name)
	}
	if live := st == stateAlive; live != wasLive {
		for k := range a.byOwner[n.Name] {
			a.installLocked(k, a.keys[k])
		}
	}
	live := int64(1)
	for _, m := range a.members {
		if m.state == stateAlive {
			live++
		}
	}
	a.numNodes.Store(live)
	a.syncPeersLocked()
}

// syncPeersLocked gives Members the VTEPs of live members per VNI, for the
// VNIs whose list changed, and the VTEPs of all live members if they
// changed.
func (a *Agent) syncPeersLocked() {
	want := make(map[uint32][]netip.AddrPort)
	var all []netip.AddrPort
	for _, m := range a.members {
		if m.state != stateAlive || !m.meta.VTEP.Addr().IsValid() || m.meta.VTEP == a.cfg.VTEP {
			continue
		}
		all = append(all, m.meta.VTEP)
		for _, v := range m.meta.VNIs {
			want[v] = append(want[v], m.meta.VTEP)
		}
	}
	slices.SortFunc(all, func(x, y netip.AddrPort) int { return x.Compare(y) })
	all = slices.Compact(all)
	if !slices.Equal(a.memberSet, all) {
		a.memberSet = all
		a.peers.SetMembers(slices.Clone(all))
	}
	for v, l := range want {
		slices.SortFunc(l, func(x, y netip.AddrPort) int { return x.Compare(y) })
		l = slices.Compact(l)
		if !slices.Equal(a.peerSets[v], l) {
			a.peerSets[v] = l
			a.peers.SetPeers(v, slices.Clone(l))
		}
	}
	for v := range a.peerSets {
		if _, ok := want[v]; !ok {
			delete(a.peerSets, v)
			a.peers.SetPeers(v, nil)
		}
	}
	a.syncKeysLocked()
}
