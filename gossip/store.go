// The binding store: one current claim per (VNI, MAC), the tombstones of
// withdrawals, duplicate detection, the mirror of the store in the FDB, and
// Announce and Withdraw. Methods named ...Locked run with Agent.mu held,
// between lock and unlock.

package gossip

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

// claim is an owner's live binding of one key.
type claim struct {
	owner    string
	seq, gen uint64
	vtep     netip.AddrPort
	ips      []netip.Addr
	names    *fdb.Names // the endpoint's DNS names, or nil
	at       time.Time  // when this node accepted it
}

// tomb remembers that owner withdrew the key at gen.
type tomb struct {
	owner    string
	seq, gen uint64
	at       time.Time
}

// keyState is what this node knows about one (VNI, MAC).
type keyState struct {
	cur       *claim      // winning claim, nil when none
	lastOwner string      // owner of the last claim, for counting moves
	tombs     []tomb      // at most one per owner, at most maxTombsPerKey
	moves     []time.Time // recent owner changes, at most DuplicateMoves+1
	dupUntil  time.Time   // flagged duplicate until then
	dupLogged time.Time
}

// maxTombsPerKey bounds the withdrawals remembered per key: a MAC that
// moves among more nodes than this within TombstoneTTL is flapping and
// relies on push/pull.
const maxTombsPerKey = 4

// Member states as MemberInfo shows them.
const (
	stateAlive   = "alive"
	stateSuspect = "suspect"
	stateDead    = "dead"
	stateLeft    = "left"
)

// deadMemberKeep is how long a dead or departed member stays listed.
const deadMemberKeep = 24 * time.Hour

// member is this node's record of another node.
type member struct {
	name    string
	addr    netip.AddrPort // gossip address
	meta    meta           // zero if its metadata did not decode
	state   string         // stateAlive, stateDead or stateLeft
	leaving uint64         // gen of its leave message, 0 if none
	since   time.Time      // last state change
}

func (ks *keyState) tomb(owner string) *tomb {
	for i := range ks.tombs {
		if ks.tombs[i].owner == owner {
			return &ks.tombs[i]
		}
	}
	return nil
}

func (ks *keyState) setTomb(t tomb) {
	if old := ks.tomb(t.owner); old != nil {
		*old = t
		return
	}
	if len(ks.tombs) >= maxTombsPerKey {
		ks.tombs = slices.Delete(ks.tombs, 0, 1) // the oldest
	}
	ks.tombs = append(ks.tombs, t)
}

func (a *Agent) lock() { a.mu.Lock() }

// unlock deletes the gossip FDB entries marked during the critical section
// in one pass, then releases the lock.
func (a *Agent) unlock() {
	if len(a.delBatch) > 0 {
		batch := a.delBatch
		a.delBatch = make(map[fdb.Key]struct{})
		a.table.DeleteFunc(func(e fdb.Entry) bool {
			_, ok := batch[e.Key]
			return ok && e.Origin == fdb.OriginGossip
		})
	}
	a.mu.Unlock()
}

// liveLocked reports whether owner's claims may be installed.
func (a *Agent) liveLocked(owner string) bool {
	if owner == a.cfg.Name {
		return true
	}
	m := a.members[owner]
	return m != nil && m.state == stateAlive
}

func (a *Agent) keyLocked(k fdb.Key) *keyState {
	ks := a.keys[k]
	if ks == nil {
		ks = &keyState{}
		a.keys[k] = ks
	}
	return ks
}

// applyLocked merges a remote owner's record and reports whether it was new
// information (which the caller then rebroadcasts).
func (a *Agent) applyLocked(owner string, rec record) bool {
	if owner == a.cfg.Name {
		return false // our own records come back: we know better
	}
	if m := a.members[owner]; m != nil && rec.Gen < m.meta.Epoch {
		a.stale.Add(1) // from an earlier process of the owner
		return false
	}
	now := a.cfg.Now()
	ks := a.keyLocked(rec.Key)
	if t := ks.tomb(owner); t != nil && rec.Gen <= t.gen {
		return false
	}
	if rec.Withdrawn {
		ks.setTomb(tomb{owner: owner, seq: rec.Seq, gen: rec.Gen, at: now})
		if c := ks.cur; c != nil && c.owner == owner && c.gen <= rec.Gen {
			a.setCurLocked(rec.Key, ks, nil, now)
		}
		return true
	}
	n := &claim{owner: owner, seq: rec.Seq, gen: rec.Gen, vtep: rec.VTEP, ips: rec.IPs, names: rec.Names, at: now}
	if c := ks.cur; c != nil {
		if c.owner == owner {
			if rec.Gen <= c.gen {
				return false
			}
		} else if !a.winsLocked(n, c) {
			return false
		}
	}
	a.setCurLocked(rec.Key, ks, n, now)
	return true
}

// winsLocked reports whether claim n beats c of another owner: a live
// owner beats one that is not; then the higher sequence number; then the
// lower node name.
func (a *Agent) winsLocked(n, c *claim) bool {
	if nl, cl := a.liveLocked(n.owner), a.liveLocked(c.owner); nl != cl {
		return nl
	}
	if n.seq != c.seq {
		return n.seq > c.seq
	}
	return n.owner < c.owner
}

// setCurLocked makes c (possibly nil) the key's claim and mirrors it into
// the FDB.
func (a *Agent) setCurLocked(k fdb.Key, ks *keyState, c *claim, now time.Time) {
	prev := ks.cur
	if prev != nil {
		if set := a.byOwner[prev.owner]; set != nil {
			delete(set, k)
			if len(set) == 0 {
				delete(a.byOwner, prev.owner)
			}
		}
	}
	a.reindexLocked(k, prev, c)
	ks.cur = c
	if c != nil {
		set := a.byOwner[c.owner]
		if set == nil {
			set = make(map[fdb.Key]struct{})
			a.byOwner[c.owner] = set
		}
		set[k] = struct{}{}
		if ks.lastOwner != "" && ks.lastOwner != c.owner {
			a.noteMoveLocked(k, ks, now)
		}
		ks.lastOwner = c.owner
		if prev != nil && prev.owner == a.cfg.Name && c.owner != a.cfg.Name {
			a.log.Debug("local MAC now announced by another node; no longer announcing it",
				"vni", k.VNI, "mac", k.MAC, "owner", c.owner, "seq", c.seq)
		}
	}
	a.installLocked(k, ks)
}

// installLocked makes the FDB agree with the key's claim: a live remote
// claim is set as a gossip entry; otherwise a gossip entry is deleted.
// Static entries are never touched. A local entry is replaced only when the
// remote claim is at least as new (one with a higher sequence number is a
// sighting whose announcement is queued) and it is not pinned: a pinned
// entry (an attached endpoint) is announced again, outbidding the claim.
func (a *Agent) installLocked(k fdb.Key, ks *keyState) {
	c := ks.cur
	e, ok := a.table.Get(k)
	if c == nil || c.owner == a.cfg.Name || !a.liveLocked(c.owner) {
		if ok && e.Origin == fdb.OriginGossip {
			a.delBatch[k] = struct{}{}
		}
		return
	}
	delete(a.delBatch, k)
	dup := ks.dupUntil.After(a.cfg.Now())
	if ok {
		switch e.Origin {
		case fdb.OriginStatic:
			return
		case fdb.OriginLocal:
			if e.Pinned {
				a.enqueue(k)
				return
			}
			if e.Seq > c.seq {
				return
			}
		case fdb.OriginGossip:
			if e.Node == c.owner && e.Seq == c.seq && e.Port == 0 && e.VTEP == c.vtep &&
				e.Duplicate == dup && slices.Equal(e.IPs, c.ips) && e.Names.Equal(c.names) {
				return
			}
		}
	}
	a.table.Set(fdb.Entry{
		Key: k, Location: fdb.Location{VTEP: c.vtep}, Origin: fdb.OriginGossip,
		Node: c.owner, Seq: c.seq, IPs: c.ips, Names: c.names, Duplicate: dup,
	})
}

// noteMoveLocked counts an owner change of k and flags the MAC duplicate
// when it moved more than DuplicateMoves times in DuplicateWindow.
func (a *Agent) noteMoveLocked(k fdb.Key, ks *keyState, now time.Time) {
	n := a.cfg.DuplicateMoves
	if n <= 0 {
		return
	}
	cutoff := now.Add(-a.cfg.DuplicateWindow)
	ks.moves = append(ks.moves, now)
	i := 0
	for i < len(ks.moves) && !ks.moves[i].After(cutoff) {
		i++
	}
	ks.moves = ks.moves[i:]
	if len(ks.moves) > n+1 {
		ks.moves = ks.moves[len(ks.moves)-(n+1):]
	}
	if len(ks.moves) <= n {
		return
	}
	ks.dupUntil = now.Add(a.cfg.DuplicateWindow)
	a.dups[k] = struct{}{}
	if ks.dupLogged.IsZero() || now.Sub(ks.dupLogged) >= a.cfg.DuplicateWindow {
		ks.dupLogged = now
		a.log.Warn("duplicate MAC: moved between nodes too often",
			"vni", k.VNI, "mac", k.MAC, "moves", len(ks.moves), "window", a.cfg.DuplicateWindow,
			"owner", ks.cur.owner)
	}
}

// queueLocked queues a broadcast of owner's record; a queued broadcast for
// the same (VNI, MAC) is replaced.
func (a *Agent) queueLocked(owner string, rec record) {
	a.queueNamed(keyName(rec.Key), encodeMessage(&message{Owner: owner, Rec: rec}))
}

// keyName names the broadcasts about one (VNI, MAC): 'b' and its 10 bytes.
func keyName(k fdb.Key) string {
	var name [11]byte
	name[0] = 'b'
	name[1], name[2], name[3], name[4] = byte(k.VNI>>24), byte(k.VNI>>16), byte(k.VNI>>8), byte(k.VNI)
	copy(name[5:], k.MAC[:])
	return string(name[:])
}

// leaveName names the leave broadcast of owner.
func leaveName(owner string) string { return "l" + owner }

func (a *Agent) queueNamed(name string, msg []byte) {
	a.queue.QueueBroadcast(&broadcast{name: name, msg: msg})
	if a.queue.NumQueued() > maxQueued {
		a.queue.Prune(maxQueued)
		a.queuePruned.Add(1)
	}
}

func recordOf(k fdb.Key, c *claim) record {
	return record{Key: k, Seq: c.seq, Gen: c.gen, VTEP: c.vtep, IPs: c.ips, Names: c.names}
}

// Announce makes this node the owner of b's (VNI, MAC) and gossips it. The
// sequence number is raised where needed: to this node's current one, and
// above another owner's (a move here, RFC 7432 MAC mobility). Announcing
// an unchanged binding does nothing. While the MAC is flagged duplicate and
// owned elsewhere it returns ErrDuplicate instead of taking it over. It
// does not block on the network.
func (a *Agent) Announce(b Binding) error {
	if err := a.normalize(&b); err != nil {
		return err
	}
	a.lock()
	defer a.unlock()
	if a.closed {
		return ErrClosed
	}
	return a.announceLocked(b)
}

// normalize checks b and fills in this node's name and VTEP.
func (a *Agent) normalize(b *Binding) error {
	switch {
	case b.VNI > MaxVNI:
		return fmt.Errorf("gossip: announce: VNI %d exceeds 24 bits", b.VNI)
	case b.MAC.IsMulticast() || b.MAC.IsZero():
		return fmt.Errorf("gossip: announce: %v is not a unicast MAC", b.MAC)
	case len(b.IPs) > MaxIPs:
		return fmt.Errorf("gossip: announce %v: %d IPs, at most %d", b.MAC, len(b.IPs), MaxIPs)
	case b.Names != nil && !namesFit(b.Names):
		return fmt.Errorf("gossip: announce %v: names %q exceed the wire's bounds", b.MAC, b.Names.Name)
	case b.Node != "" && b.Node != a.cfg.Name:
		return fmt.Errorf("gossip: announce %v: owner %q is not this node", b.MAC, b.Node)
	}
	b.Node = a.cfg.Name
	if b.VTEP == (netip.AddrPort{}) {
		b.VTEP = a.cfg.VTEP
	}
	if !b.VTEP.Addr().IsValid() {
		return fmt.Errorf("gossip: announce %v: invalid VTEP %v", b.MAC, b.VTEP)
	}
	b.VTEP = netip.AddrPortFrom(b.VTEP.Addr().WithZone("").Unmap(), b.VTEP.Port())
	ips := make([]netip.Addr, 0, len(b.IPs))
	for _, ip := range b.IPs {
		if !ip.IsValid() {
			return fmt.Errorf("gossip: announce %v: invalid IP", b.MAC)
		}
		ips = append(ips, ip.WithZone("").Unmap())
	}
	if len(ips) == 0 {
		ips = nil
	}
	b.IPs = ips
	return nil
}

func (a *Agent) announceLocked(b Binding) error {
	k := fdb.Key{VNI: b.VNI, MAC: b.MAC}
	ks := a.keyLocked(k)
	seq := b.Seq
	owned := false
	if c := ks.cur; c != nil && c.owner == a.cfg.Name {
		owned = true
		seq = max(seq, c.seq)
		if seq == c.seq && c.vtep == b.VTEP && slices.Equal(c.ips, b.IPs) && c.names.Equal(b.Names) {
			return nil
		}
	} else if c != nil {
		if ks.dupUntil.After(a.cfg.Now()) {
			return ErrDuplicate // RFC 7432 section 15: stop outbidding a flapping MAC
		}
		if c.seq >= seq {
			seq = c.seq + 1
		}
	}
	if !owned && len(a.byOwner[a.cfg.Name]) >= MaxStateBindings {
		return ErrTooManyBindings
	}
	a.gen++
	c := &claim{owner: a.cfg.Name, seq: seq, gen: a.gen, vtep: b.VTEP, ips: b.IPs, names: b.Names, at: a.cfg.Now()}
	a.setCurLocked(k, ks, c, c.at)
	a.queueLocked(a.cfg.Name, recordOf(k, c))
	return nil
}

// Withdraw stops announcing this node's binding of (vni, mac), if it has
// one, and gossips a tombstone so every member deletes it.
func (a *Agent) Withdraw(vni uint32, mac fdb.MAC) {
	a.lock()
	defer a.unlock()
	if !a.closed {
		a.withdrawLocked(fdb.Key{VNI: vni, MAC: mac})
	}
}

func (a *Agent) withdrawLocked(k fdb.Key) {
	ks := a.keys[k]
	if ks == nil || ks.cur == nil || ks.cur.owner != a.cfg.Name {
		return
	}
	a.gen++
	rec := record{Key: k, Withdrawn: true, Seq: ks.cur.seq, Gen: a.gen}
	a.setCurLocked(k, ks, nil, a.cfg.Now())
	a.queueLocked(a.cfg.Name, rec)
}
