package main

// This file builds the three topologies on a fresh testbed.Bed each: the
// bare underlay, the kernel's vxlan device on a bridge (testbed.KernelOverlay)
// and two ovlsw nodes, with container pairs, iperf3 servers, and a ping
// across every pair before anything is measured.
//
// Design notes:
//   - Each topology gets its own Bed, closed as soon as it has been
//     measured, so an idle topology never shares the CPU with the one being
//     measured and the system-wide CPU figures stay honest.
//   - testbed.KernelOverlay turns transmit checksum offload off on the vxlan
//     device, which only interop with a userspace VTEP on a veth bench needs.
//     Docker leaves it on, so the kernel baseline turns it back on: the
//     baseline is what users actually run, with every offload the kernel has.
//   - ovlsw containers are attached by `ovlsw attach` when the binary has
//     it. Without it (an older binary, or --no-attach) attachContainer falls
//     back: a single pair measures host namespace to host namespace with the
//     address on each daemon's host TAP port (--address), and several pairs
//     put container veths on a Linux bridge with the host TAP port.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

const (
	// vni is the overlay network of every build.
	vni = 42
	// vxName is the kernel vxlan device; KernelOverlay names its bridge
	// "br-"+vxName.
	vxName = "vx42"
	// overlayMTU is the 1500-byte veth underlay minus VXLAN's 50 bytes over
	// IPv4 (inner Ethernet 14, VXLAN 8, UDP 8, IPv4 20).
	overlayMTU = 1450
	// iperfBasePort is the first iperf3 server port; pair i uses base+i,
	// so the underlay build can run several servers in one namespace.
	iperfBasePort = 5201
	// readyTimeout bounds how long a topology may take to pass traffic
	// (an ovlsw node starting, ARP across the overlay).
	readyTimeout = 20 * time.Second
)

// The underlay and overlay addresses only ever exist inside the harness's
// own namespaces.
var (
	ul1 = netip.MustParsePrefix("192.168.91.1/24")
	ul2 = netip.MustParsePrefix("192.168.91.2/24")
)

// overlayAddr is the address of container i (0-based, at most 8) on host
// side (1 or 2): 10.91.0.11, .12, ... behind host 1 and 10.91.0.21, .22, ...
// behind host 2.
func overlayAddr(side, i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 91, 0, byte(10*side + i + 1)}), 24)
}

// wiring is how the ovlsw build connects a container to its node.
type wiring int

const (
	wireAttach  wiring = iota // `ovlsw attach`: a TAP port of the daemon inside the container
	wireHostTAP               // fallback: the address on the daemon's host TAP port, no container
	wireBridge                // fallback: a container veth on a Linux bridge with the host TAP port
)

func (w wiring) String() string {
	return [...]string{"ovlsw attach", "host TAP port", "bridge to host TAP port"}[w]
}

// An endpoint is one end of a measured path.
type endpoint struct {
	ns     *testbed.Netns
	addr   netip.Addr
	ifname string // the interface frames leave by (fdbfill sends on it)
}

// A pair is a measured path: iperf3 and ping run in src against dst.
type pair struct {
	src, dst endpoint
	port     int // dst's iperf3 server port
}

// A topo is one build, ready to measure.
type topo struct {
	build   string
	wiring  wiring // ovlsw only
	bed     *testbed.Bed
	hosts   [2]*testbed.Netns
	pairs   []pair
	nodes   []*node // ovlsw only
	servers []*testbed.Proc
}

// close stops everything in the topology and deletes its namespaces.
func (t *topo) close() error {
	if err := t.bed.Close(); err != nil {
		return fmt.Errorf("%s: clean up: %w", t.build, err)
	}
	return nil
}

// harness holds what every scenario shares.
type harness struct {
	opts    options
	log     logger
	rep     *report
	attach  bool   // ovlsw has the attach subcommand
	gossip  bool   // ovlsw up has --join: the daemon runs gossip
	sockDir string // control sockets of the ovlsw nodes

	failures []error // measurements that failed; the run goes on
	wgBin    string  // the wireguard-go binary, once built (wireguard.go)
	wgDir    string  // its temporary directory, removed at the end
	fillRSS  float64 // ovlsw peak RSS after the first FDB fill round, bytes
}

// wiringFor says how the ovlsw build connects containers; many is set when
// the scenario needs several pairs (or the same wiring for every count).
func (h *harness) wiringFor(many bool) wiring {
	switch {
	case h.attach:
		return wireAttach
	case many:
		return wireBridge
	default:
		return wireHostTAP
	}
}

// newTopo builds build with npairs container pairs (host pairs for the
// underlay), starts an iperf3 server per pair and pings across every pair.
// On failure it removes what it built.
func (h *harness) newTopo(ctx context.Context, build string, npairs int, w wiring) (_ *topo, reterr error) {
	bed, err := testbed.NewStandalone("ovb")
	if err != nil {
		return nil, err
	}
	t := &topo{build: build, wiring: w, bed: bed}
	defer func() {
		if reterr != nil {
			reterr = fmt.Errorf("%s: %w", build, reterr)
			if err := bed.Close(); err != nil {
				h.log.printf("%s: clean up after failure: %v", build, err)
			}
		}
	}()
	for i, name := range []string{"h1", "h2"} {
		if t.hosts[i], err = bed.Netns(name); err != nil {
			return nil, err
		}
	}
	if err := bed.Veth(t.hosts[0], "ul0", ul1, t.hosts[1], "ul0", ul2, 1500); err != nil {
		return nil, err
	}

	switch build {
	case buildUnderlay:
		for range npairs {
			t.pairs = append(t.pairs, pair{
				src: endpoint{t.hosts[0], ul1.Addr(), "ul0"},
				dst: endpoint{t.hosts[1], ul2.Addr(), "ul0"},
			})
		}
	case buildKernel:
		err = h.buildKernel(ctx, t, npairs)
	case buildOvlsw, buildOvlswEncrypted:
		err = h.buildOvlsw(ctx, t, npairs)
	case buildWireGuard:
		err = h.buildWireGuardTopo(ctx, t, npairs)
	default:
		err = fmt.Errorf("unknown build %q", build)
	}
	if err != nil {
		return nil, err
	}
	for i := range t.pairs {
		t.pairs[i].port = iperfBasePort + i
	}

	for _, p := range t.pairs {
		if err := p.src.ns.WaitPing(ctx, p.dst.addr, readyTimeout); err != nil {
			return nil, fmt.Errorf("no path %v -> %v: %w%s", p.src.addr, p.dst.addr, err, t.nodeLogs())
		}
	}
	for _, p := range t.pairs {
		srv, err := p.dst.ns.Start(ctx, "iperf3", "-s", "-p", strconv.Itoa(p.port))
		if err != nil {
			return nil, err
		}
		t.servers = append(t.servers, srv)
		if err := waitListen(ctx, srv, p.port); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// buildKernel wires npairs containers behind each host with
// testbed.KernelOverlay and turns the vxlan device's checksum offload back
// on (see the design notes).
func (h *harness) buildKernel(ctx context.Context, t *topo, npairs int) error {
	uls := [2]netip.Prefix{ul1, ul2}
	for i := range npairs {
		var eps [2]endpoint
		for side := range 2 {
			c, err := t.bed.Netns(fmt.Sprintf("%c%d", 'a'+side, i+1))
			if err != nil {
				return err
			}
			addr := overlayAddr(side+1, i)
			err = testbed.KernelOverlay(t.hosts[side], c, testbed.VXLANOpts{
				Name: vxName, VNI: vni, Local: uls[side].Addr(),
				Remotes: []netip.Addr{uls[1-side].Addr()}, Address: addr, MTU: overlayMTU,
			})
			if err != nil {
				return err
			}
			eps[side] = endpoint{c, addr.Addr(), "eth0"}
		}
		t.pairs = append(t.pairs, pair{src: eps[0], dst: eps[1]})
	}
	for _, host := range t.hosts {
		if _, err := host.Run(ctx, "ethtool", "-K", vxName, "tx", "on"); err != nil {
			return err
		}
	}
	return nil
}

// buildOvlsw starts a node on each host and attaches npairs containers to
// each.
func (h *harness) buildOvlsw(ctx context.Context, t *topo, npairs int) error {
	uls := [2]netip.Prefix{ul1, ul2}
	if t.wiring == wireHostTAP && npairs != 1 {
		return fmt.Errorf("the host TAP fallback carries one pair, not %d", npairs)
	}
	for side := range 2 {
		var addr netip.Prefix
		if t.wiring == wireHostTAP {
			addr = overlayAddr(side+1, 0)
		}
		n, err := h.startNode(ctx, t, side, uls[side].Addr(), uls[1-side].Addr(), addr)
		if err != nil {
			return err
		}
		t.nodes = append(t.nodes, n)
	}
	for i := range npairs {
		var eps [2]endpoint
		for side := range 2 {
			ep, err := h.attachContainer(ctx, t, t.nodes[side], fmt.Sprintf("%c%d", 'a'+side, i+1), overlayAddr(side+1, i))
			if err != nil {
				return err
			}
			eps[side] = ep
		}
		t.pairs = append(t.pairs, pair{src: eps[0], dst: eps[1]})
	}
	return nil
}

// attachContainer puts a container named name, with address addr, on node
// n and returns the endpoint to measure from. With `ovlsw attach` it runs
//
//	ovlsw attach --socket S --netns /run/netns/NAME --ip ADDR/PREFIX --ifname eth0
//
// Without it, the fallback depends on t.wiring: wireHostTAP returns the
// node's host namespace and host TAP port, which the node was started with
// --address addr on (no container exists); wireBridge creates the container
// with a veth whose host end is on a Linux bridge with the host TAP port.
func (h *harness) attachContainer(ctx context.Context, t *topo, n *node, name string, addr netip.Prefix) (endpoint, error) {
	if t.wiring == wireHostTAP {
		if n.address != addr {
			return endpoint{}, fmt.Errorf("host TAP fallback: node %s has address %v, want %v", n.name, n.address, addr)
		}
		return endpoint{n.ns, addr.Addr(), n.tap}, nil
	}
	c, err := t.bed.Netns(name)
	if err != nil {
		return endpoint{}, err
	}
	switch t.wiring {
	case wireAttach:
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		argv := []string{"attach", "--socket", n.socket, "--netns", c.Path, "--ip", addr.String(), "--ifname", "eth0"}
		// The kernel's bridge has no port security, and the FDB fill sends
		// from 100,000 MACs: measure ovlsw without it too.
		if hasFlag(actx, h.opts.Ovlsw, "--no-port-security", "attach") {
			argv = append(argv, "--no-port-security")
		}
		out, err := exec.CommandContext(actx, h.opts.Ovlsw, argv...).CombinedOutput()
		if err != nil {
			return endpoint{}, fmt.Errorf("ovlsw attach %s to %s: %v: %s", name, n.name, err, strings.TrimSpace(string(out)))
		}
	case wireBridge:
		host := n.ns
		if !t.bed.LinkExists(host, "br0") {
			for _, argv := range [][]string{
				{"ip", "link", "add", "br0", "type", "bridge"},
				{"ip", "link", "set", "dev", n.tap, "master", "br0"},
				{"ip", "link", "set", "dev", "br0", "up"},
			} {
				if _, err := host.Run(ctx, argv...); err != nil {
					return endpoint{}, err
				}
			}
		}
		hostIf := "vb-" + name
		if err := t.bed.Veth(host, hostIf, netip.Prefix{}, c, "eth0", addr, overlayMTU); err != nil {
			return endpoint{}, err
		}
		if _, err := host.Run(ctx, "ip", "link", "set", "dev", hostIf, "master", "br0"); err != nil {
			return endpoint{}, err
		}
	}
	return endpoint{c, addr.Addr(), "eth0"}, nil
}

// node is an `ovlsw up` process.
type node struct {
	name    string
	ns      *testbed.Netns
	proc    *testbed.Proc
	pid     int // the ovlsw process, as its control API reports it
	socket  string
	tap     string
	address netip.Prefix // on the host TAP port; zero unless wireHostTAP
}

// startNode runs `ovlsw up` in host namespace side and waits until its
// control socket answers.
func (h *harness) startNode(ctx context.Context, t *topo, side int, bind, peer netip.Addr, addr netip.Prefix) (*node, error) {
	n := &node{
		name:    fmt.Sprintf("n%d", side+1),
		ns:      t.hosts[side],
		tap:     fmt.Sprintf("ovl%d", vni),
		address: addr,
	}
	n.socket = filepath.Join(h.sockDir, fmt.Sprintf("%s-%s.sock", t.bed.ID(), n.name))
	argv := []string{h.opts.Ovlsw, "up", "--name", n.name, "--vni", strconv.Itoa(vni),
		"--bind", bind.String(), "--peer", peer.String(), "--socket", n.socket, "--tap", n.tap,
		"--log-level", "warn"}
	if addr.IsValid() {
		argv = append(argv, "--address", addr.String())
	}
	// The FDB fill learns 100,000 MACs from one port; the kernel's bridge
	// has no learning limit either.
	if hasFlag(ctx, h.opts.Ovlsw, "--max-macs-per-vni", "up") {
		argv = append(argv, "--max-macs-per-port", "0", "--max-macs-per-vni", "0")
	}
	// ... at 50,000 frames a second of unknown unicast, which no flood
	// rate limit of a production default lets through.
	if hasFlag(ctx, h.opts.Ovlsw, "--flood-rate", "up") {
		argv = append(argv, "--flood-rate", "0")
	}
	if h.opts.Observe {
		argv = append(argv, "--metrics", metricsAddr)
	}
	if t.build == buildOvlswEncrypted {
		key, err := h.networkKeyFile()
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--encrypted", "--network-key-file", key)
	}
	argv = append(argv, h.opts.UpArgs...)
	if err := h.launchNode(ctx, n, argv); err != nil {
		return nil, err
	}
	return n, nil
}

// launchNode runs argv, an `ovlsw up` command line for n, in n's namespace,
// waits until its control socket answers and checks that the daemon's pid
// is the process testbed started.
func (h *harness) launchNode(ctx context.Context, n *node, argv []string) error {
	proc, err := n.ns.Start(ctx, argv...)
	if err != nil {
		return err
	}
	n.proc = proc

	var st struct {
		Node struct {
			PID int `json:"pid"`
		} `json:"node"`
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := control.NewClient(n.socket).Get(gctx, "/v1/status", &st)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("ovlsw %s exited at start:\n%s", n.name, proc.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ovlsw %s did not answer on %s within %v: %v\n%s", n.name, n.socket, readyTimeout, err, proc.Output())
		}
	}
	// `ip netns exec` execs the command, so the pid testbed started is
	// ovlsw's own; check rather than assume, and trust the daemon.
	n.pid = st.Node.PID
	if n.pid != proc.Pid() {
		h.rep.note(fmt.Sprintf("ovlsw: the pid testbed started (%d) is not the daemon's (%d); RSS and CPU are read from the daemon's", proc.Pid(), n.pid))
	}
	// The kernel keeps the first 15 bytes of the executable's name as comm.
	want := filepath.Base(h.opts.Ovlsw)
	want = want[:min(len(want), 15)]
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.pid)); err != nil || strings.TrimSpace(string(comm)) != want {
		return fmt.Errorf("ovlsw %s: pid %d is not %s (comm %q, %v)", n.name, n.pid, h.opts.Ovlsw, strings.TrimSpace(string(comm)), err)
	}
	return nil
}

// fdbMACs returns the MAC of every entry in the node's forwarding table.
// It reads the "mac" values straight out of the /v1/fdb answer instead of
// decoding it: with 100,000 entries the answer is some 25 MB of indented
// JSON, which encoding/json takes seconds to decode under the race
// detector (CI runs the harness's test with -race).
func (n *node) fdbMACs(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", n.socket)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ovlsw/v1/fdb", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ovlsw %s fdb: %w", n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("ovlsw %s fdb: %w", n.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ovlsw %s fdb: %s: %s", n.name, resp.Status, bytes.TrimSpace(body))
	}
	return jsonStrings(body, "mac"), nil
}

// jsonStrings returns the string values of every key in b, a JSON document
// whose strings hold no escaped quotes where key is concerned (MACs).
func jsonStrings(b []byte, key string) []string {
	var out []string
	k := []byte(`"` + key + `"`)
	for {
		i := bytes.Index(b, k)
		if i < 0 {
			return out
		}
		b = bytes.TrimLeft(b[i+len(k):], " \t\r\n")
		if len(b) == 0 || b[0] != ':' {
			continue
		}
		b = bytes.TrimLeft(b[1:], " \t\r\n")
		if len(b) == 0 || b[0] != '"' {
			continue
		}
		end := bytes.IndexByte(b[1:], '"')
		if end < 0 {
			return out
		}
		out = append(out, string(b[1:1+end]))
		b = b[1+end:]
	}
}

// activity returns the sum of the node's frame and drop counters, which
// stays the same only while no traffic passes.
func (n *node) activity(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type traffic struct {
		RxFrames uint64 `json:"rx_frames"`
		TxFrames uint64 `json:"tx_frames"`
	}
	var st struct {
		Ports []traffic         `json:"ports"`
		Peers []traffic         `json:"peers"`
		Drops map[string]uint64 `json:"drops"`
	}
	if err := control.NewClient(n.socket).Get(ctx, "/v1/status", &st); err != nil {
		return 0, fmt.Errorf("ovlsw %s status: %w", n.name, err)
	}
	var sum uint64
	for _, tr := range append(st.Ports, st.Peers...) {
		sum += tr.RxFrames + tr.TxFrames
	}
	for _, d := range st.Drops {
		sum += d
	}
	return sum, nil
}

// nodeLogs returns the ovlsw nodes' output, for an error message.
func (t *topo) nodeLogs() string {
	var b strings.Builder
	for _, n := range t.nodes {
		fmt.Fprintf(&b, "\novlsw %s output:\n%s", n.name, n.proc.Output())
	}
	return b.String()
}
