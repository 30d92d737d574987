package gossip

import (
	"fmt"
	"testing"
	"time"
)

// leaveTimeout is longer than any of these tests needs, so that a Leave
// that waits out its timeout instead of seeing the others gone fails with
// the timeout error rather than by a timing assertion.
const leaveTimeout = 10 * time.Second

// joined starts count nodes and waits until each sees every other alive.
func joined(t *testing.T, count int) []*node {
	t.Helper()
	nodes := startCluster(t, count)
	waitFor(t, settle, "members alive", func() error {
		for _, n := range nodes {
			st := memberStates(n)
			for _, o := range nodes {
				if st[o.name] != stateAlive {
					return fmt.Errorf("%s sees %s %q", n.name, o.name, st[o.name])
				}
			}
		}
		return nil
	})
	return nodes
}

// TestLeaveTogether stops both nodes of a cluster at once, as when they
// are shut down together: each sees the other leave and neither waits for
// a member to send its leave to.
func TestLeaveTogether(t *testing.T) {
	nodes := joined(t, 2)
	start := make(chan struct{})
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			<-start
			err := n.agent.Leave(leaveTimeout)
			if err != nil {
				err = fmt.Errorf("%s: %w", n.name, err)
			}
			errs <- err
		}()
	}
	close(start)
	for range nodes {
		if err := <-errs; err != nil {
			t.Errorf("Leave = %v, want nil", err)
		}
	}
}

// TestLeaveAfterCrash leaves a cluster whose other member stopped without
// leaving (a crash): the leave is sent to its closed port or it is
// declared dead, and either way Leave returns nil.
func TestLeaveAfterCrash(t *testing.T) {
	nodes := joined(t, 2)
	if err := nodes[1].agent.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].agent.Leave(leaveTimeout); err != nil {
		t.Errorf("Leave = %v, want nil", err)
	}
}

// TestLeaveAlone has one node of two leave: the other is alive, gets the
// leave and shows the node left.
func TestLeaveAlone(t *testing.T) {
	nodes := joined(t, 2)
	leaver, stayer := nodes[0], nodes[1]
	if err := leaver.agent.Leave(leaveTimeout); err != nil {
		t.Fatalf("Leave = %v, want nil", err)
	}
	waitFor(t, settle, "leave seen", func() error {
		if st := memberStates(stayer)[leaver.name]; st != stateLeft {
			return fmt.Errorf("%s sees %s %q", stayer.name, leaver.name, st)
		}
		return nil
	})
}

// TestLeaveUnsent has a node leave whose broadcasts are lost while the
// other member stays alive: Leave reports the timeout.
func TestLeaveUnsent(t *testing.T) {
	nodes := joined(t, 2)
	leaver := nodes[0]
	leaver.agent.dropOut.Store(true)
	if err := leaver.agent.Leave(100 * time.Millisecond); err == nil {
		t.Errorf("Leave with broadcasts lost and %s alive = nil, want a timeout error", nodes[1].name)
	}
}

// TestLeaveClose closes a node while its Leave, without a timeout, waits
// for a broadcast that is lost: Close ends the wait.
func TestLeaveClose(t *testing.T) {
	nodes := joined(t, 2)
	leaver := nodes[0]
	leaver.agent.dropOut.Store(true)
	done := make(chan error, 1)
	go func() { done <- leaver.agent.Leave(0) }()
	// Close only once memberlist has left (it panics on a Leave after
	// Shutdown): it no longer lists us among the live members.
	waitFor(t, settle, "Leave under way", func() error {
		for _, m := range leaver.agent.ml.Members() {
			if m.Name == leaver.name {
				return fmt.Errorf("%s not left memberlist yet", leaver.name)
			}
		}
		return nil
	})
	if err := leaver.agent.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Errorf("Leave interrupted by Close with %s alive = nil, want an error", nodes[1].name)
	}
}
