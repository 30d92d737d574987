// Package events is the node's event hub (`ovlsw events`): publishers (the
// FDB's subscription, the cluster watcher) hand it events and every
// follower gets them through a bounded buffer of its own. Publishing never
// blocks: a follower whose buffer is full loses the event, counted, and is
// told how many it lost with the next one it gets.
package events

import (
	"sync"
	"sync/atomic"
)

// DefaultBuffer is a follower's buffer: a burst of FDB changes (a member
// joining with a thousand bindings) fits; a follower stalled longer loses
// events and is told.
const DefaultBuffer = 4096

// Hub fans events of type T out to followers.
type Hub[T any] struct {
	mu        sync.RWMutex // guards followers
	followers map[*Follower[T]]struct{}
	n         atomic.Int32 // len(followers), read without the lock

	published, lost atomic.Uint64
}

// New returns a hub with no followers.
func New[T any]() *Hub[T] {
	return &Hub[T]{followers: map[*Follower[T]]struct{}{}}
}

// Follower is one subscription: its buffer and what it lost.
type Follower[T any] struct {
	ch   chan T
	lost atomic.Uint64
	hub  *Hub[T]
	once sync.Once
}

// Active reports whether anyone follows: publishers skip building events
// nobody reads.
func (h *Hub[T]) Active() bool { return h.n.Load() > 0 }

// Publish hands e to every follower without blocking. It is safe to call
// from any goroutine, including the data plane's.
func (h *Hub[T]) Publish(e T) {
	if h.n.Load() == 0 {
		return
	}
	h.published.Add(1)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for f := range h.followers {
		select {
		case f.ch <- e:
		default:
			f.lost.Add(1)
			h.lost.Add(1)
		}
	}
}

// Follow subscribes with a buffer of n events (0: DefaultBuffer). Close the
// follower to unsubscribe.
func (h *Hub[T]) Follow(n int) *Follower[T] {
	if n <= 0 {
		n = DefaultBuffer
	}
	f := &Follower[T]{ch: make(chan T, n), hub: h}
	h.mu.Lock()
	h.followers[f] = struct{}{}
	h.n.Store(int32(len(h.followers)))
	h.mu.Unlock()
	return f
}

// Stats returns the events published while someone followed, and those
// lost by followers that fell behind.
func (h *Hub[T]) Stats() (published, lost uint64) { return h.published.Load(), h.lost.Load() }

// Close unsubscribes every follower: their channels close once drained.
func (h *Hub[T]) Close() {
	h.mu.Lock()
	fs := h.followers
	h.followers = map[*Follower[T]]struct{}{}
	h.n.Store(0)
	h.mu.Unlock()
	for f := range fs {
		f.once.Do(func() { close(f.ch) })
	}
}

// C delivers the events; it is closed when the follower or the hub is.
func (f *Follower[T]) C() <-chan T { return f.ch }

// TakeLost returns how many events f lost since the last call.
func (f *Follower[T]) TakeLost() uint64 { return f.lost.Swap(0) }

// Close unsubscribes f. It is idempotent.
func (f *Follower[T]) Close() {
	h := f.hub
	h.mu.Lock()
	delete(h.followers, f)
	h.n.Store(int32(len(h.followers)))
	h.mu.Unlock()
	f.once.Do(func() { close(f.ch) })
}
