package main

// This file builds the cluster on a testbed.Bed: an underlay LAN of node
// namespaces, an `ovlsw up` in each (the first founds the gossip cluster,
// the others join it), one network created with `ovlsw network create`,
// and containers (namespaces) attached with `ovlsw attach`. It also holds
// the node's life cycle (start, signal, restart, and the watcher that
// tells an expected exit from a crash) and the container's (attach,
// detach).
//
// Design notes:
//   - nodes[0] founds the cluster and is never killed: every restarted node
//     joins it, and it is the process whose file descriptors, threads and
//     RSS are bounded over the whole run.
//   - Clients talk to a daemon over its control socket, as `ovlsw status`
//     does. Attach and detach go through the ovlsw command line with
//     --json, as users and scripts call them; status, endpoints and FDB
//     polls use the control package directly, which costs no process.
//   - A container keeps its last endpoint (address, MAC) while detached, so
//     flows keep dialling the same address and a re-attach can ask for it
//     again; attached says whether the endpoint is live.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

const (
	// networkName, networkVNI and networkSubnet describe the one overlay
	// network every container is attached to. The addresses only exist
	// inside the soak's namespaces.
	networkName   = "soak"
	networkVNI    = 4242
	networkSubnet = "10.42.0.0/24"

	// startTimeout bounds how long a starting node may take to answer on
	// its control socket; it answers within a second.
	startTimeout = 15 * time.Second
	// termTimeout bounds how long a node may take to exit after SIGTERM:
	// it leaves the cluster (up to 2 s) and removes its ports.
	termTimeout = 15 * time.Second
	// killTimeout bounds how long a SIGKILLed node takes to disappear.
	killTimeout = 10 * time.Second
	// attachTimeout bounds an attach, retried while the node is still
	// catching up with the cluster (the network not yet known, an address
	// still held by a binding of the node's previous process). One attach
	// takes about a second: the address-claim settle time.
	attachTimeout = 20 * time.Second
	// cliTimeout bounds one ovlsw client command.
	cliTimeout = 30 * time.Second
)

var underlay = netip.MustParsePrefix("192.168.95.0/24")

// soak is one run: the Bed, the cluster in it, the traffic and the report.
type soak struct {
	opts    options
	bed     *testbed.Bed
	log     logger
	rep     *report
	sockDir string

	nodes      []*node      // nodes[0] is never killed
	containers []*container // long-lived, the flows' ends
	flows      []*flow
	traffic    traffic

	fresh    []*container // fresh containers attached now, oldest first
	freshSeq int
	upgrade  bool // ovlsw up has the SIGUSR2 upgrade stop

	// knownDiff holds the binding differences a fault has already been
	// failed for: later faults do not wait for them again or fail for them
	// (the end-of-run check still does).
	knownDiff map[string]bool
}

// node is one `ovlsw up` process slot: restarted with the same argv.
type node struct {
	name   string
	ns     *testbed.Netns
	argv   []string
	socket string
	vtep   string // VTEP address as FDB entries name it, "ip:port"

	// mu guards the fields below; the exit watchers write crashes.
	mu       sync.Mutex
	life     *life    // the current process
	crashes  []string // unexpected exits and panics, with output
	restarts int
}

// life is one process of a node.
type life struct {
	proc     *testbed.Proc
	client   *control.Client
	stopping atomic.Bool   // the soak signalled proc: its exit is expected
	watched  chan struct{} // closed once watch has judged the exit
}

// container is a network namespace attached to the network on its home
// node.
type container struct {
	name string
	ns   *testbed.Netns
	home *node

	// mu guards the fields below.
	mu       sync.Mutex
	ep       control.Endpoint // the last endpoint, kept while detached
	attached bool
}

func (c *container) endpoint() (control.Endpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ep, c.attached
}

// addr is the container's overlay address (its last one while detached).
func (c *container) addr() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ep.Address.Addr()
}

func (c *container) setEndpoint(ep control.Endpoint, attached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ep, c.attached = ep, attached
}

// build creates the namespaces, starts the nodes, creates the network and
// attaches the long-lived containers.
func (s *soak) build(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ovlsw-soak-")
	if err != nil {
		return err
	}
	s.sockDir = dir
	var hosts []*testbed.Netns
	for i := range s.opts.Nodes {
		ns, err := s.bed.Netns(fmt.Sprintf("n%d", i+1))
		if err != nil {
			return err
		}
		hosts = append(hosts, ns)
	}
	ul, err := s.bed.LAN(underlay, hosts...)
	if err != nil {
		return err
	}
	for i, h := range hosts {
		n := &node{name: fmt.Sprintf("n%d", i+1), ns: h}
		n.socket = filepath.Join(dir, n.name+".sock")
		n.argv = []string{s.opts.Ovlsw, "up", "--name", n.name, "--bind", ul[i].String(), "--socket", n.socket}
		if i > 0 {
			n.argv = append(n.argv, "--join", ul[0].String())
			tok, err := testbed.JoinToken(ctx, s.nodes[0].socket)
			if err != nil {
				return fmt.Errorf("join token of %s: %w", s.nodes[0].name, err)
			}
			n.argv = append(n.argv, "--token", tok)
		}
		if err := s.startNode(ctx, n); err != nil {
			return err
		}
		var st control.Status
		if err := n.get(ctx, "/v1/status", &st); err != nil {
			return err
		}
		n.vtep = st.Node.VTEP.String()
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		if !testbed.Poll(ctx, startTimeout, func() bool {
			var st control.Status
			return n.get(ctx, "/v1/status", &st) == nil && st.Gossip != nil && st.Gossip.Members == len(s.nodes)
		}) {
			return fmt.Errorf("%s does not see all %d nodes as gossip members within %v", n.name, len(s.nodes), startTimeout)
		}
	}
	s.log.printf("%d nodes up and joined", len(s.nodes))

	if _, err := s.cli(ctx, s.nodes[0], "network", "create", networkName,
		"--vni", fmt.Sprint(networkVNI), "--subnet", networkSubnet); err != nil {
		return err
	}
	for _, n := range s.nodes {
		if !testbed.Poll(ctx, attachTimeout, func() bool {
			var ns []control.Network
			return n.get(ctx, "/v1/networks", &ns) == nil && len(ns) == 1
		}) {
			return fmt.Errorf("%s does not list network %s within %v", n.name, networkName, attachTimeout)
		}
	}

	for _, n := range s.nodes {
		for j := range s.opts.PerNode {
			ns, err := s.bed.Netns(fmt.Sprintf("%s%c", n.name, 'a'+j))
			if err != nil {
				return err
			}
			s.containers = append(s.containers, &container{name: n.name + string(rune('a'+j)), ns: ns, home: n})
		}
	}
	errs := make([]error, len(s.containers))
	var wg sync.WaitGroup
	for i, c := range s.containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.attach(ctx, c, netip.Prefix{}, "")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.printf("%d containers attached", len(s.containers))
	return nil
}

// startNode starts n's process and waits until it answers on its control
// socket as that process.
func (s *soak) startNode(ctx context.Context, n *node) error {
	p, err := n.ns.Start(context.Background(), n.argv...)
	if err != nil {
		return err
	}
	l := &life{proc: p, client: control.NewClient(n.socket), watched: make(chan struct{})}
	n.mu.Lock()
	n.life = l
	n.mu.Unlock()
	go n.watch(l)
	var lastErr error
	ok := testbed.Poll(ctx, startTimeout, func() bool {
		var st control.Status
		if lastErr = n.get(ctx, "/v1/status", &st); lastErr != nil {
			return p.Exited()
		}
		return st.Node.PID == p.Pid()
	})
	switch {
	case p.Exited():
		return fmt.Errorf("%s exited at start: %v\n%s", n.name, p.Wait(0), tail(p.Output()))
	case !ok:
		return fmt.Errorf("%s did not answer on %s within %v (%v):\n%s", n.name, n.socket, startTimeout, lastErr, tail(p.Output()))
	}
	return nil
}

// watch waits for p to exit and records a crash unless the soak signalled
// it; it also records a panic or a fatal error in the output of any exit.
func (n *node) watch(l *life) {
	defer close(l.watched)
	p := l.proc
	<-p.Done()
	out := p.Output()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !l.stopping.Load() {
		n.crashes = append(n.crashes, fmt.Sprintf("%s (pid %d) exited on its own: %v\n%s", n.name, p.Pid(), p.Wait(0), tail(out)))
		return
	}
	for _, marker := range []string{"panic:", "fatal error:", "DATA RACE"} {
		if strings.Contains(out, marker) {
			n.crashes = append(n.crashes, fmt.Sprintf("%s (pid %d) printed %q:\n%s", n.name, p.Pid(), marker, tail(out)))
			return
		}
	}
}

// current returns the node's current process.
func (n *node) current() *life {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.life
}

// stop sends sig to the node and waits up to timeout for it to exit; the
// exit is expected from then on. It returns the process's exit error (nil
// for status 0), or an error if it is still running.
func (n *node) stop(sig syscall.Signal, timeout time.Duration) error {
	l := n.current()
	p := l.proc
	l.stopping.Store(true)
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	err := p.Wait(timeout)
	if !p.Exited() {
		return fmt.Errorf("%s still running %v after %v", n.name, timeout, sig)
	}
	<-l.watched
	return err
}

// get fetches a control API path from the node's current process.
func (n *node) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.current().client.Get(ctx, path, v)
}

// endpoints lists the node's own endpoints.
func (n *node) endpoints(ctx context.Context) ([]control.Endpoint, error) {
	var eps []control.Endpoint
	err := n.get(ctx, "/v1/endpoints", &eps)
	return eps, err
}

// cli runs `ovlsw ARGS --socket S` against n and returns its stdout; the
// error carries stderr.
func (s *soak) cli(ctx context.Context, n *node, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, s.opts.Ovlsw, append(args, "--socket", n.socket)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ovlsw %s on %s: %v: %s", strings.Join(args, " "), n.name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// attach attaches c on its home node, asking for addr and mac when given,
// retrying until attachTimeout while the node refuses (it may still be
// catching up with the cluster after a restart).
func (s *soak) attach(ctx context.Context, c *container, addr netip.Prefix, mac string) error {
	args := []string{"attach", "--netns", c.ns.Name, "--network", networkName, "--json"}
	if addr.IsValid() {
		args = append(args, "--ip", addr.String())
	}
	if mac != "" {
		args = append(args, "--mac", mac)
	}
	var firstErr, lastErr error
	tries, start := 0, time.Now()
	ok := testbed.Poll(ctx, attachTimeout, func() bool {
		tries++
		out, err := s.cli(ctx, c.home, args...)
		if err != nil {
			lastErr = err
			if firstErr == nil {
				firstErr = err
			}
			return false
		}
		var ep control.Endpoint
		if err := json.Unmarshal(out, &ep); err != nil {
			lastErr = fmt.Errorf("attach %s: output %q: %w", c.name, out, err)
			return false
		}
		c.setEndpoint(ep, true)
		return true
	})
	if !ok {
		return fmt.Errorf("attach %s on %s within %v: %w", c.name, c.home.name, attachTimeout, lastErr)
	}
	if tries > 1 {
		s.rep.note(fmt.Sprintf("attach %s on %s at %.0fs took %d tries over %.1fs; the first was refused: %v",
			c.name, c.home.name, time.Since(s.log.start).Seconds(), tries, time.Since(start).Seconds(), firstErr))
	}
	return nil
}

// detach detaches c and waits for its eth0 to disappear.
func (s *soak) detach(ctx context.Context, c *container) error {
	if _, err := s.cli(ctx, c.home, "detach", "--netns", c.ns.Name); err != nil {
		return err
	}
	ep, _ := c.endpoint()
	c.setEndpoint(ep, false)
	if !testbed.Poll(ctx, 5*time.Second, func() bool { return !s.bed.LinkExists(c.ns, "eth0") }) {
		return fmt.Errorf("eth0 still in %s after detach", c.name)
	}
	return nil
}

// attachedHere returns the containers homed on n that are attached.
func (s *soak) attachedHere(n *node) []*container {
	var out []*container
	for _, c := range s.allContainers() {
		if _, ok := c.endpoint(); ok && c.home == n {
			out = append(out, c)
		}
	}
	return out
}

// allContainers is the long-lived containers and the fresh ones.
func (s *soak) allContainers() []*container {
	all := append([]*container(nil), s.containers...)
	all = append(all, s.fresh...)
	return all
}

// tail returns the last lines of a process's output for an error message.
func tail(out string) string {
	const max = 2000
	if len(out) > max {
		out = "..." + out[len(out)-max:]
	}
	return out
}
