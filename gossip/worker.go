// The agent's goroutines: the worker that turns FDB changes of local
// entries into announcements and withdrawals, and the maintenance loop that
// expires tombstones, parked claims, duplicate flags, old member records
// and network tombstones. (The third, watchNetworks, is in network.go.)

package gossip

import (
	"errors"
	"slices"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

// OnFDBEvent feeds FDB changes of local entries to the agent: an added or
// updated local entry is announced with the entry's sequence number and
// IPs, a removed one (or one that became learned elsewhere) withdrawn. It
// only queues the key and never blocks, so it may be called from the FDB's
// change callback on the data plane; a worker reads the entry's current
// state later, so a burst of events for one MAC costs one announcement.
func (a *Agent) OnFDBEvent(ev fdb.Event) {
	switch ev.Entry.Origin {
	case fdb.OriginLocal, fdb.OriginLearned:
	default:
		return
	}
	a.enqueue(ev.Entry.Key)
}

// enqueue has the worker look at k's FDB entry. It never blocks and takes
// only qmu, so it may be called with Agent.mu held.
func (a *Agent) enqueue(k fdb.Key) {
	select {
	case <-a.closing:
		return
	default:
	}
	a.qmu.Lock()
	a.pending[k] = struct{}{}
	a.qmu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// worker applies the keys OnFDBEvent queued.
func (a *Agent) worker() {
	defer a.wg.Done()
	for {
		select {
		case <-a.closing:
			return
		case <-a.wake:
		}
		a.qmu.Lock()
		keys := a.pending
		a.pending = make(map[fdb.Key]struct{})
		a.qmu.Unlock()
		for k := range keys {
			a.syncLocal(k)
		}
	}
}

// syncLocal announces k if the FDB says it is local, else withdraws it.
func (a *Agent) syncLocal(k fdb.Key) {
	a.lock()
	defer a.unlock()
	if a.closed {
		return
	}
	e, ok := a.table.Get(k)
	if !ok || e.Origin != fdb.OriginLocal {
		a.withdrawLocked(k)
		return
	}
	b := Binding{VNI: k.VNI, MAC: k.MAC, IPs: e.IPs, Seq: e.Seq, Names: e.Names}
	if len(b.IPs) > MaxIPs {
		b.IPs = b.IPs[:MaxIPs]
	}
	err := a.normalize(&b)
	if err == nil {
		err = a.announceLocked(b)
	}
	if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrDuplicate) {
		a.log.Debug("not announcing local MAC", "vni", k.VNI, "mac", k.MAC, "err", err)
	}
}

// maintain expires tombstones, parked claims, duplicate flags, old member
// records and network tombstones.
func (a *Agent) maintain() {
	defer a.wg.Done()
	every := min(a.cfg.TombstoneTTL, a.cfg.DuplicateWindow) / 4
	if a.cfg.DuplicateWindow <= 0 {
		every = a.cfg.TombstoneTTL / 4
	}
	every = min(max(every, 100*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.closing:
			return
		case <-t.C:
			a.expire()
		}
	}
}

func (a *Agent) expire() {
	now := a.cfg.Now()
	ttl := a.cfg.TombstoneTTL
	a.lock()
	defer a.unlock()
	for k, ks := range a.keys {
		ks.tombs = slices.DeleteFunc(ks.tombs, func(t tomb) bool { return now.Sub(t.at) > ttl })
		if c := ks.cur; c != nil && a.parkedExpiredLocked(c, now) {
			a.setCurLocked(k, ks, nil, now)
		}
		if _, ok := a.dups[k]; ok && !ks.dupUntil.After(now) {
			delete(a.dups, k)
			a.installLocked(k, ks)
		}
		if n := len(ks.moves); n > 0 && now.Sub(ks.moves[n-1]) > a.cfg.DuplicateWindow {
			ks.moves = nil
		}
		if _, dup := a.dups[k]; ks.cur == nil && len(ks.tombs) == 0 && len(ks.moves) == 0 && !dup {
			delete(a.keys, k)
		}
	}
	for name, m := range a.members {
		if m.state != stateAlive && now.Sub(m.since) > deadMemberKeep && len(a.byOwner[name]) == 0 {
			delete(a.members, name)
		}
	}
	a.expireNetsLocked(now)
}
