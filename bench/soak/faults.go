package main

// This file holds the fault loop. Each cycle injects, one after the other
// with Pause of steady traffic between them: a fresh container attached, a
// node SIGKILLed and restarted, a long-lived container detached and
// attached again, a node SIGTERMed and restarted, a node stopped for an
// upgrade (SIGUSR2, when `ovlsw up --help` offers it) and restarted, and
// the fresh container removed (detached, or on odd cycles its namespace
// deleted). After each
// fault the soak waits for every flow to complete a round trip after the
// repair, records the longest gap, and waits for every node's FDB and
// endpoint list to match the live endpoints.
//
// Design notes:
//   - Restart semantics. After a SIGKILL or SIGUSR2 the restarted daemon
//     is expected to take its containers back (their eth0 kept, the endpoint listed);
//     one it has not taken back within readoptTimeout is attached again
//     with its address and MAC and counted as a reattach, which fails the
//     run unless --allow-reattach. After a SIGTERM, ovlsw removes its ports,
//     so attaching again is the expected repair and is counted apart. An
//     eth0 still in a container that its restarted node does not list is a
//     leaked TAP: it is removed, recorded, and fails the run.
//   - A re-attached long-lived container asks for its old address (and,
//     after a restart, its old MAC), so flows reconnect to the same place;
//     if the address is refused the flows follow whatever address it gets.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// Fault kinds as the report names them, in report order.
const (
	kindKill        = "sigkill-restart"
	kindTerm        = "sigterm-restart"
	kindUpgrade     = "sigusr2-restart"
	kindReattach    = "detach-reattach"
	kindFreshAttach = "fresh-attach"
	kindFreshDetach = "fresh-detach"
	kindFreshDelete = "fresh-netns-delete"
)

var faultKinds = []string{kindKill, kindTerm, kindUpgrade, kindReattach, kindFreshAttach, kindFreshDetach, kindFreshDelete}

const (
	// readoptTimeout is how long a node restarted after SIGKILL has, once
	// it answers, to list its containers again with their eth0 in place.
	readoptTimeout = 5 * time.Second
	// bindingsTimeout bounds how long every node's FDB and endpoint list
	// may take to match the live endpoints after a fault: a few gossip
	// rounds normally, memberlist's failure detection (about 6 s) at worst.
	bindingsTimeout = 30 * time.Second
)

// step is one fault of a cycle.
type step struct {
	kind, target string
	run          func(ctx context.Context, rec *faultRecord) error
}

// faultLoop runs cycles of faults until Duration has passed or Cycles are
// done. The first cycle is the warm-up: the never-killed node's resources
// are sampled as the baseline after it.
func (s *soak) faultLoop(ctx context.Context) {
	start := time.Now()
	deadline := start.Add(s.opts.Duration)
	defer func() { s.rep.LoopS = seconds(time.Since(start)) }()
	for cycle := 0; s.opts.Cycles == 0 || cycle < s.opts.Cycles; cycle++ {
		for _, st := range s.cycle(cycle) {
			if ctx.Err() != nil || time.Now().After(deadline) {
				return
			}
			s.fault(ctx, st)
			// Steady traffic until the next fault: its gaps are recorded
			// apart, so a stall here is not blamed on the next fault.
			s.openWindows()
			pause(ctx, s.opts.Pause)
			tcp, udp := s.windowGaps()
			s.rep.addBetween(tcp, udp)
		}
		s.rep.Cycles = cycle + 1
		if cycle == 0 {
			s.rep.Resources.Baseline = s.sampleSteady()
			s.log.printf("warm-up cycle done: baseline of %s taken", s.nodes[0].name)
		}
	}
}

// cycle returns the faults of cycle k. Targets rotate: the killed and the
// terminated node alternate among the nodes other than nodes[0], the
// re-attached container and the fresh container's node walk through all.
// With three nodes the fresh container lives through its node's SIGKILL
// and SIGUSR2 restarts in cycles 0 and 1 (and is then detached, or has its
// namespace deleted: both on a taken-back endpoint, within a --quick run),
// through its node's SIGTERM restart in cycles 3 and 4, and through no
// restart in cycles 2 and 5: six cycles cover each way of ending with each
// kind of past.
func (s *soak) cycle(k int) []step {
	n := len(s.nodes)
	killN := s.nodes[1+k%(n-1)]
	termN := s.nodes[1+(k+1)%(n-1)]
	freshN := s.nodes[(k+1)%n]
	re := s.containers[(k*s.opts.PerNode+k/n)%len(s.containers)]
	steps := []step{
		{kindFreshAttach, freshN.name, func(ctx context.Context, rec *faultRecord) error { return s.freshAttach(ctx, freshN, rec) }},
		{kindKill, killN.name, func(ctx context.Context, rec *faultRecord) error {
			return s.restart(ctx, killN, syscall.SIGKILL, rec)
		}},
		{kindReattach, re.name, func(ctx context.Context, rec *faultRecord) error { return s.detachReattach(ctx, re) }},
		{kindTerm, termN.name, func(ctx context.Context, rec *faultRecord) error {
			return s.restart(ctx, termN, syscall.SIGTERM, rec)
		}},
	}
	if s.upgrade {
		steps = append(steps, step{kindUpgrade, killN.name, func(ctx context.Context, rec *faultRecord) error {
			return s.restart(ctx, killN, syscall.SIGUSR2, rec)
		}})
	}
	kind := kindFreshDetach
	if k%2 == 1 {
		kind = kindFreshDelete
	}
	return append(steps, step{kind, "fresh", func(ctx context.Context, rec *faultRecord) error {
		return s.freshRemove(ctx, kind == kindFreshDelete, rec)
	}})
}

// fault injects one fault, waits for traffic to resume and bindings to
// converge, and records it.
func (s *soak) fault(ctx context.Context, st step) {
	rec := faultRecord{Kind: st.kind, Target: st.target, AtS: seconds(time.Since(s.log.start))}
	s.openWindows()
	start := time.Now()
	err := st.run(ctx, &rec)
	if err == nil {
		err = s.waitAllFlowing(ctx, time.Now(), resumeTimeout)
	}
	rec.RecoverS = seconds(time.Since(start))
	rec.Gap, rec.PathGap = s.windowGaps()
	if err == nil {
		settle, diff := s.checkBindings(ctx, bindingsTimeout, s.knownDiff)
		rec.BindingsS = seconds(settle)
		if len(diff) > 0 {
			err = fmt.Errorf("bindings differ from the live endpoints after %v: %v", bindingsTimeout, diff)
			s.remember(diff)
		}
	} else {
		s.remember(s.bindingDiff(ctx)) // what this failure left behind
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		rec.Error = err.Error()
	}
	s.rep.addFault(rec)
	s.sampleSteady() // tracks the peak RSS
	status := "ok"
	if err != nil {
		status = "FAILED: " + err.Error()
	}
	if rec.Detail != "" {
		status += " (" + rec.Detail + ")"
	}
	s.log.printf("%s %s: traffic back after %.2fs, longest gap TCP %.2fs (%s) UDP %.2fs (%s), bindings %.2fs%s: %s",
		st.kind, rec.Target, rec.RecoverS, rec.Gap.Seconds, rec.Gap.Flow, rec.PathGap.Seconds, rec.PathGap.Flow,
		rec.BindingsS, reattachNote(rec), status)
}

// remember marks binding differences as already failed for, so that later
// faults neither wait for them nor fail for them again.
func (s *soak) remember(diff []string) {
	for _, d := range diff {
		s.knownDiff[d] = true
	}
}

func reattachNote(rec faultRecord) string {
	if rec.Reattached == 0 {
		return ""
	}
	return fmt.Sprintf(", %d re-attached", rec.Reattached)
}

// restart stops n with sig, starts it again with the same flags, and sees
// that its containers are back (see the design notes).
func (s *soak) restart(ctx context.Context, n *node, sig syscall.Signal, rec *faultRecord) error {
	here := s.attachedHere(n)
	timeout := killTimeout
	if sig != syscall.SIGKILL {
		timeout = termTimeout
	}
	l := n.current()
	t0 := time.Now()
	err := n.stop(sig, timeout)
	stopped := time.Since(t0)
	switch {
	case !l.proc.Exited():
		return err
	case sig != syscall.SIGKILL && err != nil:
		return fmt.Errorf("%s after %v: %v (want exit status 0)\n%s", n.name, sig, err, tail(l.proc.Output()))
	}
	if sig == syscall.SIGTERM {
		if _, err := os.Stat(n.socket); !errors.Is(err, os.ErrNotExist) {
			s.rep.leak(fmt.Sprintf("%s: control socket %s still there after SIGTERM (%v)", n.name, n.socket, err))
		}
	}
	for _, name := range s.tapLinks(ctx, n) {
		s.rep.leak(fmt.Sprintf("%s: TAP %s still in the node's namespace after %v", n.name, name, sig))
	}
	n.mu.Lock()
	n.restarts++
	n.mu.Unlock()
	t1 := time.Now()
	if err := s.startNode(ctx, n); err != nil {
		return err
	}
	started := time.Since(t1)

	wait := readoptTimeout
	if sig == syscall.SIGTERM {
		wait = 0 // the ports went with the process: look once
	}
	errs := make([]error, len(here))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, c := range here {
		wg.Add(1)
		go func() {
			defer wg.Done()
			back, err := s.takeBack(ctx, n, c, wait)
			if back || err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			rec.Reattached++
			mu.Unlock()
			s.rep.countReattach(sig != syscall.SIGTERM)
		}()
	}
	wg.Wait()
	rec.Detail = fmt.Sprintf("old process gone after %.2fs, new one answering after %.2fs more, its %d containers back or re-attached after %.2fs more",
		stopped.Seconds(), started.Seconds(), len(here), time.Since(t1).Seconds()-started.Seconds())
	return errors.Join(errs...)
}

// takeBack waits up to wait for restarted node n to list c with c's eth0
// in place; otherwise it attaches c again with its address and MAC and
// reports back false.
func (s *soak) takeBack(ctx context.Context, n *node, c *container, wait time.Duration) (back bool, err error) {
	ep, _ := c.endpoint()
	var listed control.Endpoint
	if testbed.Poll(ctx, wait, func() bool {
		var ok bool
		listed, ok = s.listedOn(ctx, n, c)
		return ok && s.bed.LinkExists(c.ns, "eth0")
	}) {
		if listed.Address != ep.Address || listed.MAC != ep.MAC {
			s.rep.note(fmt.Sprintf("%s came back as %v %s, was %v %s", c.name, listed.Address, listed.MAC, ep.Address, ep.MAC))
		}
		c.setEndpoint(listed, true)
		return true, nil
	}
	c.setEndpoint(ep, false)
	if s.bed.LinkExists(c.ns, "eth0") {
		s.rep.leak(fmt.Sprintf("%s: eth0 left in %s, not listed by the restarted node", n.name, c.name))
		if _, err := c.ns.Run(ctx, "ip", "link", "del", "eth0"); err != nil {
			return false, err
		}
	}
	return false, s.attach(ctx, c, ep.Address, ep.MAC)
}

// listedOn returns c's endpoint as n lists it, if n does.
func (s *soak) listedOn(ctx context.Context, n *node, c *container) (control.Endpoint, bool) {
	eps, err := n.endpoints(ctx)
	if err != nil {
		return control.Endpoint{}, false
	}
	for _, ep := range eps {
		if control.NetnsPath(ep.Netns) == control.NetnsPath(c.ns.Name) && ep.IfName == "eth0" {
			return ep, true
		}
	}
	return control.Endpoint{}, false
}

// detachReattach detaches c and attaches it again with its address (and a
// new MAC, as a re-created container would have).
func (s *soak) detachReattach(ctx context.Context, c *container) error {
	ep, _ := c.endpoint()
	if err := s.detach(ctx, c); err != nil {
		return err
	}
	if err := s.attach(ctx, c, ep.Address, ""); err != nil {
		s.rep.note(fmt.Sprintf("%s: re-attach with its address %v refused (%v); attached with a new one", c.name, ep.Address, err))
		return s.attach(ctx, c, netip.Prefix{}, "")
	}
	return nil
}

// freshAttach attaches a new container on n and waits for its first round
// trip to a long-lived container on another node.
func (s *soak) freshAttach(ctx context.Context, n *node, rec *faultRecord) error {
	s.freshSeq++
	name := fmt.Sprintf("x%d", s.freshSeq)
	ns, err := s.bed.Netns(name)
	if err != nil {
		return err
	}
	c := &container{name: name, ns: ns, home: n}
	start := time.Now()
	if err := s.attach(ctx, c, netip.Prefix{}, ""); err != nil {
		return err
	}
	s.fresh = append(s.fresh, c)
	var peer *container
	for _, p := range s.containers {
		if p.home != n {
			peer = p
			break
		}
	}
	var lastErr error
	if !testbed.Poll(ctx, resumeTimeout, func() bool {
		lastErr = roundTrip(ctx, ns, netip.AddrPortFrom(peer.addr(), echoPort))
		return lastErr == nil
	}) {
		return fmt.Errorf("fresh %s on %s: no round trip to %s within %v: %w", name, n.name, peer.name, resumeTimeout, lastErr)
	}
	rec.Detail = fmt.Sprintf("%s attached and its first round trip to %s done %.2fs after the attach began", name, peer.name, time.Since(start).Seconds())
	return nil
}

// freshRemove detaches the oldest fresh container and deletes its
// namespace, or deletes the namespace of the attached container and waits
// for its node to notice. A container whose detach failed stays listed as
// attached, so the binding checks keep expecting it.
func (s *soak) freshRemove(ctx context.Context, deleteNetns bool, rec *faultRecord) error {
	if len(s.fresh) == 0 {
		return errors.New("no fresh container to remove")
	}
	c := s.fresh[0]
	rec.Target = c.name
	ep, _ := c.endpoint()
	if !deleteNetns {
		if err := s.detach(ctx, c); err != nil {
			return err
		}
		s.fresh = s.fresh[1:]
		// Done with: deleting it keeps a long run's namespaces bounded.
		return deleteNamespace(ctx, c)
	}
	if err := deleteNamespace(ctx, c); err != nil {
		return err
	}
	c.setEndpoint(ep, false)
	s.fresh = s.fresh[1:]
	start := time.Now()
	if !testbed.Poll(ctx, bindingsTimeout, func() bool {
		_, listed := s.listedOn(ctx, c.home, c)
		return !listed
	}) {
		return fmt.Errorf("%s still lists %s (%v) %v after its namespace was deleted", c.home.name, c.name, ep.Address, bindingsTimeout)
	}
	rec.Detail = fmt.Sprintf("%s dropped the endpoint %.2fs after the namespace was deleted", c.home.name, time.Since(start).Seconds())
	return nil
}

// deleteNamespace deletes c's namespace (`ip netns del`); the Bed's own
// cleanup skips a namespace that is gone.
func deleteNamespace(ctx context.Context, c *container) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", c.ns.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", c.ns.Name, err, out)
	}
	return nil
}
