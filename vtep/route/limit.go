package route

// This file holds the rate limit on the ICMP errors a port gets.

import "sync"

// Error rate limit per port: ErrorRate errors a second, bursts of up to
// ErrorBurst. A burst is what one traceroute (three probes a hop) or a
// tracepath needs; the rate, what path MTU discovery by a busy container
// needs (one error per flow that meets the MTU), far below what it would
// take to make the switch a reflector.
const (
	ErrorRate  = 100
	ErrorBurst = 20
)

// Limiter is a token bucket kept as the time at which it will be full
// again (the generic cell rate algorithm): Allow is a comparison and an
// addition. The zero value is full. It is safe for concurrent use (a port's
// readers share one).
type Limiter struct {
	mu  sync.Mutex
	tat int64 // theoretical arrival time, unix nanoseconds: full from then on
}

// Allow reports whether one more error may be sent at now (unix
// nanoseconds) by a bucket of rate tokens a second holding at most burst,
// and takes the token if so. rate <= 0 allows everything.
func (l *Limiter) Allow(now int64, rate, burst int) bool {
	if rate <= 0 {
		return true
	}
	interval := int64(1e9) / int64(rate)
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := max(l.tat, now)
	if tat-now > int64(max(burst-1, 0))*interval {
		return false
	}
	l.tat = tat + interval
	return true
}
