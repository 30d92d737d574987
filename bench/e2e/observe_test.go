package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// scrape fetches http://addr/metrics from inside ns and returns the body
// and its samples by series ("name{labels}").
func scrape(t *testing.T, ns *testbed.Netns, addr string) (string, map[string]float64) {
	t.Helper()
	var c net.Conn
	// The socket is made in ns (a net.Dial on Do's locked thread); the
	// exchange can then happen anywhere.
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	raw, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	_, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(raw), "HTTP/1.0 200") {
		t.Fatalf("scrape %s: %.200q", addr, raw)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			samples[line[:i]] = v
		}
	}
	return body, samples
}

// promtoolCheck runs `promtool check metrics` on body where promtool is
// installed (and fails where OVLSW_REQUIRE_ROOT_TESTS=1 says it must be).
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(testbed.RequireRootEnv) == "1" {
			t.Fatalf("promtool is not installed (apt-get install prometheus) and %s=1 forbids skipping", testbed.RequireRootEnv)
		}
		t.Logf("promtool not installed: metrics not linted")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// twoNodeCluster starts a node on each host, the second joining the
// first, with the default network on VNI 42 (10.0.9.0/24) and metrics on
// their underlay addresses, and attaches a container to each.
func twoNodeCluster(t *testing.T, tag string) (bed *testbed.Bed, hosts [2]*testbed.Netns, nodes [2]*node, cs [2]*testbed.Netns, eps [2]control.Endpoint) {
	t.Helper()
	bed, h1, h2 := twoHosts(t)
	hosts = [2]*testbed.Netns{h1, h2}
	for i, ul := range []netip.Prefix{ul1, ul2} {
		args := []string{"--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254", "--bind", ul.Addr().String(),
			"--metrics", netip.AddrPortFrom(ul.Addr(), 9464).String()}
		if i == 1 {
			args = append(args, "--join", ul1.Addr().String())
		}
		nodes[i] = startNode(t, hosts[i], fmt.Sprintf("%s%d", tag, i+1), args...)
	}
	for i := range 2 {
		cs[i] = mustNetns(t, bed, fmt.Sprintf("%sc%d", tag, i+1))
		eps[i] = nodes[i].attach(cs[i], "--name", fmt.Sprintf("%sc%d", tag, i+1))
	}
	ctx := testCtx(t, time.Minute)
	if err := cs[0].WaitPing(ctx, eps[1].Address.Addr(), 20*time.Second); err != nil {
		t.Fatalf("c1 -> c2: %v\n%s", err, nodes[0].proc.Output())
	}
	return bed, hosts, nodes, cs, eps
}

// TestE2EMetrics: a two-node cluster's metrics move while traffic flows
// and pass promtool; a capture of a ping on a port reads back with
// gopacket (and tshark), directions and ports in its comments.
func TestE2EMetrics(t *testing.T) {
	_, hosts, nodes, cs, eps := twoNodeCluster(t, "m")
	ctx := testCtx(t, 2*time.Minute)
	addr := netip.AddrPortFrom(ul1.Addr(), 9464).String()
	_, before := scrape(t, hosts[0], addr)
	if err := testbed.TCPStream(ctx, cs[0], cs[1], eps[1].Address.Addr(), 4<<20); err != nil {
		t.Fatalf("TCP c1 -> c2: %v", err)
	}
	body, after := scrape(t, hosts[0], addr)
	peer := fmt.Sprintf(`{peer="%v"}`, netip.AddrPortFrom(ul2.Addr(), 4789))
	port := fmt.Sprintf(`{port="%s",vni="42"}`, eps[0].Name)
	for _, s := range []string{
		"ovlsw_peer_transmit_bytes_total" + peer,
		"ovlsw_peer_receive_frames_total" + peer,
		"ovlsw_port_receive_bytes_total" + port,
		"ovlsw_port_transmit_frames_total" + port,
		`ovlsw_vni_receive_bytes_total{vni="42"}`,
	} {
		if after[s] <= before[s] {
			t.Errorf("%s did not move with traffic: %v -> %v", s, before[s], after[s])
		}
	}
	if b := after["ovlsw_peer_transmit_bytes_total"+peer] - before["ovlsw_peer_transmit_bytes_total"+peer]; b < 4<<20 {
		t.Errorf("4 MB sent, the peer counter rose by %v bytes", b)
	}
	for s, want := range map[string]float64{
		`ovlsw_gossip_members{state="alive"}`: 2,
		`ovlsw_port_up` + port:                1,
	} {
		if after[s] != want {
			t.Errorf("%s = %v, want %v", s, after[s], want)
		}
	}
	if after["ovlsw_gossip_messages_received_total"] < 1 || after["ovlsw_gossip_message_received_bytes_total"] < 1 {
		t.Errorf("no gossip messages counted: %v, %v bytes", after["ovlsw_gossip_messages_received_total"], after["ovlsw_gossip_message_received_bytes_total"])
	}
	if after[`ovlsw_fdb_entries{origin="gossip"}`] < 1 {
		t.Errorf("no gossip FDB entries in the metrics:\n%s", body)
	}
	if !strings.Contains(body, "ovlsw_build_info{") || !strings.Contains(body, "ovlsw_offload_info{") {
		t.Error("build or offload info missing")
	}
	promtoolCheck(t, body)

	// Capture a ping on c1's port into a file, and read it back.
	file := filepath.Join(t.TempDir(), "ping.pcapng")
	capProc := exec.Command(ovlswBinary(t), "capture", "--port", eps[0].Name, "--count", "6", "-w", file, "--socket", nodes[0].socket)
	var capOut bytes.Buffer
	capProc.Stdout, capProc.Stderr = &capOut, &capOut
	if err := capProc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- capProc.Wait() }()
	t.Cleanup(func() { capProc.Process.Kill() })
	var capErr error
	done := poll(30*time.Second, func() bool {
		_ = cs[0].Ping(ctx, eps[1].Address.Addr(), 1)
		select {
		case capErr = <-exited:
			return true
		default:
			return false
		}
	})
	if !done || capErr != nil {
		t.Fatalf("ovlsw capture --count 6: done %v, %v\n%s", done, capErr, capOut.String())
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	var requests, replies int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if icmp == nil || ip == nil {
			continue
		}
		switch icmp.TypeCode.Type() {
		case layers.ICMPv4TypeEchoRequest:
			if ip.SrcIP.Equal(eps[0].Address.Addr().AsSlice()) {
				requests++
			}
		case layers.ICMPv4TypeEchoReply:
			replies++
		}
	}
	if requests == 0 || replies == 0 {
		t.Errorf("capture holds %d echo requests from c1 and %d replies", requests, replies)
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		out, err := exec.Command(tshark, "-r", file, "-Y", "icmp", "-T", "fields", "-e", "frame.comment", "-e", "icmp.type").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		in, outbound := fmt.Sprintf("in port %s vni 42\t8", eps[0].Name), fmt.Sprintf("out port %s vni 42\t0", eps[0].Name)
		if !strings.Contains(string(out), in) || !strings.Contains(string(out), outbound) {
			t.Errorf("tshark shows no %q and %q:\n%s", in, outbound, out)
		}
		// Streamed into tshark through a pipe, as `ovlsw capture | tshark -r -`.
		pipe := exec.Command("sh", "-c", fmt.Sprintf("%s capture --port %s --count 2 --socket %s | %s -r - -T fields -e frame.comment",
			ovlswBinary(t), eps[0].Name, nodes[0].socket, tshark))
		var piped bytes.Buffer
		pipe.Stdout = &piped
		pipe.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the shell, ovlsw and tshark: one group to kill
		if err := pipe.Start(); err != nil {
			t.Fatal(err)
		}
		pdone := make(chan error, 1)
		go func() { pdone <- pipe.Wait() }()
		t.Cleanup(func() { syscall.Kill(-pipe.Process.Pid, syscall.SIGKILL) })
		var perr error
		if !poll(30*time.Second, func() bool {
			_ = cs[0].Ping(ctx, eps[1].Address.Addr(), 1)
			select {
			case perr = <-pdone:
				return true
			default:
				return false
			}
		}) || perr != nil || strings.Count(piped.String(), "port "+eps[0].Name) != 2 {
			t.Errorf("ovlsw capture | tshark -r -: %v\n%s", perr, piped.String())
		}
	} else if os.Getenv(testbed.RequireRootEnv) == "1" {
		t.Errorf("tshark is not installed (apt-get install tshark) and %s=1 forbids skipping it", testbed.RequireRootEnv)
	}
	_, last := scrape(t, hosts[0], addr)
	if last["ovlsw_capture_frames_total"] < 6 {
		t.Errorf("ovlsw_capture_frames_total = %v after a capture of 6", last["ovlsw_capture_frames_total"])
	}
}

// traceJSON runs ovlsw trace --json on n.
func traceJSON(t *testing.T, n *node, args ...string) control.Trace {
	t.Helper()
	var tr control.Trace
	out := n.cli(append([]string{"trace", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatalf("trace %v: %v\n%s", args, err, out)
	}
	return tr
}

// eventFollower runs ovlsw events --json on n and collects its events.
type eventFollower struct {
	mu     sync.Mutex
	events []control.Event
}

func followEvents(t *testing.T, n *node) *eventFollower {
	t.Helper()
	ef := &eventFollower{}
	cmd := exec.Command(ovlswBinary(t), "events", "--json", "--socket", n.socket)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e control.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				ef.mu.Lock()
				ef.events = append(ef.events, e)
				ef.mu.Unlock()
			}
		}
	}()
	return ef
}

// has reports whether an event matching fn arrived.
func (ef *eventFollower) has(fn func(control.Event) bool) bool {
	ef.mu.Lock()
	defer ef.mu.Unlock()
	for _, e := range ef.events {
		if fn(e) {
			return true
		}
	}
	return false
}

func (ef *eventFollower) String() string {
	ef.mu.Lock()
	defer ef.mu.Unlock()
	var b strings.Builder
	for _, e := range ef.events {
		fmt.Fprintf(&b, "%s %s %s %s %s\n", e.Kind, e.Node, e.Name, e.MAC, e.Where)
	}
	return b.String()
}

// TestE2ETraceEvents: trace to a local endpoint, a remote one, an unknown
// address and MAC under the flood and drop policies, and from a spoofed
// MAC; events follow an endpoint attached and a node killed.
func TestE2ETraceEvents(t *testing.T) {
	bed, _, nodes, cs, eps := twoNodeCluster(t, "t")
	n1 := nodes[0]
	ev := followEvents(t, n1)
	if !poll(10*time.Second, func() bool { return ev.has(func(e control.Event) bool { return e.Kind == "follow" && e.Node == "t1" }) }) {
		t.Fatal("ovlsw events did not start following")
	}
	// A network whose floods are dropped, and an endpoint on it.
	n1.cli("network", "create", "closed", "--vni", "43", "--subnet", "10.0.10.0/24", "--flood", "drop")
	cc := mustNetns(t, bed, "tcc")
	closed := n1.attach(cc, "--network", "closed", "--name", "tcc")
	c4 := mustNetns(t, bed, "tc4")
	local := n1.attach(c4, "--name", "tc4")
	if !poll(10*time.Second, func() bool {
		return ev.has(func(e control.Event) bool { return e.Kind == "endpoint_added" && e.Name == "tc4" }) &&
			ev.has(func(e control.Event) bool { return e.Kind == "network_added" && e.Name == "closed" }) &&
			ev.has(func(e control.Event) bool { return e.Kind == "name_added" && e.Name == "tc4" && e.MAC == local.MAC })
	}) {
		t.Errorf("no endpoint_added, network_added and name_added events:\n%s", ev)
	}

	// Local: the proxy answers the ARP question, the packet goes to tc4's port.
	tr := traceJSON(t, n1, "--network", "default", "--from", eps[0].Name, "--to", local.Address.Addr().String(), "--proto", "tcp/80")
	if len(tr.Frames) != 2 || tr.Frames[0].Verdict != "answered" || tr.Frames[1].Verdict != "local" ||
		len(tr.Frames[1].Out) != 1 || tr.Frames[1].Out[0].Port != "tc4" || tr.Frames[1].FDB == nil || tr.Frames[1].FDB.Origin != "local" {
		t.Errorf("trace to a local endpoint: %s", jsonString(tr))
	}
	// Remote: behind node 2's VTEP, from a source port, with the gossip entry.
	tr = traceJSON(t, n1, "--network", "default", "--from", eps[0].Name, "--to", eps[1].Address.Addr().String())
	vtep2 := netip.AddrPortFrom(ul2.Addr(), 4789)
	if len(tr.Frames) != 2 || tr.Frames[1].Verdict != "remote" || len(tr.Frames[1].Out) != 1 || tr.Frames[1].Out[0].VTEP != vtep2 ||
		tr.Frames[1].Out[0].SourcePort == 0 || tr.Frames[1].FDB == nil || tr.Frames[1].FDB.Origin != "gossip" || tr.Frames[1].FDB.Node != "t2" {
		t.Errorf("trace to a remote endpoint: %s", jsonString(tr))
	}
	// Unknown address: the question floods under the default policy...
	tr = traceJSON(t, n1, "--network", "default", "--from", eps[0].Name, "--to", "10.0.9.77")
	if len(tr.Frames) != 1 || tr.Frames[0].Verdict != "flood" || len(tr.Notes) == 0 {
		t.Errorf("trace to an unknown address (flood): %s", jsonString(tr))
	}
	// ... and is dropped where the policy drops.
	tr = traceJSON(t, n1, "--network", "closed", "--from", "tcc", "--to", "10.0.10.77")
	if len(tr.Frames) != 1 || tr.Frames[0].Verdict != "drop" || tr.Frames[0].Drop != "flood_policy" {
		t.Errorf("trace to an unknown address (drop): %s", jsonString(tr))
	}
	// An unknown MAC likewise.
	tr = traceJSON(t, n1, "--network", "default", "--from", eps[0].Name, "--to", "02:00:00:00:99:99")
	if len(tr.Frames) != 1 || tr.Frames[0].Verdict != "flood" || len(tr.Frames[0].Out) < 2 {
		t.Errorf("trace to an unknown MAC (flood): %s", jsonString(tr))
	}
	tr = traceJSON(t, n1, "--network", "closed", "--from", "tcc", "--to", "02:00:00:00:99:99")
	if len(tr.Frames) != 1 || tr.Frames[0].Drop != "flood_policy" {
		t.Errorf("trace to an unknown MAC (drop): %s", jsonString(tr))
	}
	// A container that changed its MAC is cut off by port security.
	tr = traceJSON(t, n1, "--network", "default", "--from", eps[0].Name, "--to", eps[1].Address.Addr().String(), "--src-mac", "02:de:ad:be:ef:01")
	if len(tr.Frames) != 1 || tr.Frames[0].Drop != "port_security" {
		t.Errorf("trace from a spoofed MAC: %s", jsonString(tr))
	}
	// The text output names the decisions.
	text := n1.cli("trace", "--network", "default", "--from", eps[0].Name, "--to", eps[1].Address.Addr().String())
	for _, want := range []string{"ARP who-has", "proxy", "answer", "fdb", "remote", "=> remote: VTEP " + vtep2.String()} {
		if !strings.Contains(text, want) {
			t.Errorf("trace text lacks %q:\n%s", want, text)
		}
	}
	if err := n1.cliErr("trace", "--network", "default", "--from", "nobody", "--to", "10.0.9.1"); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("trace from nobody: %v", err)
	}
	_ = closed

	// Across subnets: the ARP question for the gateway is answered with
	// the router MAC, and the packet is routed, then switched to node 2.
	n1.cli("network", "create", "prod", "--vni", "44", "--subnet", "10.0.20.0/24", "--gateway", "10.0.20.254",
		"--subnet", "10.0.21.0/24", "--gateway", "10.0.21.254")
	if !poll(30*time.Second, func() bool {
		var d control.NetworkDetail
		return nodes[1].get("/v1/networks/prod", &d) == nil
	}) {
		t.Fatal("node 2 never had network prod")
	}
	tp1 := n1.attach(mustNetns(t, bed, "tp1"), "--network", "prod", "--subnet", "10.0.20.0/24", "--name", "tp1")
	tp2 := nodes[1].attach(mustNetns(t, bed, "tp2"), "--network", "prod", "--subnet", "10.0.21.0/24", "--name", "tp2")
	if !poll(30*time.Second, func() bool {
		tr = traceJSON(t, n1, "--network", "prod", "--from", "tp1", "--to", tp2.Address.Addr().String())
		return len(tr.Frames) == 2 && tr.Frames[1].Verdict == "remote"
	}) {
		t.Errorf("trace across subnets: %s", jsonString(tr))
	} else {
		steps := map[string]string{}
		for _, s := range tr.Frames[1].Steps {
			steps[s.Stage] = s.Result
		}
		if tr.Frames[0].Verdict != "answered" || steps["route"] != "forward" || tr.Frames[1].Out[0].VTEP != vtep2 || len(tr.Notes) == 0 {
			t.Errorf("trace across subnets: %s", jsonString(tr))
		}
	}
	_ = tp1

	// Kill node 2: node 1's followers see it suspect or dead, and its entries go.
	if err := nodes[1].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !poll(60*time.Second, func() bool {
		return ev.has(func(e control.Event) bool { return e.Kind == "member_dead" && e.Node == "t2" }) &&
			ev.has(func(e control.Event) bool { return e.Kind == "fdb_removed" && e.MAC == eps[1].MAC })
	}) {
		t.Errorf("no member_dead and fdb_removed events for the killed node:\n%s", ev)
	}
	_ = cs
	_ = context.Background
}
