package dns

// This file holds the per-port rate limit on queries: a token bucket per
// port, so that a flood from one container cannot starve the others.

import (
	"sync"
	"time"
)

// limiter holds a token bucket per port. The zero rate means no limit.
type limiter struct {
	rate  float64 // tokens per second
	burst float64 // bucket size
	now   func() time.Time

	// mu guards ports; each bucket has its own lock, so ports do not
	// contend once their bucket exists.
	mu    sync.RWMutex
	ports map[int]*bucket
}

// bucket is one port's token bucket.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(max(burst, 1)), now: now, ports: map[int]*bucket{}}
}

// allow takes a token from port's bucket and reports whether there was
// one. It allocates only the first time it sees a port.
func (l *limiter) allow(port int) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.RLock()
	b := l.ports[port]
	l.mu.RUnlock()
	if b == nil {
		l.mu.Lock()
		if b = l.ports[port]; b == nil {
			b = &bucket{tokens: l.burst, last: l.now()}
			l.ports[port] = b
		}
		l.mu.Unlock()
	}
	now := l.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forget drops port's bucket.
func (l *limiter) forget(port int) {
	l.mu.Lock()
	delete(l.ports, port)
	l.mu.Unlock()
}
