package main

// This file holds the checks: resource samples of the never-killed node
// from /proc and their bound, the comparison of every node's FDB and
// endpoint list with the live endpoints, the end-of-run checks, and the
// teardown checks (every node exits 0 on SIGTERM and leaves no TAP, socket
// or namespace behind).
//
// The bound covers what /proc shows (threads, open file descriptors, RSS)
// and the goroutine count `ovlsw status` reports.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// The bound on the never-killed node at the end of the run: at most
// growthPct percent of its value after warm-up, plus a constant for
// the noise of a short run (a connection in flight, the Go runtime's
// thread pool, heap not yet returned to the kernel).
const (
	growthPct   = 150
	fdSlack     = 16
	threadSlack = 16
	// goroutineSlack: memberlist and the control API serve each connection
	// on a goroutine, so a sample can catch a few in flight.
	goroutineSlack = 32
	rssSlackKiB    = 32 << 10
)

// procSample is one process's resources as /proc shows them.
type procSample struct {
	PID     int     `json:"pid"`
	AtS     float64 `json:"at_s"` // since the soak started
	RSSKiB  int64   `json:"rss_kib"`
	FDs     int     `json:"fds"`
	Threads int     `json:"threads"`
	// Goroutines is what `ovlsw status` reports (node.goroutines); 0 if
	// it could not be read.
	Goroutines int `json:"goroutines"`
}

// sampleProc reads pid's VmRSS, Threads and open file descriptors.
func sampleProc(pid int) (procSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	rss, threads, err := parseStatus(b)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return procSample{}, err
	}
	return procSample{PID: pid, RSSKiB: rss, Threads: threads, FDs: len(fds)}, nil
}

// parseStatus finds VmRSS (in kB) and Threads in a /proc/PID/status file.
func parseStatus(b []byte) (rssKiB int64, threads int, err error) {
	var haveRSS, haveThreads bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch {
		case key == "VmRSS" && len(f) == 2 && f[1] == "kB":
			rssKiB, err = strconv.ParseInt(f[0], 10, 64)
			haveRSS = err == nil
		case key == "Threads" && len(f) == 1:
			threads, err = strconv.Atoi(f[0])
			haveThreads = err == nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
	}
	if !haveRSS || !haveThreads {
		return 0, 0, errors.New("no VmRSS or Threads line")
	}
	return rssKiB, threads, nil
}

// sampleSteady samples the never-killed node and keeps the sample (one per
// fault) and its peak RSS.
func (s *soak) sampleSteady() procSample {
	p := s.nodes[0].current().proc
	ps, err := sampleProc(p.Pid())
	if err != nil {
		s.rep.check("resources of "+s.nodes[0].name+" readable", false, err.Error())
		return procSample{}
	}
	ps.AtS = seconds(time.Since(s.log.start))
	var st control.Status
	if err := s.nodes[0].get(context.Background(), "/v1/status", &st); err == nil {
		ps.Goroutines = st.Node.Goroutines
	}
	s.rep.mu.Lock()
	s.rep.Resources.PeakRSSKiB = max(s.rep.Resources.PeakRSSKiB, ps.RSSKiB)
	s.rep.Resources.Samples = append(s.rep.Resources.Samples, ps)
	s.rep.mu.Unlock()
	return ps
}

// bound returns the largest value allowed at the end for base after
// warm-up.
func bound(base, slack int64) int64 { return base*growthPct/100 + slack }

// checkBindings waits up to timeout for bindingDiff, less the differences
// in ignore, to be empty and returns how long that took and, if it never
// was, the last difference.
func (s *soak) checkBindings(ctx context.Context, timeout time.Duration, ignore map[string]bool) (time.Duration, []string) {
	start := time.Now()
	var diff []string
	if testbed.Poll(ctx, timeout, func() bool {
		diff = slices.DeleteFunc(s.bindingDiff(ctx), func(d string) bool { return ignore[d] })
		return len(diff) == 0
	}) {
		return time.Since(start), nil
	}
	return time.Since(start), diff
}

// bindingDiff compares every node's FDB entries of the network and its own
// endpoint list with the live endpoints: each live MAC at a local port on
// its home node and at its home node's VTEP everywhere else, nothing else
// in the VNI, nothing flagged duplicate; each node listing exactly the
// containers attached on it.
func (s *soak) bindingDiff(ctx context.Context) []string {
	owner := map[string]*node{}          // MAC -> home node
	who := map[string]string{}           // MAC -> container name
	local := map[*node]map[string]bool{} // node -> "netns MAC" of its endpoints
	for _, c := range s.allContainers() {
		ep, ok := c.endpoint()
		if !ok {
			continue
		}
		mac := strings.ToLower(ep.MAC)
		owner[mac], who[mac] = c.home, c.name
		if local[c.home] == nil {
			local[c.home] = map[string]bool{}
		}
		local[c.home][filepath.Base(control.NetnsPath(c.ns.Name))+" "+mac] = true
	}
	var diff []string
	for _, n := range s.nodes {
		var es []control.FDBEntry
		if err := n.get(ctx, "/v1/fdb", &es); err != nil {
			diff = append(diff, fmt.Sprintf("%s: fdb: %v", n.name, err))
			continue
		}
		got := map[string]control.FDBEntry{}
		for _, e := range es {
			if e.VNI == networkVNI {
				got[strings.ToLower(e.MAC)] = e
			}
		}
		for mac, o := range owner {
			e, ok := got[mac]
			switch {
			case !ok:
				diff = append(diff, fmt.Sprintf("%s: no entry for %s (%s on %s)", n.name, mac, who[mac], o.name))
			case o == n && e.Port == "":
				diff = append(diff, fmt.Sprintf("%s: %s (%s) at %s, want a local port", n.name, mac, who[mac], e.Where))
			case o != n && e.VTEP != o.vtep:
				diff = append(diff, fmt.Sprintf("%s: %s (%s on %s) at %s, want vtep %s", n.name, mac, who[mac], o.name, e.Where, o.vtep))
			case e.Dup:
				diff = append(diff, fmt.Sprintf("%s: %s (%s) flagged duplicate", n.name, mac, who[mac]))
			}
		}
		for mac, e := range got {
			if _, ok := owner[mac]; !ok {
				diff = append(diff, fmt.Sprintf("%s: stale entry %s at %s (origin %s, node %q)", n.name, mac, e.Where, e.Origin, e.Node))
			}
		}
		eps, err := n.endpoints(ctx)
		if err != nil {
			diff = append(diff, fmt.Sprintf("%s: endpoints: %v", n.name, err))
			continue
		}
		listed := map[string]bool{}
		for _, ep := range eps {
			if ep.Network == networkName {
				listed[filepath.Base(control.NetnsPath(ep.Netns))+" "+strings.ToLower(ep.MAC)] = true
			}
		}
		for ep := range listed {
			if !local[n][ep] {
				diff = append(diff, fmt.Sprintf("%s: lists endpoint %s, which is not attached there", n.name, ep))
			}
		}
		for ep := range local[n] {
			if !listed[ep] {
				diff = append(diff, fmt.Sprintf("%s: does not list endpoint %s", n.name, ep))
			}
		}
	}
	slices.Sort(diff)
	return diff
}

// finalChecks runs the end-of-run checks while the cluster still runs.
func (s *soak) finalChecks(ctx context.Context) {
	r := s.rep
	r.Resources.End = s.sampleSteady()
	for _, n := range s.nodes {
		ps, _ := sampleProc(n.current().proc.Pid()) // a zero sample says it could not be read
		n.mu.Lock()
		r.Nodes = append(r.Nodes, nodeReport{Name: n.name, Restarts: n.restarts, End: ps})
		n.mu.Unlock()
	}
	base, end := r.Resources.Baseline, r.Resources.End
	switch {
	case base.PID == 0:
		r.check("resources within bound after warm-up", false,
			"no baseline: the fault loop ended before its first (warm-up) cycle; give a longer --duration")
	case end.PID != base.PID:
		r.check("resources within bound after warm-up", false,
			fmt.Sprintf("%s was restarted (pid %d, then %d): it must live through the run", s.nodes[0].name, base.PID, end.PID))
	default:
		r.check("fds within bound", int64(end.FDs) <= bound(int64(base.FDs), fdSlack),
			fmt.Sprintf("%s: %d after warm-up, %d at the end, bound %d", s.nodes[0].name, base.FDs, end.FDs, bound(int64(base.FDs), fdSlack)))
		r.check("threads within bound", int64(end.Threads) <= bound(int64(base.Threads), threadSlack),
			fmt.Sprintf("%s: %d after warm-up, %d at the end, bound %d", s.nodes[0].name, base.Threads, end.Threads, bound(int64(base.Threads), threadSlack)))
		r.check("goroutines within bound", base.Goroutines > 0 && end.Goroutines > 0 && int64(end.Goroutines) <= bound(int64(base.Goroutines), goroutineSlack),
			fmt.Sprintf("%s: %d after warm-up, %d at the end, bound %d (0: status could not be read)", s.nodes[0].name,
				base.Goroutines, end.Goroutines, bound(int64(base.Goroutines), goroutineSlack)))
		r.check("RSS within bound", end.RSSKiB <= bound(base.RSSKiB, rssSlackKiB),
			fmt.Sprintf("%s: %.1f MiB after warm-up, %.1f MiB at the end, bound %.1f MiB", s.nodes[0].name,
				mib(base.RSSKiB), mib(end.RSSKiB), mib(bound(base.RSSKiB, rssSlackKiB))))
	}

	settle, diff := s.checkBindings(ctx, bindingsTimeout, nil)
	r.check("every node's FDB and endpoints equal the live endpoints", len(diff) == 0,
		fmt.Sprintf("after %.1fs: %s", settle.Seconds(), strings.Join(diff, "; ")))

	var failed []string
	for _, f := range r.FaultLog {
		if f.Error != "" {
			failed = append(failed, fmt.Sprintf("%s %s at %.0fs: %s", f.Kind, f.Target, f.AtS, f.Error))
		}
	}
	r.check("traffic resumed and bindings converged after every fault", len(failed) == 0 && len(r.FaultLog) > 0,
		fmt.Sprintf("%d of %d faults failed: %s", len(failed), len(r.FaultLog), strings.Join(failed, "; ")))

	var corrupt uint64
	for _, f := range s.flows {
		f.mu.Lock()
		corrupt += f.corrupt
		f.mu.Unlock()
	}
	r.check("every echo equal to what was sent", corrupt == 0, fmt.Sprintf("%d round trips came back different", corrupt))

	detail := fmt.Sprintf("%d containers re-attached after a SIGKILL or SIGUSR2 restart: the restarted daemon did not take them back", r.Reattach)
	if s.opts.AllowReattach && r.Reattach > 0 {
		detail += " (allowed by --allow-reattach)"
	}
	r.check("restarted nodes took their containers back", r.Reattach == 0 || s.opts.AllowReattach, detail)
}

// teardownChecks stops every node with SIGTERM and checks it exits 0 and
// leaves no TAP, eth0, control socket or state file behind, and that no
// ovlsw process crashed during the run.
func (s *soak) teardownChecks(ctx context.Context) {
	r := s.rep
	errs := make([]error, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.stop(syscall.SIGTERM, termTimeout); err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", n.name, err, tail(n.current().proc.Output()))
			}
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	r.check("every node exits 0 on SIGTERM", err == nil, errString(err))

	// The nodes' sockets, and the state files beside them, all live in
	// sockDir: SIGTERM must have removed every one. The cluster secret,
	// join key and data key pair beside them stay by design (a node started
	// again rejoins with them and keeps its identity); main removes the
	// directory.
	if ents, err := os.ReadDir(s.sockDir); err != nil {
		r.leak(fmt.Sprintf("%s: %v", s.sockDir, err))
	} else {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".secret") || strings.HasSuffix(e.Name(), ".joinkey") || strings.HasSuffix(e.Name(), ".datakey") {
				continue
			}
			r.leak(fmt.Sprintf("%s left in %s after every node exited on SIGTERM", e.Name(), s.sockDir))
		}
	}
	for _, n := range s.nodes {
		for _, name := range s.tapLinks(ctx, n) {
			r.leak(fmt.Sprintf("%s: TAP %s left in the node's namespace after SIGTERM", n.name, name))
		}
	}
	for _, c := range s.allContainers() {
		if s.bed.LinkExists(c.ns, "eth0") {
			r.leak(fmt.Sprintf("%s: eth0 left after its node exited", c.name))
		}
	}
	r.check("no TAP, eth0, socket or state file left behind", len(r.Leaks) == 0, strings.Join(r.Leaks, "; "))

	var crashes []string
	for _, n := range s.nodes {
		n.mu.Lock()
		crashes = append(crashes, n.crashes...)
		n.mu.Unlock()
	}
	r.check("no ovlsw crashed or panicked", len(crashes) == 0, strings.Join(crashes, "\n"))
}

// tapLinks lists the links in n's namespace that ovlsw names (ovt* for
// container ports before they move, ovl* for host ports).
func (s *soak) tapLinks(ctx context.Context, n *node) []string {
	out, err := n.ns.Run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return []string{"(ip link: " + err.Error() + ")"}
	}
	var taps []string
	for _, name := range linkNames(out) {
		if strings.HasPrefix(name, "ovt") || strings.HasPrefix(name, "ovl") {
			taps = append(taps, name)
		}
	}
	return taps
}

// linkNames parses `ip -o link show`: "2: ul0@if3: <...> ...".
func linkNames(out string) []string {
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// namespaceLeakCheck runs after the Bed is closed: no namespace of this run
// may be left.
func (s *soak) namespaceLeakCheck() {
	left, err := testbed.LeftNetns(s.bed.ID() + "-")
	if err != nil {
		s.rep.check("no namespace left behind", false, err.Error())
		return
	}
	s.rep.check("no namespace left behind", len(left) == 0, strings.Join(left, ", "))
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
