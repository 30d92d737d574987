// Package testbed builds network-namespace topologies for end-to-end tests
// and the benchmark harness: namespaces, veth links between them, processes
// running inside them, and the Linux kernel's vxlan device as a peer.
//
// This file holds the Bed (naming, the cleanup stack, Close). netns.go holds
// namespaces and veths, proc.go processes, ping.go reachability, vxlan.go the
// kernel vxlan wiring, stream.go the TCP integrity check, root.go the
// testing entry points.
//
// Design notes:
//   - Everything is created inside namespaces the Bed made; nothing is
//     configured in the root namespace. Veth pairs are created directly into
//     their two namespaces (`ip link add A netns X type veth peer name B
//     netns Y`), so they never exist in the root namespace, need no unique
//     temporary name there, and disappear with their namespaces.
//   - Names are <prefix><pid>-<bed counter>-<name>, so parallel test
//     binaries and parallel tests in one binary never clash.
//   - Every undo step is pushed on the cleanup stack before the thing it
//     undoes is created. Close first stops every process the Bed started,
//     then pops the stack. Deleting a namespace first SIGKILLs whatever still
//     runs in it (`ip netns pids`), which also catches processes that escaped
//     their process group (setsid, daemons).
//   - The package shells out to ip, bridge, ethtool and ping on purpose: the
//     kernel peer is configured exactly as users configure it, and every
//     error carries the command line that failed.
//   - The core does not import testing; New takes the small TB interface,
//     so the benchmark program can use NewStandalone without it.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by every method that would create something after
// the Bed has been closed (or while it is closing).
var ErrClosed = errors.New("testbed: bed closed")

const (
	// cmdTimeout bounds each setup or teardown command the package runs on
	// its own (ip, bridge, ethtool). They finish in milliseconds; 30 s only
	// guards against a wedged kernel or a stuck tool.
	cmdTimeout = 30 * time.Second

	// stopGrace is how long Close lets a process handle SIGTERM before it
	// sends SIGKILL: long enough for ovlsw to tear down its TAPs and leave
	// the gossip cluster, short enough that Ctrl-C feels immediate.
	stopGrace = 3 * time.Second

	// pollInterval is the pause between checks when waiting for a condition
	// (a ping, namespace processes dying). 50 ms keeps waits short without
	// spinning.
	pollInterval = 50 * time.Millisecond
)

// bedSeq numbers Beds within this process, so parallel tests get distinct
// names.
var bedSeq atomic.Uint64

// validName matches the names and prefixes the package accepts for
// namespaces: they become file names under /run/netns.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// A Bed owns a set of network namespaces and the processes running in them,
// and removes all of them on Close. All methods are safe for concurrent use.
type Bed struct {
	id string // <prefix><pid>-<seq>, the prefix of every namespace name

	// mu guards the fields below.
	mu       sync.Mutex
	closed   bool               // set once Close starts; nothing new is created after
	cleanups []cleanup          // undo steps, run in reverse order
	procs    map[*Proc]struct{} // processes still running
	nsNames  map[string]bool    // short names handed to Netns
	ifSeq    int                // counter for generated interface names

	closeOnce sync.Once
	closeErr  error
}

// cleanup is one undo step on the Bed's stack.
type cleanup struct {
	what string
	fn   func() error
}

// NewStandalone returns an empty Bed for programs that are not tests (the
// benchmark harness). prefix starts every namespace name (for example
// "ovb"); it may hold letters, digits, '-' and '_'. The caller must call
// Close, also on Ctrl-C: Close may be called from a signal-handling
// goroutine while other goroutines still use the Bed.
func NewStandalone(prefix string) (*Bed, error) {
	if !validName.MatchString(prefix) {
		return nil, fmt.Errorf("testbed: prefix %q: want 1-32 of [A-Za-z0-9_-]", prefix)
	}
	return &Bed{
		id:      fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), bedSeq.Add(1)),
		procs:   make(map[*Proc]struct{}),
		nsNames: make(map[string]bool),
	}, nil
}

// ID is the Bed's unique name, <prefix><pid>-<counter>. Every namespace
// name starts with it; callers may use it to name their own scratch files.
func (b *Bed) ID() string { return b.id }

// Close stops every process the Bed started (SIGTERM, then SIGKILL after a
// grace period of a few seconds), then removes everything the Bed created in
// reverse order of creation. It returns the joined errors of the steps that
// failed. Close is idempotent: later and concurrent calls wait for the first
// to finish and return its result. Every step is bounded in time, so Close
// is safe on a Ctrl-C path.
func (b *Bed) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Bed) close() error {
	b.mu.Lock()
	b.closed = true
	procs := make([]*Proc, 0, len(b.procs))
	for p := range b.procs {
		procs = append(procs, p)
	}
	cleanups := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()

	// Stop processes in parallel so N stubborn processes cost one grace
	// period, not N. Their exit status is not an error of Close.
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Stop(stopGrace)
		}()
	}
	wg.Wait()

	for i := len(cleanups) - 1; i >= 0; i-- {
		if err := cleanups[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("testbed: cleanup %s: %w", cleanups[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// nextIfName returns an interface name unique within this Bed, at most 15
// bytes (IFNAMSIZ-1) for any realistic counter.
func (b *Bed) nextIfName(prefix string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ifSeq++
	return fmt.Sprintf("%s%d", prefix, b.ifSeq)
}

// Poll calls cond every 50 ms until it returns true, ctx is done or
// timeout passes, and reports whether cond returned true (it asks once
// more at the end). Tests and tools built on the test bed wait with it
// rather than sleep.
func Poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}
