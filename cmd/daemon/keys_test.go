package daemon

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

// fakeKeys is a keySetter that records the rings it is given.
type fakeKeys struct {
	mu      sync.Mutex
	primary []byte
	ring    [][]byte
	calls   int
}

func (f *fakeKeys) SetKeys(primary []byte, ring [][]byte, _ func([]byte) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.primary, f.ring = primary, ring
	f.calls++
	return nil
}

func (f *fakeKeys) get() ([]byte, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.primary, f.calls
}

// fakeClock is a wall clock moved by hand, whose timers fire when it
// passes them.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiting []fakeTimer
	armed   chan struct{} // a timer was set
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t, armed: make(chan struct{}, 16)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiting = append(c.waiting, fakeTimer{at: c.now.Add(d), c: ch})
	c.armed <- struct{}{}
	return ch
}

// Set moves the clock to t and fires the timers it passes.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiting[:0]
	for _, w := range c.waiting {
		if !w.at.After(t) {
			w.c <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiting = kept
}

// TestKeyRotatorSchedule: the rotator sets the schedule's ring at start,
// again at each boundary, and refreshes within refreshEvery; a node whose
// rotator starts after missing several rotations holds exactly the ring of
// one that went through them.
func TestKeyRotatorSchedule(t *testing.T) {
	s, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	sched := secret.Schedule{Interval: time.Hour}
	start := time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC)
	clock := newFakeClock(start)
	keys := &fakeKeys{}
	r := newKeyRotator(keys, s, sched, slog.New(slog.DiscardHandler))
	r.now, r.after = clock.Now, clock.After
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer r.close()
	want, _ := sched.Keys(s, start)
	if got, _ := keys.get(); !bytes.Equal(got, want) {
		t.Fatal("start did not set the schedule's primary key")
	}
	// Step through three boundaries, a minute at a time.
	for now := start; now.Before(start.Add(3 * time.Hour)); {
		<-clock.armed // the rotator waits for its next timer
		now = now.Add(time.Minute)
		clock.Set(now)
		want, _ := sched.Keys(s, now)
		deadline := time.Now().Add(10 * time.Second)
		for got, _ := keys.get(); !bytes.Equal(got, want); got, _ = keys.get() {
			if time.Now().After(deadline) {
				t.Fatalf("at %v: the primary key is not the schedule's (epoch %d)", now, sched.Epoch(now))
			}
			time.Sleep(time.Millisecond)
		}
	}
	if r.epoch.Load() != sched.Epoch(start.Add(3*time.Hour)) {
		t.Errorf("epoch %d, want %d", r.epoch.Load(), sched.Epoch(start.Add(3*time.Hour)))
	}

	// A node down from the start until now: its first ring is the same.
	late := &fakeKeys{}
	r2 := newKeyRotator(late, s, sched, slog.New(slog.DiscardHandler))
	r2.now, r2.after = clock.Now, clock.After
	if err := r2.start(); err != nil {
		t.Fatal(err)
	}
	defer r2.close()
	keys.mu.Lock()
	late.mu.Lock()
	same := bytes.Equal(keys.primary, late.primary) && len(keys.ring) == len(late.ring)
	for i := range keys.ring {
		same = same && bytes.Equal(keys.ring[i], late.ring[i])
	}
	late.mu.Unlock()
	keys.mu.Unlock()
	if !same {
		t.Error("a node that missed three rotations holds another ring than one that went through them")
	}
}
