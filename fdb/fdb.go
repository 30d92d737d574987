// Package fdb is the forwarding table: {VNI, MAC} -> local port or remote
// VTEP, and {VNI, IP} -> MAC.
//
// Design notes: the data plane calls Lookup and Learn for every frame, so
// both take only the read lock and allocate nothing when the entry is
// already known; refreshing an entry's last-seen time is an atomic store
// done at most once a second per entry. Writers (a new MAC, the control
// plane, ageing) take the write lock briefly. Change callbacks run after the
// lock is released.
package fdb

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies a MAC address in one VXLAN network.
type Key struct {
	VNI uint32
	MAC MAC
}

// IPKey identifies an IP address in one VXLAN network.
type IPKey struct {
	VNI uint32
	IP  netip.Addr
}

// Location says where a MAC lives: on a local port (Port > 0) or behind a
// remote VTEP (Port == 0).
type Location struct {
	Port int            // local port ID, 0 when remote
	VTEP netip.AddrPort // remote VTEP when Port == 0
}

// IsLocal reports whether l is a local port.
func (l Location) IsLocal() bool { return l.Port > 0 }

// Origin says where an entry came from.
type Origin uint8

// Origins, in no particular order of precedence (see Table.Learn).
const (
	OriginLocal   Origin = iota + 1 // learned from a frame on a local port
	OriginLearned                   // learned from a decapsulated frame
	OriginStatic                    // configured
	OriginGossip                    // announced by its owner node
)

var originNames = [...]string{"", "local", "learned", "static", "gossip"}

// String names the origin as ovlsw fdb prints it.
func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (o Origin) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Entry is a snapshot of one forwarding entry.
type Entry struct {
	Key
	Location
	Origin    Origin
	Node      string       // owner node, for gossip entries
	Seq       uint64       // binding sequence number (MAC mobility)
	IPs       []netip.Addr // addresses bound to this MAC, where known
	Names     *Names       // the endpoint's DNS names; nil for none. Never modified once set
	Seen      time.Time    // last time traffic or an announcement refreshed it
	Duplicate bool         // flagged by duplicate-MAC detection
	Pinned    bool         // never aged out (an attached endpoint's MAC)
}

// EventType says what happened to an entry.
type EventType uint8

// Event types.
const (
	Added EventType = iota + 1
	Updated
	Removed
)

// Event reports a change to the table.
type Event struct {
	Type  EventType
	Entry Entry
}

// Config configures a Table.
type Config struct {
	// Ageing is how long a local or learned entry lives without traffic.
	// Static and gossip entries never age. Zero disables ageing.
	Ageing time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake.
	Now func() time.Time
	// OnChange, if set, is called after every change, without the table
	// lock held, on the goroutine that made the change (possibly the data
	// plane). It must not block and must not call back into the Table's
	// write methods synchronously. Table.Subscribe adds more such
	// callbacks at run time.
	OnChange func(Event)
	// OnIPMove, if set, is called when an IP binding moves from one MAC to
	// another (a container re-created with the same address), under the
	// same rules as OnChange. The data plane uses it to send gratuitous
	// ARP and unsolicited neighbour advertisements. Table.SubscribeIPMove
	// adds more such callbacks at run time.
	OnIPMove func(k IPKey, from, to MAC)
	// MaxPerPort and MaxPerVNI bound data-plane learning: a local port
	// learns at most MaxPerPort source MACs, a VNI holds at most MaxPerVNI
	// local and learned entries. Past a limit a new MAC is not learned (its
	// frames still flow, as unknown unicast) and Refused counts it; nothing
	// already learned is evicted, so a port flooding random source MACs
	// cannot push out its neighbours' entries or grow the table without
	// bound. Control-plane entries (Set: static, gossip, attached
	// endpoints) are not limited. Zero means no limit.
	MaxPerPort, MaxPerVNI int
	// MoveMemory is how long an IP binding is remembered after its MAC
	// entry goes, so that the same address coming back on a different MAC
	// (a container detached and re-created) still counts as a move for
	// OnIPMove. Zero means 5 minutes.
	MoveMemory time.Duration
}

// maxGhosts bounds the remembered bindings of removed entries: past it,
// removals are not remembered (a re-created endpoint is then reached after
// its peers' neighbour caches time out, as without ovlsw).
const maxGhosts = 1 << 16

// ghost is an IP binding whose MAC entry was removed.
type ghost struct {
	mac MAC
	at  int64 // unix nanoseconds
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Ageing: 300 * time.Second, // the Linux bridge and most switches age after 300 s
	}
}

// refreshEvery bounds how often Learn writes an entry's last-seen time, so
// the hot path does not bounce a cache line between cores on every frame.
const refreshEvery = int64(time.Second)

type entry struct {
	loc    Location
	origin Origin
	node   string
	seq    uint64
	ips    []netip.Addr
	names  *Names
	dup    bool
	pinned bool
	seen   atomic.Int64 // unix nanoseconds
}

// Table is the forwarding table. It is safe for concurrent use.
type Table struct {
	cfg Config

	mu    sync.RWMutex // guards the maps and the non-atomic entry fields
	macs  map[Key]*entry
	ips   map[IPKey]MAC
	ghost map[IPKey]ghost // bindings of removed entries, for MoveMemory

	// Learned-entry counts for the limits, guarded by mu.
	perPort map[int]int
	perVNI  map[uint32]int
	refused atomic.Uint64

	// Subscriptions (subscribe.go), each list copy-on-write under its own
	// mutex and read without a lock.
	onChange subscribers[func(Event)]
	onIPMove subscribers[func(IPKey, MAC, MAC)]
}

// New returns an empty table.
func New(cfg Config) *Table {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MoveMemory <= 0 {
		cfg.MoveMemory = 5 * time.Minute
	}
	return &Table{cfg: cfg, macs: make(map[Key]*entry), ips: make(map[IPKey]MAC), ghost: make(map[IPKey]ghost),
		perPort: make(map[int]int), perVNI: make(map[uint32]int)}
}

// Now returns the table's clock reading.
func (t *Table) Now() time.Time { return t.cfg.Now() }

// Lookup returns where k lives. It takes the read lock and allocates nothing.
func (t *Table) Lookup(k Key) (Location, bool) {
	t.mu.RLock()
	e, ok := t.macs[k]
	var loc Location
	if ok {
		loc = e.loc
	}
	t.mu.RUnlock()
	return loc, ok
}

// Learn records that k was seen at loc (origin OriginLocal or
// OriginLearned) at time now (unix nanoseconds). It is the data plane's
// call: when the entry already says so, it only refreshes the last-seen time,
// without allocating. Precedence: a static entry is never changed by
// learning; a gossip entry is replaced only by local learning (the MAC moved
// here); otherwise the newest observation wins. It reports whether the table
// changed.
func (t *Table) Learn(k Key, loc Location, origin Origin, now int64) bool {
	t.mu.RLock()
	e, ok := t.macs[k]
	if ok && (e.loc == loc || !learnMayReplace(e.origin, origin)) {
		if e.loc == loc && now-e.seen.Load() >= refreshEvery {
			e.seen.Store(now)
		}
		t.mu.RUnlock()
		return false
	}
	t.mu.RUnlock()
	return t.learnSlow(k, loc, origin, now)
}

func learnMayReplace(old, new Origin) bool {
	switch old {
	case OriginStatic:
		return false
	case OriginGossip:
		return new == OriginLocal
	}
	return true
}

func (t *Table) learnSlow(k Key, loc Location, origin Origin, now int64) bool {
	t.mu.Lock()
	e, ok := t.macs[k]
	typ := Added
	if ok {
		if e.loc == loc || !learnMayReplace(e.origin, origin) {
			t.mu.Unlock()
			return false
		}
		if !t.mayLearnLocked(k.VNI, loc, true) {
			t.mu.Unlock()
			t.refused.Add(1)
			return false
		}
		typ = Updated
		t.countLocked(k, e, -1)
		t.dropIPsLocked(k, e)
		e.loc, e.origin, e.node, e.ips, e.names, e.pinned = loc, origin, "", nil, nil, false
		e.seq++ // a move bumps the sequence number (EVPN MAC mobility)
	} else {
		if !t.mayLearnLocked(k.VNI, loc, false) {
			t.mu.Unlock()
			t.refused.Add(1)
			return false
		}
		e = &entry{loc: loc, origin: origin}
		t.macs[k] = e
	}
	t.countLocked(k, e, +1)
	e.seen.Store(now)
	ev := Event{Type: typ, Entry: t.snapshotLocked(k, e)}
	t.mu.Unlock()
	t.notify(ev)
	return true
}

// Set installs or replaces an entry as the control plane says (static or
// gossip origin, or a local entry with IPs). Seen is set to now when zero.
func (t *Table) Set(e Entry) {
	now := e.Seen
	if now.IsZero() {
		now = t.cfg.Now()
	}
	t.mu.Lock()
	old, ok := t.macs[e.Key]
	typ := Added
	if ok {
		typ = Updated
		t.countLocked(e.Key, old, -1)
		t.dropIPsLocked(e.Key, old)
	} else {
		old = &entry{}
		t.macs[e.Key] = old
	}
	old.loc, old.origin, old.node, old.seq, old.dup, old.pinned = e.Location, e.Origin, e.Node, e.Seq, e.Duplicate, e.Pinned
	old.names = e.Names
	t.countLocked(e.Key, old, +1)
	old.ips = append([]netip.Addr(nil), e.IPs...)
	var moves []ipMove
	for _, ip := range old.ips {
		ik := IPKey{e.VNI, ip}
		if prev, ok := t.prevOwnerLocked(ik, e.MAC); ok {
			moves = append(moves, ipMove{ik, prev})
			if o, ok := t.macs[Key{e.VNI, prev}]; ok {
				o.ips = removeAddr(o.ips, ip)
			}
		}
		t.ips[ik] = e.MAC
	}
	old.seen.Store(now.UnixNano())
	ev := Event{Type: typ, Entry: t.snapshotLocked(e.Key, old)}
	t.mu.Unlock()
	t.notify(ev)
	for _, m := range moves {
		t.notifyMove(m.k, m.from, e.MAC)
	}
}

type ipMove struct {
	k    IPKey
	from MAC
}

// notifyMove tells Config.OnIPMove and the subscribers that k moved. The
// caller must not hold the table lock.
func (t *Table) notifyMove(k IPKey, from, to MAC) {
	if t.cfg.OnIPMove != nil {
		t.cfg.OnIPMove(k, from, to)
	}
	for _, fn := range t.onIPMove.load() {
		(*fn)(k, from, to)
	}
}

// Get returns a snapshot of the entry for k.
func (t *Table) Get(k Key) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.macs[k]
	if !ok {
		return Entry{}, false
	}
	return t.snapshotLocked(k, e), true
}

// Delete removes the entry for k and reports whether there was one.
func (t *Table) Delete(k Key) bool {
	return len(t.DeleteFunc(func(e Entry) bool { return e.Key == k })) > 0
}

// DeleteFunc removes every entry for which match returns true and returns
// what it removed. match runs with the table locked: it must not call back
// into the Table.
func (t *Table) DeleteFunc(match func(Entry) bool) []Entry {
	t.mu.Lock()
	var gone []Entry
	for k, e := range t.macs {
		s := t.snapshotLocked(k, e)
		if match(s) {
			t.countLocked(k, e, -1)
			t.dropIPsLocked(k, e)
			delete(t.macs, k)
			gone = append(gone, s)
		}
	}
	t.mu.Unlock()
	for _, s := range gone {
		t.notify(Event{Type: Removed, Entry: s})
	}
	return gone
}

// Expire removes local and learned entries not seen for the ageing time,
// except pinned ones, and returns them.
func (t *Table) Expire() []Entry {
	if t.cfg.Ageing <= 0 {
		return nil
	}
	cutoff := t.cfg.Now().Add(-t.cfg.Ageing)
	t.mu.Lock()
	forget := t.cfg.Now().Add(-t.cfg.MoveMemory).UnixNano()
	for ik, g := range t.ghost {
		if g.at < forget {
			delete(t.ghost, ik)
		}
	}
	t.mu.Unlock()
	return t.DeleteFunc(func(e Entry) bool {
		return (e.Origin == OriginLocal || e.Origin == OriginLearned) && !e.Pinned && e.Seen.Before(cutoff)
	})
}

// BindIP records that ip belongs to the MAC of k. It reports whether the
// binding is new or changed. The MAC entry, if present, lists the address.
func (t *Table) BindIP(k Key, ip netip.Addr) bool {
	ik := IPKey{k.VNI, ip}
	t.mu.RLock()
	cur, ok := t.ips[ik]
	t.mu.RUnlock()
	if ok && cur == k.MAC {
		return false
	}
	t.mu.Lock()
	if cur, ok := t.ips[ik]; ok && cur == k.MAC {
		t.mu.Unlock()
		return false
	}
	cur, moved := t.prevOwnerLocked(ik, k.MAC)
	if moved {
		if old, ok := t.macs[Key{k.VNI, cur}]; ok {
			old.ips = removeAddr(old.ips, ip)
		}
	}
	t.ips[ik] = k.MAC
	var ev Event
	if e, ok := t.macs[k]; ok {
		e.ips = append(e.ips, ip)
		ev = Event{Type: Updated, Entry: t.snapshotLocked(k, e)}
	}
	t.mu.Unlock()
	if ev.Type != 0 {
		t.notify(ev)
	}
	if moved {
		t.notifyMove(ik, cur, k.MAC)
	}
	return true
}

// NumIPs returns how many addresses are bound to the MAC of k.
func (t *Table) NumIPs(k Key) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e, ok := t.macs[k]; ok {
		return len(e.ips)
	}
	return 0
}

// LookupIP returns the MAC bound to ip in vni.
func (t *Table) LookupIP(k IPKey) (MAC, bool) {
	t.mu.RLock()
	m, ok := t.ips[k]
	t.mu.RUnlock()
	return m, ok
}

// LookupIPVouched returns the MAC bound to ip in vni only when the binding
// is vouched for: the MAC's entry exists and was learned on a local port or
// installed by the control plane (OriginLocal, OriginStatic or
// OriginGossip). A binding whose MAC is known only from decapsulated remote
// traffic (OriginLearned) may be stale (its owner gone, another host now
// holding the address), so it is not reported. It takes the read lock and
// allocates nothing.
func (t *Table) LookupIPVouched(k IPKey) (MAC, bool) {
	t.mu.RLock()
	m, ok := t.ips[k]
	if ok {
		e, found := t.macs[Key{k.VNI, m}]
		ok = found && vouches(e.origin)
	}
	t.mu.RUnlock()
	if !ok {
		return MAC{}, false
	}
	return m, true
}

// vouches reports whether an entry of origin o vouches for the addresses
// bound to its MAC: it was seen on a local port or configured, not only
// snooped from the wire.
func vouches(o Origin) bool {
	return o == OriginLocal || o == OriginStatic || o == OriginGossip
}

// Entries returns a snapshot of every entry, in no particular order.
func (t *Table) Entries() []Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Entry, 0, len(t.macs))
	for k, e := range t.macs {
		out = append(out, t.snapshotLocked(k, e))
	}
	return out
}

// Len returns the number of MAC entries.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.macs)
}

func (t *Table) snapshotLocked(k Key, e *entry) Entry {
	return Entry{
		Key: k, Location: e.loc, Origin: e.origin, Node: e.node, Seq: e.seq,
		IPs: append([]netip.Addr(nil), e.ips...), Names: e.names, Seen: time.Unix(0, e.seen.Load()),
		Duplicate: e.dup, Pinned: e.pinned,
	}
}

// dropIPsLocked removes the IP bindings of e that still point at k.MAC,
// remembering them for MoveMemory.
func (t *Table) dropIPsLocked(k Key, e *entry) {
	now := t.cfg.Now().UnixNano()
	for _, ip := range e.ips {
		ik := IPKey{k.VNI, ip}
		if t.ips[ik] == k.MAC {
			delete(t.ips, ik)
			if len(t.ghost) < maxGhosts {
				t.ghost[ik] = ghost{mac: k.MAC, at: now}
			}
		}
	}
}

// prevOwnerLocked returns the MAC that held ik before mac takes it, if it
// was another: the current binding, or one removed within MoveMemory. It
// forgets the removed one, since mac now holds the address.
func (t *Table) prevOwnerLocked(ik IPKey, mac MAC) (MAC, bool) {
	if cur, ok := t.ips[ik]; ok {
		return cur, cur != mac
	}
	g, ok := t.ghost[ik]
	if !ok {
		return MAC{}, false
	}
	delete(t.ghost, ik)
	return g.mac, g.mac != mac && t.cfg.Now().UnixNano()-g.at < int64(t.cfg.MoveMemory)
}

// countLocked adds delta to the limit counts e is part of: local and
// learned entries count towards their VNI, local ones also their port.
func (t *Table) countLocked(k Key, e *entry, delta int) {
	if e.origin != OriginLocal && e.origin != OriginLearned {
		return
	}
	t.perVNI[k.VNI] += delta
	if t.perVNI[k.VNI] <= 0 {
		delete(t.perVNI, k.VNI)
	}
	if e.loc.IsLocal() {
		t.perPort[e.loc.Port] += delta
		if t.perPort[e.loc.Port] <= 0 {
			delete(t.perPort, e.loc.Port)
		}
	}
}

// mayLearnLocked reports whether learning a MAC at loc in vni stays within
// the limits; moved says the MAC is already counted in the VNI.
func (t *Table) mayLearnLocked(vni uint32, loc Location, moved bool) bool {
	if t.cfg.MaxPerVNI > 0 && !moved && t.perVNI[vni] >= t.cfg.MaxPerVNI {
		return false
	}
	return t.cfg.MaxPerPort <= 0 || !loc.IsLocal() || t.perPort[loc.Port] < t.cfg.MaxPerPort
}

// SetLimits changes Config.MaxPerPort and MaxPerVNI at run time (a
// configuration reload). Lowering a limit evicts nothing: entries already
// learned stay until they age out, and no new MAC is learned until the
// count is below the new limit. It takes the write lock briefly.
func (t *Table) SetLimits(perPort, perVNI int) {
	t.mu.Lock()
	t.cfg.MaxPerPort, t.cfg.MaxPerVNI = perPort, perVNI
	t.mu.Unlock()
}

// Refused returns how many MACs the learning limits kept out.
func (t *Table) Refused() uint64 { return t.refused.Load() }

// notify tells Config.OnChange and the subscribers of ev. The caller must
// not hold the table lock.
func (t *Table) notify(ev Event) {
	if t.cfg.OnChange != nil {
		t.cfg.OnChange(ev)
	}
	for _, fn := range t.onChange.load() {
		(*fn)(ev)
	}
}

func removeAddr(s []netip.Addr, a netip.Addr) []netip.Addr {
	out := s[:0]
	for _, x := range s {
		if x != a {
			out = append(out, x)
		}
	}
	return out
}
