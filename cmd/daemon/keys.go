package daemon

// This file holds the key rotator: it keeps the gossip keyring on the
// schedule derived from the cluster secret (gossip/secret.Schedule), so
// keys rotate by themselves, the same on every member, with no message
// exchanged. A node that was down through any number of rotations computes
// the current ring when it starts, and one whose machine slept refreshes
// within refreshEvery of waking.

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

// refreshEvery bounds how long the ring may lag the schedule: timers run
// on the monotonic clock, which stops while a machine sleeps and does not
// follow a stepped wall clock, so the ring is also refreshed this often.
const refreshEvery = time.Minute

// keySetter is what the rotator needs of the agent: *gossip.Agent.
type keySetter interface {
	SetKeys(primary []byte, ring [][]byte, managed func([]byte) bool) error
}

var _ keySetter = (*gossip.Agent)(nil)

// keyRotator applies the key schedule to the agent's keyring.
type keyRotator struct {
	agent  keySetter
	secret secret.Secret
	sched  secret.Schedule
	log    *slog.Logger
	now    func() time.Time                     // the wall clock; tests inject one
	after  func(time.Duration) <-chan time.Time // time.After; tests inject one

	epoch atomic.Uint64 // the epoch of the primary key last applied

	stop chan struct{}
	done sync.WaitGroup
}

func newKeyRotator(a keySetter, s secret.Secret, sched secret.Schedule, log *slog.Logger) *keyRotator {
	return &keyRotator{agent: a, secret: s, sched: sched, log: log, now: time.Now, after: time.After}
}

// apply sets the ring the schedule gives for now.
func (r *keyRotator) apply() error {
	now := r.now()
	primary, ring := r.sched.Keys(r.secret, now)
	if err := r.agent.SetKeys(primary, ring, r.sched.Derived(r.secret, now)); err != nil {
		return err
	}
	n := r.sched.Epoch(now)
	if old := r.epoch.Swap(n); old != n && old != 0 {
		r.log.Info("gossip key rotated", "epoch", n, "next", r.sched.Next(now).UTC().Format(time.RFC3339))
	}
	return nil
}

// start applies the ring now and then at every boundary of the schedule
// (and every refreshEvery) until close.
func (r *keyRotator) start() error {
	if err := r.apply(); err != nil {
		return err
	}
	r.stop = make(chan struct{})
	r.done.Add(1)
	go r.run()
	return nil
}

func (r *keyRotator) run() {
	defer r.done.Done()
	for {
		now := r.now()
		wait := min(r.sched.Next(now).Sub(now), refreshEvery)
		select {
		case <-r.stop:
			return
		case <-r.after(wait):
			if err := r.apply(); err != nil {
				r.log.Warn("gossip keys not rotated", "err", err)
			}
		}
	}
}

// close stops the rotator. Idempotent.
func (r *keyRotator) close() {
	if r.stop != nil {
		close(r.stop)
		r.done.Wait()
		r.stop = nil
	}
}
