package dns

import (
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestRateLimit(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r, _ := newTestResponder(t, func(c *Config) {
		c.RatePerPort = 10
		c.Burst = 5
		c.Now = clk.Now
	})
	x := q{name: "web", typ: layers.DNSTypeA}
	frame := x.udpFrame(t, nil)
	count := func(port, n int) (answered int) {
		for range n {
			if v, _ := handle(r, port, vniA, frame); v == Answered {
				answered++
			}
		}
		return answered
	}
	if got := count(1, 8); got != 5 {
		t.Errorf("port 1: %d of 8 answered, want the burst of 5", got)
	}
	if got := r.Stats().Dropped.Rate; got != 3 {
		t.Errorf("dropped for rate %d, want 3", got)
	}
	if got := count(2, 5); got != 5 {
		t.Errorf("port 2: %d of 5 answered, want 5: one port's flood must not starve another", got)
	}
	clk.Advance(100 * time.Millisecond) // one token at 10/s
	if got := count(1, 3); got != 1 {
		t.Errorf("port 1 after 100ms: %d answered, want 1", got)
	}
	clk.Advance(time.Hour) // refills to the burst, not beyond
	if got := count(1, 10); got != 5 {
		t.Errorf("port 1 after an hour: %d answered, want 5", got)
	}
	r.ForgetPort(1)
	if got := count(1, 10); got != 5 {
		t.Errorf("port 1 after ForgetPort: %d answered, want a fresh burst of 5", got)
	}
	// TCP SYNs draw from the same bucket.
	if v, _ := handle(r, 1, vniA, x.tcpFrame(t, true, false, false, false, 1, 0, 1460, nil)); v != Dropped {
		t.Errorf("SYN over the limit: verdict %v, want dropped", v)
	}
}

func TestRateUnlimited(t *testing.T) {
	l := newLimiter(0, 0, time.Now)
	for range 10000 {
		if !l.allow(1) {
			t.Fatal("a zero rate limited")
		}
	}
}
