package daemon

// This file holds the watcher: it turns the node's changes into events for
// the event hub (`ovlsw events`). FDB changes and address moves come from
// the FDB's subscriptions as they happen; members, networks, endpoints,
// the name service's names and the gossip key epoch are polled (gossip and the registries publish no
// change feed) and diffed. Nothing is built while nobody follows: the
// callbacks return at once, and the poller forgets its snapshots.

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/cmd/daemon/events"
	"github.com/ovlsw/ovlsw/fdb"
)

// pollEvery is how often the watcher polls members, networks, endpoints
// and the key epoch: gossip's probe interval is 1 s, so a state change
// shows within a probe.
const pollEvery = 250 * time.Millisecond

// fdbState is what the watcher remembers of an entry, to tell a move from
// a refresh.
type fdbState struct {
	where string
	dup   bool
}

// watcher feeds hub from d's owners.
type watcher struct {
	d   *Daemon
	hub *events.Hub[control.Event]

	// mu guards entries: the FDB as last published, while someone follows
	// (nil otherwise).
	mu      sync.Mutex
	entries map[fdb.Key]fdbState

	// pmu guards prev: the polled state as last published, while someone
	// follows (nil otherwise).
	pmu  sync.Mutex
	prev *snapshot

	unsub, unsubIP func()
	stop           chan struct{}
	done           sync.WaitGroup
}

// follow subscribes to the hub, the polled state taken first so that
// changes from now on are reported.
func (w *watcher) follow() *events.Follower[control.Event] {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	f := w.hub.Follow(0)
	if w.prev == nil {
		w.prev = w.take()
	}
	w.mu.Lock()
	if w.entries == nil {
		w.seedLocked() // here, not on the data plane's first change
	}
	w.mu.Unlock()
	return f
}

func newWatcher(d *Daemon, hub *events.Hub[control.Event]) *watcher {
	w := &watcher{d: d, hub: hub, stop: make(chan struct{})}
	w.unsub = d.fdb.Subscribe(w.fdbChanged)
	w.unsubIP = d.fdb.SubscribeIPMove(w.ipMoved)
	w.done.Add(1)
	go w.poll()
	return w
}

// close stops the watcher. Call once.
func (w *watcher) close() {
	w.unsub()
	w.unsubIP()
	close(w.stop)
	w.done.Wait()
}

// where names an entry's location: its port, or its VTEP.
func (w *watcher) where(l fdb.Location) string {
	if l.IsLocal() {
		if n := w.d.sw.PortName(l.Port); n != "" {
			return n
		}
		return "port " + strconv.Itoa(l.Port)
	}
	return l.VTEP.String()
}

// seedLocked fills entries from the FDB, without publishing, when the
// first follower arrives. mu is held.
func (w *watcher) seedLocked() {
	w.entries = map[fdb.Key]fdbState{}
	for _, e := range w.d.fdb.Entries() {
		w.entries[e.Key] = fdbState{where: w.where(e.Location), dup: e.Duplicate}
	}
}

// fdbChanged is the FDB's subscription. It runs on the goroutine that
// changed the table (the data plane, for learning) and must not block.
func (w *watcher) fdbChanged(ev fdb.Event) {
	if !w.hub.Active() {
		return
	}
	e := ev.Entry
	st := fdbState{where: w.where(e.Location), dup: e.Duplicate}
	out := control.Event{Time: time.Now(), VNI: e.VNI, MAC: e.MAC.String(), Where: st.where, Origin: e.Origin.String(), Node: e.Node}
	w.mu.Lock()
	if w.entries == nil {
		w.seedLocked()
	}
	old, known := w.entries[e.Key]
	if ev.Type == fdb.Removed {
		delete(w.entries, e.Key)
	} else {
		w.entries[e.Key] = st
	}
	w.mu.Unlock()
	switch {
	case ev.Type == fdb.Removed:
		out.Kind = "fdb_removed"
	case ev.Type == fdb.Added || !known:
		out.Kind = "fdb_added"
	case old.where != st.where:
		out.Kind, out.From = "fdb_moved", old.where
	case st.dup && !old.dup:
		out.Kind = "duplicate_mac"
	default:
		return // a refresh: addresses or sequence number, same place
	}
	w.hub.Publish(out)
	if out.Kind == "fdb_moved" && st.dup && !old.dup {
		out.Kind, out.From = "duplicate_mac", ""
		w.hub.Publish(out)
	}
}

// ipMoved is the FDB's address-move subscription (a duplicate address, or
// a container re-created with the address of another).
func (w *watcher) ipMoved(k fdb.IPKey, from, to fdb.MAC) {
	if !w.hub.Active() {
		return
	}
	w.hub.Publish(control.Event{Time: time.Now(), Kind: "ip_moved", VNI: k.VNI, IP: k.IP, MAC: to.String(), From: from.String()})
}

// snapshot is what the poller diffs.
type snapshot struct {
	members   map[string]string // name -> state
	networks  map[string]uint32 // name -> VNI
	endpoints map[string]control.Event
	names     map[nameKey]control.Event // the name service's names (names.go), by network and name
	epoch     uint64
}

// nameKey is a name in one VNI.
type nameKey struct {
	vni  uint32
	name string
}

func (w *watcher) take() *snapshot {
	s := &snapshot{members: map[string]string{}, networks: map[string]uint32{}, endpoints: map[string]control.Event{}, names: map[nameKey]control.Event{}}
	if c := w.d.cluster.Load(); c != nil {
		for _, m := range c.agent.Members() {
			s.members[m.Name] = m.State
		}
		if c.rotator != nil {
			s.epoch = c.rotator.epoch.Load()
		}
	}
	for _, n := range w.d.nets.list() {
		s.networks[n.Name] = n.VNI
		if w.d.names == nil {
			continue
		}
		for _, r := range w.d.names.list(n.VNI) {
			e := control.Event{VNI: n.VNI, Name: r.Name, MAC: r.Owner.String(), Where: n.Name}
			if len(r.IPs) > 0 {
				e.IP = r.IPs[0]
			}
			s.names[nameKey{n.VNI, strings.ToLower(r.Name)}] = e
		}
	}
	for _, ep := range w.d.eps.list("") {
		s.endpoints[ep.Name] = control.Event{VNI: ep.VNI, MAC: ep.MAC.String(), IP: ep.Address.Addr(), Name: ep.Name, Where: ep.Network}
	}
	return s
}

// poll diffs the polled state every pollEvery while someone follows.
func (w *watcher) poll() {
	defer w.done.Done()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.pmu.Lock()
		if !w.hub.Active() {
			w.prev = nil
			w.mu.Lock()
			w.entries = nil
			w.mu.Unlock()
		} else {
			cur := w.take()
			if w.prev != nil {
				w.diff(w.prev, cur)
			}
			w.prev = cur
		}
		w.pmu.Unlock()
	}
}

func (w *watcher) diff(prev, cur *snapshot) {
	now := time.Now()
	pub := func(e control.Event) {
		e.Time = now
		w.hub.Publish(e)
	}
	for name, st := range cur.members {
		if old, ok := prev.members[name]; !ok || old != st {
			kind := "member_" + st
			if st == "alive" {
				kind = "member_joined"
			}
			pub(control.Event{Kind: kind, Node: name, From: old})
		}
	}
	for name, vni := range cur.networks {
		if _, ok := prev.networks[name]; !ok {
			pub(control.Event{Kind: "network_added", Name: name, VNI: vni})
		}
	}
	for name, vni := range prev.networks {
		if _, ok := cur.networks[name]; !ok {
			pub(control.Event{Kind: "network_removed", Name: name, VNI: vni})
		}
	}
	for name, e := range cur.endpoints {
		if _, ok := prev.endpoints[name]; !ok {
			e.Kind = "endpoint_added"
			pub(e)
		}
	}
	for name, e := range prev.endpoints {
		if _, ok := cur.endpoints[name]; !ok {
			e.Kind = "endpoint_removed"
			pub(e)
		}
	}
	for k, e := range cur.names {
		if old, ok := prev.names[k]; !ok {
			e.Kind = "name_added"
			pub(e)
		} else if old.MAC != e.MAC {
			e.Kind, e.From = "name_moved", old.MAC
			pub(e)
		}
	}
	for k, e := range prev.names {
		if _, ok := cur.names[k]; !ok {
			e.Kind = "name_removed"
			pub(e)
		}
	}
	if cur.epoch != prev.epoch && prev.epoch != 0 {
		pub(control.Event{Kind: "key_rotated", Epoch: cur.epoch})
	}
}
