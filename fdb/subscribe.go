package fdb

// This file holds the table's subscriptions: callbacks for changes and IP
// moves that any number of parts of the program register at run time, so
// that events flow from the table to each of them without a relay.
//
// Design notes: a list of callbacks is an immutable slice behind an atomic
// pointer, replaced (copied) on Subscribe and cancel under a mutex. Calling
// the callbacks loads the pointer and ranges over the slice: no lock and no
// allocation, and a callback may subscribe or cancel (even itself) without
// deadlocking. Paths that change nothing never look at the lists.

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Subscribe registers fn to be called for every change to the table, under
// the same contract as Config.OnChange: after the table's lock is released,
// on the goroutine that made the change (possibly the data plane), so fn
// must not block and must not call back into the Table's write methods
// synchronously; changes made concurrently on several goroutines may reach
// fn in either order. Config.OnChange, if set, is called first, then the
// subscribers in the order they subscribed.
//
// cancel removes the subscription; it is idempotent and may be called from
// any goroutine, fn included. A call of fn already under way when cancel
// returns may still complete; changes that begin afterwards do not call fn.
func (t *Table) Subscribe(fn func(Event)) (cancel func()) {
	return t.onChange.add(fn)
}

// SubscribeIPMove registers fn to be called when an IP binding moves from
// one MAC to another, under the same contract as Config.OnIPMove (and as
// Subscribe). Config.OnIPMove, if set, is called first.
func (t *Table) SubscribeIPMove(fn func(k IPKey, from, to MAC)) (cancel func()) {
	return t.onIPMove.add(fn)
}

// subscribers is a copy-on-write list of callbacks of type F. Its zero
// value is an empty list.
type subscribers[F any] struct {
	mu   sync.Mutex // serialises add and remove
	list atomic.Pointer[[]*F]
}

// add appends fn and returns the function that removes it. Each
// subscription is its own *F, so the same function subscribed twice is two
// subscriptions.
func (s *subscribers[F]) add(fn F) (cancel func()) {
	p := &fn
	s.mu.Lock()
	next := append(slices.Clone(s.load()), p)
	s.list.Store(&next)
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { s.remove(p) }) }
}

func (s *subscribers[F]) remove(p *F) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	i := slices.Index(old, p)
	if i < 0 {
		return
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	s.list.Store(&next)
}

// load returns the current list. The caller must not modify it.
func (s *subscribers[F]) load() []*F {
	if p := s.list.Load(); p != nil {
		return *p
	}
	return nil
}
