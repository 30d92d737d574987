package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// TestE2ERestart: attached containers survive a restart of their node.
// Two nodes, a container on each, a ping across running throughout; node A
// is stopped by (a) SIGUSR2, the upgrade stop, and (b) SIGKILL, and
// restarted with the same flags: the container keeps its eth0, MAC and
// address while A is down, and the ping resumes without any attach; the
// traffic gap is logged. (c) SIGTERM removes the container's eth0 and the
// state file, and a restart re-creates nothing.
func TestE2ERestart(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	ctx := testCtx(t, 3*time.Minute)
	cA, cB := mustNetns(t, bed, "ra"), mustNetns(t, bed, "rb")
	dir := filepath.Dir(socketPath(t, "ra"))
	stateA, stateB := filepath.Join(dir, "restart-ra.state.json"), filepath.Join(dir, "restart-rb.state.json")
	for _, f := range []string{stateA, stateB} {
		t.Cleanup(func() { os.Remove(f) })
	}
	common := []string{"--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254"}
	argsB := append([]string{"--bind", ul2.Addr().String(), "--state", stateB}, common...)
	argsA := append([]string{"--bind", ul1.Addr().String(), "--join", ul2.Addr().String(), "--state", stateA}, common...)
	nB := startNode(t, h2, "rb", argsB...)
	nA := startNode(t, h1, "ra", argsA...)
	eA, eB := nA.attach(cA), nB.attach(cB)
	if err := cA.WaitPing(ctx, eB.Address.Addr(), 20*time.Second); err != nil {
		t.Fatalf("cA -> cB: %v\n%s", err, nA.proc.Output())
	}
	linkA := containerLink(t, ctx, cA)

	for _, sig := range []syscall.Signal{syscall.SIGUSR2, syscall.SIGKILL} {
		ping, err := cA.Start(ctx, "ping", "-n", "-D", "-i", "0.05", "-W", "1", eB.Address.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if !poll(10*time.Second, func() bool { return len(pingReplies(ping.Output())) >= 5 }) {
			t.Fatalf("no ping replies before the %v:\n%s", sig, ping.Output())
		}

		stopped := time.Now()
		if err := nA.proc.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err = nA.proc.Wait(10 * time.Second)
		if sig == syscall.SIGUSR2 && err != nil {
			t.Fatalf("ovlsw after SIGUSR2: %v\n%s", err, nA.proc.Output())
		}
		<-nA.proc.Done()
		exited := time.Now()
		// Down: the container keeps its port, the state file lists it.
		if got := containerLink(t, ctx, cA); got.MAC != linkA.MAC || !slices.Equal(got.Addrs, linkA.Addrs) {
			t.Errorf("after %v, cA's eth0 is %+v, was %+v", sig, got, linkA)
		}
		if eps := stateEndpoints(t, stateA); len(eps) != 1 || eps[0].MAC != eA.MAC {
			t.Errorf("state file after %v: %+v", sig, eps)
		}
		if sig == syscall.SIGUSR2 && bed.LinkExists(h1, nA.tap) {
			t.Errorf("host TAP %s left after SIGUSR2", nA.tap)
		}

		restarted := time.Now()
		nA = startNode(t, h1, "ra", argsA...)
		answering := time.Now()
		if !poll(30*time.Second, func() bool { return repliesAfter(ping.Output(), restarted) >= 10 }) {
			t.Fatalf("ping did not resume after the restart (%v):\n%s\nnode A:\n%s", sig, tail(ping.Output(), 20), nA.proc.Output())
		}
		if err := ping.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		<-ping.Done()
		g := measureGap(pingReplies(ping.Output()), exited, restarted)
		t.Logf("%v: stop to exit %v, exit to restart %v, restart to control socket %v, restart to first reply %v; "+
			"exit to first reply %v; largest gap between replies %v (%d echoes of 50 ms unanswered)",
			sig, exited.Sub(stopped).Round(time.Millisecond), restarted.Sub(exited).Round(time.Millisecond),
			answering.Sub(restarted).Round(time.Millisecond), g.restartToReply.Round(time.Millisecond),
			g.downToReply.Round(time.Millisecond), g.largest.Round(time.Millisecond), g.lost)

		// Up again: the same endpoint, listed and announced, no attach.
		var eps []control.Endpoint
		if err := nA.get("/v1/endpoints", &eps); err != nil || len(eps) != 1 || !reflect.DeepEqual(eps[0], eA) {
			t.Errorf("endpoints after the restart (%v): %v\n%s\nwant %s", sig, err, jsonString(eps), jsonString(eA))
		}
		if !slices.ContainsFunc(nA.status().Ports, func(p control.Port) bool { return p.Name == eA.Name }) {
			t.Errorf("status after the restart lists no port %s", eA.Name)
		}
		if !poll(10*time.Second, func() bool { return gossipOwner(nB, eA.MAC) == "ra" }) {
			t.Errorf("node B does not have cA's binding from ra again:\n%s", nB.cli("fdb"))
		}
		if got := containerLink(t, ctx, cA); got.MAC != linkA.MAC || !slices.Equal(got.Addrs, linkA.Addrs) {
			t.Errorf("after the restart, cA's eth0 is %+v, was %+v", got, linkA)
		}
		if err := cB.Ping(ctx, eA.Address.Addr(), 3); err != nil {
			t.Errorf("cB -> cA after the restart: %v", err)
		}
	}

	// SIGTERM: a real stop removes the container's port and the state file;
	// a restart finds nothing to take back.
	nA.stop(bed)
	if bed.LinkExists(cA, "eth0") {
		t.Error("eth0 still in cA after SIGTERM")
	}
	if _, err := os.Stat(stateA); !os.IsNotExist(err) {
		t.Errorf("state file after SIGTERM: %v, want none (nothing attached): %+v", err, stateEndpoints(t, stateA))
	}
	if !poll(10*time.Second, func() bool { return gossipOwner(nB, eA.MAC) == "" }) {
		t.Errorf("node B still has cA's binding after ra left:\n%s", nB.cli("fdb"))
	}
	nA = startNode(t, h1, "ra", argsA...)
	var eps []control.Endpoint
	if err := nA.get("/v1/endpoints", &eps); err != nil || len(eps) != 0 {
		t.Errorf("endpoints after restarting from SIGTERM: %v %s", err, jsonString(eps))
	}
	if bed.LinkExists(cA, "eth0") {
		t.Error("a restart after SIGTERM re-created eth0 in cA")
	}

	// Nothing left behind.
	nA.stop(bed)
	nB.stop(bed)
	for _, c := range []*testbed.Netns{cA, cB} {
		if bed.LinkExists(c, "eth0") {
			t.Errorf("eth0 left in %s", c.Name)
		}
	}
	for _, f := range []string{stateA, stateB} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("state file %s left: %v", f, err)
		}
	}
}

// link is a container's eth0 as `ip -j addr` shows it.
type link struct {
	MAC   string
	Addrs []string
}

func containerLink(t *testing.T, ctx context.Context, ns *testbed.Netns) link {
	t.Helper()
	out, err := ns.Run(ctx, "ip", "-j", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatalf("eth0 in %s: %v", ns.Name, err)
	}
	var ls []struct {
		Address  string `json:"address"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		t.Fatalf("ip -j addr in %s: %v\n%s", ns.Name, err, out)
	}
	l := link{MAC: ls[0].Address}
	for _, a := range ls[0].AddrInfo {
		l.Addrs = append(l.Addrs, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
	}
	slices.Sort(l.Addrs)
	return l
}

// stateEndpoints reads the endpoints a state file lists.
func stateEndpoints(t *testing.T, path string) []control.Endpoint {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var st struct {
		Endpoints []control.Endpoint `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Errorf("state file %s: %v\n%s", path, err, b)
	}
	return st.Endpoints
}

// gossipOwner returns the node n's FDB has mac from by gossip, or "".
func gossipOwner(n *node, mac string) string {
	var es []control.FDBEntry
	if n.get("/v1/fdb", &es) != nil {
		return "?"
	}
	for _, e := range es {
		if e.MAC == mac && e.Origin == "gossip" {
			return e.Node
		}
	}
	return ""
}

// pingReply matches a reply of `ping -D`: "[1700000000.123456] 64 bytes
// from 10.0.9.2: icmp_seq=12 ttl=64 time=0.52 ms".
var pingReply = regexp.MustCompile(`(?m)^\[(\d+)\.(\d+)\] \d+ bytes from .*icmp_seq=(\d+)`)

type reply struct {
	at  time.Time
	seq int
}

func pingReplies(out string) []reply {
	var rs []reply
	for _, m := range pingReply.FindAllStringSubmatch(out, -1) {
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		frac, _ := strconv.ParseFloat("0."+m[2], 64)
		seq, _ := strconv.Atoi(m[3])
		rs = append(rs, reply{at: time.Unix(sec, int64(frac*1e9)), seq: seq})
	}
	return rs
}

func repliesAfter(out string, t time.Time) int {
	n := 0
	for _, r := range pingReplies(out) {
		if r.at.After(t) {
			n++
		}
	}
	return n
}

// gap is the traffic gap across a restart as the pinging container saw it.
type gap struct {
	largest        time.Duration // longest interval between two replies
	lost           int           // echo requests never answered (by sequence number)
	downToReply    time.Duration // from the old process's exit to the first reply after it
	restartToReply time.Duration // from starting the new process to the first reply after it
}

func measureGap(rs []reply, exited, restarted time.Time) gap {
	var g gap
	seen := map[int]bool{}
	for i, r := range rs {
		seen[r.seq] = true
		if i > 0 {
			g.largest = max(g.largest, r.at.Sub(rs[i-1].at))
		}
		if g.downToReply == 0 && r.at.After(exited) {
			g.downToReply = r.at.Sub(exited)
		}
		if g.restartToReply == 0 && r.at.After(restarted) {
			g.restartToReply = r.at.Sub(restarted)
		}
	}
	if len(rs) > 0 {
		for s := rs[0].seq; s <= rs[len(rs)-1].seq; s++ {
			if !seen[s] {
				g.lost++
			}
		}
	}
	return g
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// TestE2ERestartThenNetnsDeleted: a container whose port a restarted node
// took back, and whose namespace is then deleted, is removed from the node
// like any other: its address and MAC are free again. (The re-adopted TAP
// was opened inside the namespace and keeps it alive, so the port's reader
// never fails; the daemon has to notice the name is gone.)
func TestE2ERestartThenNetnsDeleted(t *testing.T) {
	bed, h1, _ := twoHosts(t)
	ctx := testCtx(t, 2*time.Minute)
	c := mustNetns(t, bed, "rd")
	state := filepath.Join(filepath.Dir(socketPath(t, "rd")), "restart-rd.state.json")
	t.Cleanup(func() { os.Remove(state) })
	args := []string{"--bind", ul1.Addr().String(), "--state", state, "--vni", "42", "--subnet", "10.0.8.0/24"}
	n := startNode(t, h1, "rd", args...)
	ep := n.attach(c)

	if err := n.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.proc.Done()
	n = startNode(t, h1, "rd", args...)
	var eps []control.Endpoint
	if err := n.get("/v1/endpoints", &eps); err != nil || len(eps) != 1 || eps[0].MAC != ep.MAC {
		t.Fatalf("endpoints after the restart: %v %s", err, jsonString(eps))
	}

	if _, err := h1.Run(ctx, "ip", "netns", "del", c.Name); err != nil {
		t.Fatal(err)
	}
	gone := poll(15*time.Second, func() bool {
		var eps []control.Endpoint
		return n.get("/v1/endpoints", &eps) == nil && len(eps) == 0
	})
	if !gone {
		t.Fatalf("the endpoint of the deleted namespace is still listed:\n%s", n.cli("status"))
	}
	for _, e := range n.fdb() {
		if e.MAC == ep.MAC {
			t.Errorf("fdb still has the deleted container's MAC: %+v", e)
		}
	}
	n.stop(bed)
}
