package events

import (
	"testing"
	"time"
)

// TestSlowFollower: a follower that does not read loses events, counted,
// and never blocks the publisher or the other followers.
func TestSlowFollower(t *testing.T) {
	h := New[int]()
	if h.Active() {
		t.Fatal("active with no follower")
	}
	h.Publish(0) // nobody follows: dropped, not counted
	slow, fast := h.Follow(4), h.Follow(100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			h.Publish(i)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a follower that does not read")
	}
	for i := range 10 {
		if got := <-fast.C(); got != i {
			t.Fatalf("fast follower got %d, want %d", got, i)
		}
	}
	for i := range 4 {
		if got := <-slow.C(); got != i {
			t.Fatalf("slow follower got %d, want %d", got, i)
		}
	}
	if n := slow.TakeLost(); n != 6 {
		t.Errorf("slow follower lost %d, want 6", n)
	}
	if n := slow.TakeLost(); n != 0 {
		t.Errorf("lost count not reset: %d", n)
	}
	if pub, lost := h.Stats(); pub != 10 || lost != 6 {
		t.Errorf("stats %d published, %d lost", pub, lost)
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C(); ok {
		t.Error("closed follower's channel still open")
	}
	h.Close()
	if _, ok := <-fast.C(); ok {
		t.Error("follower's channel open after the hub closed")
	}
	fast.Close() // after the hub's Close: no panic
}
