package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/gossip/join"
	"github.com/ovlsw/ovlsw/gossip/secret"
	"github.com/ovlsw/ovlsw/vtep"
)

// secureLAN is the underlay of the security tests.
var secureLAN = netip.MustParsePrefix("192.168.93.0/24")

// lanHosts makes n hosts on secureLAN and returns them with their addresses.
func lanHosts(t *testing.T, bed *testbed.Bed, prefix string, n int) ([]*testbed.Netns, []netip.Addr) {
	t.Helper()
	var hosts []*testbed.Netns
	for i := range n {
		hosts = append(hosts, mustNetns(t, bed, fmt.Sprintf("%s%d", prefix, i+1)))
	}
	ul, err := bed.LAN(secureLAN, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return hosts, ul
}

// upFails runs `ovlsw up ARGS` in ns, which must exit non-zero with one
// line of output; it returns that line.
func upFails(t *testing.T, ns *testbed.Netns, name string, args ...string) string {
	t.Helper()
	sock := socketPath(t, name)
	argv := append([]string{"netns", "exec", ns.Name, ovlswBinary(t), "up", "--name", name, "--socket", sock}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("ovlsw up %v: %v, want a non-zero exit\n%s", args, err, out)
	}
	msg := strings.TrimSpace(string(out))
	if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "ovlsw: ") {
		t.Errorf("ovlsw up %v: output %q: want one line `ovlsw: ...`", args, msg)
	}
	// Nothing of the cluster was kept.
	if _, err := os.Stat(strings.TrimSuffix(sock, ".sock") + ".secret"); !os.IsNotExist(err) {
		t.Errorf("a refused node kept a cluster secret (%v)", err)
	}
	return msg
}

// bindingMessage is a gossip binding message as gossip/wire.go documents
// it, inside a memberlist user message (type 8) as one plain UDP packet:
// owner claims mac in vni at vtep, with generation gen and sequence seq.
func bindingMessage(owner string, vni uint32, mac net.HardwareAddr, seq, gen uint64, vtep netip.AddrPort) []byte {
	b := []byte{8, 1, 1, byte(len(owner))} // memberlist userMsg; version 1, type binding; owner
	b = append(b, owner...)
	b = binary.BigEndian.AppendUint32(b, vni)
	b = append(b, mac...)
	b = append(b, 0) // flags: live
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = append(b, 4)
	b = append(b, vtep.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, vtep.Port())
	return append(b, 0) // no IPs
}

// sendUDP sends each packet from ns to dst.
func sendUDP(t *testing.T, ns *testbed.Netns, dst netip.AddrPort, pkts ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range pkts {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// entryOf returns n's FDB entry for mac in VNI 42.
func entryOf(n *node, mac string) (control.FDBEntry, bool) {
	for _, e := range n.fdb() {
		if e.VNI == 42 && e.MAC == mac {
			return e, true
		}
	}
	return control.FDBEntry{}, false
}

// members counts the alive members n sees, itself included.
func members(n *node) int {
	if g := n.status().Gossip; g != nil {
		return g.Members
	}
	return 0
}

// TestE2ESecureByDefault: three nodes join with join tokens (the second
// with the founder's, the third with the second's). A fourth host is
// refused without a token, with a wrong one and with one printed before
// `ovlsw token --rotate`; it learns nothing, its VXLAN frames are dropped
// as not_member, and a handcrafted gossip message from it, which moves a
// binding on an --insecure cluster, changes no FDB entry here. With the
// new token it joins.
func TestE2ESecureByDefault(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "s", 6)
	var nodes []*node
	for i := range 3 {
		args := []string{"--vni", "42", "--bind", ul[i].String(), "--address", fmt.Sprintf("10.93.0.%d/24", i+1)}
		if i > 0 {
			args = append(args, "--join", ul[i-1].String()) // with that node's own token
		}
		nodes = append(nodes, startNode(t, hosts[i], fmt.Sprintf("s%d", i+1), args...))
	}
	n1, n2 := nodes[0], nodes[1]
	for _, n := range nodes {
		if !poll(20*time.Second, func() bool { return members(n) == 3 }) {
			t.Fatalf("%s sees %d members, want 3:\n%s", n.socket, members(n), n.cli("peers"))
		}
		if g := n.status().Gossip; !g.Encrypted || g.Cluster == "" || g.Cluster != n1.status().Gossip.Cluster {
			t.Errorf("gossip status %+v: want encrypted, in n1's cluster", g)
		}
	}
	h4 := hosts[3]
	attacker := ul[3]

	// Refused joins. A wrong token: the right cluster's fingerprint, another key.
	wrongKey, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wrong := join.Token{Key: wrongKey, Cluster: n1.status().Gossip.Cluster}.String()
	old := strings.TrimSpace(n1.cli("token"))
	if got := strings.TrimSpace(n1.cli("token", "--rotate")); got == old || got == "" {
		t.Fatalf("token --rotate gave %q (old %q)", got, old)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"no token", "", "needs a --token"},
		{"wrong token", wrong, "refused"},
		{"token from before --rotate", old, "refused"},
	} {
		args := []string{"--bind", attacker.String(), "--join", ul[0].String(), "--log-level", "warn"}
		if tc.token != "" {
			args = append(args, "--token", tc.token)
		}
		if msg := upFails(t, h4, "evil", args...); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, msg, tc.want)
		}
	}
	if out := n1.proc.Output(); strings.Count(out, "refused a join") < 2 {
		t.Errorf("n1 logged %d refused joins, want 2 (wrong and old token):\n%s", strings.Count(out, "refused a join"), tail(out, 20))
	}
	var ms []control.Member
	if err := n1.get("/v1/peers", &ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Addr.Addr() == attacker {
			t.Errorf("the refused host is listed as a member: %+v", m)
		}
	}

	// VXLAN from the refused host: every datagram dropped as not_member
	// (TestE2EInjection shows such drops are frames kept from the port),
	// and its source MAC not learned.
	ping := make([]byte, vtep.HeaderLen+14+28)
	if err := (vtep.Header{VNI: 42}).Encode(ping); err != nil {
		t.Fatal(err)
	}
	inner := ping[vtep.HeaderLen:]
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0xee, 0, 0, 0, 4})
	copy(inner[12:], []byte{0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 93, 0, 66, 10, 93, 0, 1, 8})
	dropsBefore := n1.status().Drops["not_member"]
	var pkts [][]byte
	for range 100 {
		pkts = append(pkts, ping)
	}
	sendUDP(t, h4, netip.AddrPortFrom(ul[0], vtep.DefaultPort), pkts...)
	if !poll(10*time.Second, func() bool { return n1.status().Drops["not_member"] >= dropsBefore+100 }) {
		t.Errorf("not_member drops %d, want %d", n1.status().Drops["not_member"], dropsBefore+100)
	}
	if _, ok := entryOf(n1, "02:ee:00:00:00:04"); ok {
		t.Error("n1 learned the refused host's MAC")
	}

	// A handcrafted binding message claiming n2's host MAC for the
	// attacker's VTEP, as the owner n2 with a newer generation.
	mac2 := macOf(t, hosts[1], n2.tap)
	e2, ok := entryOf(n1, mac2)
	if !ok || e2.Node != "s2" {
		t.Fatalf("n1 has no gossip entry of s2's host port %s: %+v", mac2, e2)
	}
	hw, _ := net.ParseMAC(mac2)
	evilVTEP := netip.AddrPortFrom(attacker, vtep.DefaultPort)
	msg := bindingMessage("s2", 42, hw, e2.Seq+100, uint64(time.Now().UnixNano()), evilVTEP)
	sendUDP(t, h4, netip.AddrPortFrom(ul[0], 7946), msg)
	// Barrier: a network created on n2 after the message reaches n1.
	n2.cli("network", "create", "barrier", "--vni", "4093")
	if !poll(10*time.Second, func() bool { return strings.Contains(n1.cli("network", "ls"), "barrier") }) {
		t.Fatal("the barrier network did not reach n1")
	}
	if e, _ := entryOf(n1, mac2); e.VTEP != ul[1].String()+":4789" || e.Node != "s2" || e.Seq != e2.Seq {
		t.Errorf("n1's entry of %s after the handcrafted message: %+v, want it unchanged (%+v)", mac2, e, e2)
	}
	if out := n1.proc.Output(); !strings.Contains(out, "refused gossip not encrypted") || !strings.Contains(out, attacker.String()) {
		t.Errorf("n1 did not warn of the refused gossip from %v:\n%s", attacker, tail(out, 20))
	}

	// Control: the same message moves the binding on an --insecure
	// cluster, so the check above would have caught it.
	i1 := startNode(t, hosts[4], "i1", "--insecure", "--vni", "42", "--bind", ul[4].String(), "--address", "10.93.0.5/24")
	i2 := startNode(t, hosts[5], "i2", "--insecure", "--vni", "42", "--bind", ul[5].String(), "--address", "10.93.0.6/24", "--join", ul[4].String())
	macI2 := macOf(t, hosts[5], i2.tap)
	var eI2 control.FDBEntry
	if !poll(20*time.Second, func() bool { eI2, ok = entryOf(i1, macI2); return ok && eI2.Node == "i2" }) {
		t.Fatalf("i1 has no gossip entry of i2's host port: %s", i1.cli("fdb"))
	}
	hwI2, _ := net.ParseMAC(macI2)
	sendUDP(t, h4, netip.AddrPortFrom(ul[4], 7946), bindingMessage("i2", 42, hwI2, eI2.Seq+100, uint64(time.Now().UnixNano()), evilVTEP))
	if !poll(10*time.Second, func() bool { e, _ := entryOf(i1, macI2); return e.VTEP == evilVTEP.String() }) {
		t.Errorf("on an --insecure cluster the handcrafted message did not move the binding either; the check above proves nothing:\n%s", i1.cli("fdb"))
	}

	// With the current token the fourth host joins.
	n4 := startNode(t, h4, "s4", "--bind", attacker.String(), "--join", ul[0].String(), "--token", strings.TrimSpace(n1.cli("token")))
	if !poll(20*time.Second, func() bool { return members(n1) == 4 && members(n4) == 4 }) {
		t.Errorf("with the rotated token: n1 sees %d members, the new node %d; want 4", members(n1), members(n4))
	}
}

// TestE2EKeyRotationSchedule: with a two-second rotation interval, the
// gossip keys rotate while traffic flows, every member and binding stays;
// a node stopped across rotations and started again without a token
// rejoins from the secret it kept.
func TestE2EKeyRotationSchedule(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "k", 3)
	var nodes []*node
	args := func(i int) []string {
		a := []string{"--vni", "42", "--bind", ul[i].String(), "--address", fmt.Sprintf("10.93.1.%d/24", i+1), "--key-rotation", "2s"}
		if i > 0 {
			a = append(a, "--join", ul[0].String())
		}
		return a
	}
	for i := range 3 {
		nodes = append(nodes, startNode(t, hosts[i], fmt.Sprintf("k%d", i+1), args(i)...))
	}
	n1, n3 := nodes[0], nodes[2]
	full := func() bool {
		for _, n := range nodes {
			if members(n) != 3 || len(gossipEntries(n)) != 2 {
				return false
			}
		}
		return true
	}
	if !poll(20*time.Second, full) {
		t.Fatalf("cluster not formed: %s", n1.cli("peers"))
	}
	epoch := func(n *node) uint64 { return n.status().Gossip.KeyEpoch }

	// Traffic across while at least three rotations happen.
	ctx := testCtx(t, time.Minute)
	ping, err := hosts[0].Start(ctx, "ping", "-i", "0.05", "-c", "200", "-W", "1", "10.93.1.2")
	if err != nil {
		t.Fatal(err)
	}
	start := epoch(n1)
	lost := false
	if !poll(30*time.Second, func() bool {
		if !full() {
			lost = true
		}
		return epoch(n1) >= start+3
	}) {
		t.Fatalf("key epoch went from %d to %d, want 3 rotations", start, epoch(n1))
	}
	<-ping.Done()
	if lost {
		t.Errorf("a member or a binding went missing during the rotations:\n%s\n%s", n1.cli("peers"), n1.cli("fdb"))
	}
	t.Logf("during three rotations: %s", tail(ping.Output(), 2))
	if out := n1.proc.Output(); !strings.Contains(out, "gossip key rotated") {
		t.Errorf("n1 did not log a rotation:\n%s", tail(out, 20))
	}

	// n3 stops (a crash: no leave) and misses two rotations.
	if err := n3.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n3.proc.Done()
	stopped := epoch(n1)
	if !poll(30*time.Second, func() bool { return epoch(n1) >= stopped+2 }) {
		t.Fatalf("no rotations while n3 was down")
	}
	// Started again without a token: the secret it kept is enough.
	nodes[2] = startNodeToken(t, hosts[2], "k3", false, args(2)...)
	if !poll(30*time.Second, full) {
		t.Errorf("n3 did not rejoin after missing rotations:\n%s\n%s", n1.cli("peers"), tail(nodes[2].proc.Output(), 20))
	}
	if e1, e3 := epoch(n1), epoch(nodes[2]); e1 != e3 && e1 != e3+1 && e3 != e1+1 {
		t.Errorf("epochs %d and %d after the rejoin", e1, e3)
	}
}

// TestJoinTime measures, OVLSW_JOIN_TIMES times each, how long `ovlsw up
// --join` takes until both nodes list each other as alive: with the token
// exchange (a joiner whose secret file was removed), without it (the
// joiner kept the secret), and with --insecure. It runs only when
// OVLSW_JOIN_TIMES is set (make join-times); the medians are figures, not
// assertions.
func TestJoinTime(t *testing.T) {
	times, _ := strconv.Atoi(os.Getenv("OVLSW_JOIN_TIMES"))
	if times <= 0 {
		t.Skip("set OVLSW_JOIN_TIMES=N to measure join times")
	}
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "j", 2)
	for _, mode := range []string{"token exchange", "secret kept", "insecure"} {
		var extra []string
		if mode == "insecure" {
			extra = []string{"--insecure"}
		}
		n1 := startNode(t, hosts[0], "j1", append([]string{"--bind", ul[0].String()}, extra...)...)
		var took []time.Duration
		for i := range times {
			args := append([]string{"--bind", ul[1].String(), "--join", ul[0].String()}, extra...)
			if mode == "token exchange" || (mode == "secret kept" && i == 0) {
				args = append(args, "--token", strings.TrimSpace(n1.cli("token")))
			}
			if mode == "token exchange" {
				sock := socketPath(t, "j2")
				os.Remove(strings.TrimSuffix(sock, ".sock") + ".secret") // a stranger to the cluster
			}
			start := time.Now()
			n2 := startNodeToken(t, hosts[1], "j2", false, args...)
			if !poll(20*time.Second, func() bool { return members(n1) == 2 && members(n2) == 2 }) {
				t.Fatalf("%s: join %d did not complete", mode, i)
			}
			if i > 0 || mode != "secret kept" {
				took = append(took, time.Since(start))
			}
			n2.stop(bed) // leaves the cluster, keeps the secret
			if !poll(20*time.Second, func() bool { return members(n1) == 1 }) {
				t.Fatalf("%s: n1 still lists the stopped node", mode)
			}
		}
		slices.Sort(took)
		t.Logf("join, %s: median %v of %d (min %v, max %v)", mode, took[len(took)/2].Round(time.Millisecond), len(took),
			took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		n1.stop(bed)
	}
}
