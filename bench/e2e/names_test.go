package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// needTool skips (or, with OVLSW_REQUIRE_ROOT_TESTS, fails) a test whose
// tool .ci/run installs.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv(testbed.RequireRootEnv) != "" {
			t.Fatalf("%s not installed (Debian package %s; .ci/run installs it)", tool, pkg)
		}
		t.Skipf("%s not installed (Debian package %s)", tool, pkg)
	}
	return p
}

// dnsmasqUpstream runs dnsmasq in ns on addr, answering outside.example
// with 198.51.100.7 and nothing else: an upstream resolver the test owns.
func dnsmasqUpstream(t *testing.T, ns *testbed.Netns, addr netip.Addr) {
	t.Helper()
	bin := needTool(t, "dnsmasq", "dnsmasq-base")
	p, err := ns.Start(context.Background(), bin, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
		"--bind-interfaces", "--listen-address="+addr.String(), "--except-interface=lo", "--port=53", "--pid-file=",
		"--user=root", "--address=/outside.example/198.51.100.7", "--log-facility=-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	if !poll(10*time.Second, func() bool {
		out, err := ns.Run(context.Background(), "dig", "+short", "+time=1", "+tries=1", "@"+addr.String(), "outside.example")
		return err == nil && strings.TrimSpace(out) == "198.51.100.7"
	}) {
		t.Fatalf("dnsmasq upstream did not answer:\n%s", p.Output())
	}
}

// dig runs dig in ns and returns its output.
func dig(ctx context.Context, t *testing.T, ns *testbed.Netns, args ...string) string {
	t.Helper()
	out, err := ns.Run(ctx, append([]string{"dig", "+time=3", "+tries=1"}, args...)...)
	if err != nil {
		t.Fatalf("dig %v in %s: %v\n%s", args, ns.Name, err, out)
	}
	return out
}

// digShort returns the sorted answers of dig +short.
func digShort(ctx context.Context, ns *testbed.Netns, args ...string) []string {
	out, err := ns.Run(ctx, append([]string{"dig", "+short", "+time=2", "+tries=1"}, args...)...)
	if err != nil {
		return nil
	}
	f := strings.Fields(out)
	slices.Sort(f)
	return f
}

// resolves polls until name resolves in ns to exactly want (sorted; none:
// it does not resolve).
func resolves(ctx context.Context, t *testing.T, ns *testbed.Netns, name string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	if !poll(30*time.Second, func() bool {
		got = digShort(ctx, ns, name)
		return slices.Equal(got, want)
	}) {
		t.Fatalf("%s in %s resolves to %v, want %v", name, ns.Name, got, want)
	}
}

// TestE2ENames: three nodes and containers on each find each other by
// name, as Docker users expect of an overlay: getent, ping and dig by NAME
// and NAME.NETWORK across nodes, reverse lookups, a service's tasks and its
// round robin, NODATA for a type a name lacks, isolation from another
// network, forwarding of outside names (answered, SERVFAIL, REFUSED), TCP,
// a taken name refused, and names going with a detach, a node's death and
// moving to a new container.
func TestE2ENames(t *testing.T) {
	needTool(t, "dig", "dnsutils")
	bed := testbed.New(t)
	var hosts []*testbed.Netns
	for i := range 3 {
		hosts = append(hosts, mustNetns(t, bed, fmt.Sprintf("d%d", i+1)))
	}
	ul, err := bed.LAN(netip.MustParsePrefix("192.168.94.0/24"), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	dnsmasqUpstream(t, hosts[0], ul[0])
	upstream := []string{
		"--dns-upstream", ul[0].String(), // dnsmasq, on the first host
		"--dns-upstream", "192.168.94.99", // nobody: SERVFAIL
		"--dns-upstream", "none", // REFUSED
	}
	var nodes []*node
	for i, h := range hosts {
		args := []string{"--bind", ul[i].String(), upstream[2*i], upstream[2*i+1]}
		if i > 0 {
			args = append(args, "--join", ul[0].String())
		}
		nodes = append(nodes, startNode(t, h, fmt.Sprintf("d%d", i+1), args...))
	}
	ctx := testCtx(t, 4*time.Minute)
	nodes[0].cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.1")
	nodes[0].cli("network", "create", "db", "--vni", "4098", "--subnet", "10.0.10.0/24", "--dns-address", "10.0.10.53")
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool {
			var ns []control.Network
			return n.get("/v1/networks", &ns) == nil && len(ns) == 2
		}) {
			t.Fatalf("networks on %s:\n%s", n.tap, n.cli("network", "ls"))
		}
	}
	c1, c2, c3, d1 := mustNetns(t, bed, "c1"), mustNetns(t, bed, "c2"), mustNetns(t, bed, "c3"), mustNetns(t, bed, "dbc")
	e1 := nodes[0].attach(c1, "--network", "web", "--name", "c1", "--alias", "www", "--service", "api")
	e2 := nodes[1].attach(c2, "--network", "web", "--name", "nginx_web_2", "--service", "api")
	e3 := nodes[2].attach(c3, "--network", "web", "--name", "c3")
	ed := nodes[0].attach(d1, "--network", "db", "--name", "d1")
	if e1.DNS != netip.MustParseAddr("10.0.9.1") || ed.DNS != netip.MustParseAddr("10.0.10.53") || e1.DNSName != "c1" {
		t.Fatalf("endpoints: %+v %+v", e1, ed)
	}
	a1, a2, a3, ad := e1.Address.Addr().String(), e2.Address.Addr().String(), e3.Address.Addr().String(), ed.Address.Addr().String()

	// The namespace's resolver asks the switch, with the network as search
	// domain.
	rc, err := os.ReadFile(filepath.Join("/etc/netns", c1.Name, "resolv.conf"))
	if err != nil || !strings.Contains(string(rc), "nameserver 10.0.9.1\n") || !strings.Contains(string(rc), "search web\n") {
		t.Fatalf("resolv.conf of c1: %q %v", rc, err)
	}

	// Names of other nodes, by NAME and NAME.NETWORK, and aliases.
	resolves(ctx, t, c1, "c3", a3)
	resolves(ctx, t, c1, "nginx_web_2.web", a2)
	resolves(ctx, t, c3, "WWW", a1)
	out, err := c1.Run(ctx, "getent", "hosts", "c3")
	if err != nil || !strings.HasPrefix(out, a3+" ") {
		t.Errorf("getent hosts c3 in c1: %q %v", out, err)
	}
	if out, err := c1.Run(ctx, "ping", "-c", "1", "-W", "5", "nginx_web_2"); err != nil {
		t.Errorf("ping nginx_web_2 from c1: %v\n%s", err, out)
	}
	if out, err := c3.Run(ctx, "ping", "-c", "1", "-W", "5", "c1.web"); err != nil {
		t.Errorf("ping c1.web from c3: %v\n%s", err, out)
	}

	if out, err := c3.Run(ctx, "getent", "hosts", "tasks.api"); err != nil || !strings.Contains(out, a1) || !strings.Contains(out, a2) {
		t.Errorf("getent hosts tasks.api in c3: %q %v", out, err)
	}
	// ovlsw-attach does what attach does: the namespace's name is its DNS
	// name, and its resolver asks the switch.
	scripted := fmt.Sprintf("ovlsw-s%d", os.Getpid())
	t.Cleanup(func() { exec.Command("ip", "netns", "del", scripted).Run() })
	if out, code := runAttachScript(t, nodes[1], scripted, "web"); code != 0 {
		t.Fatalf("ovlsw-attach: %d\n%s", code, out)
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", scripted, "getent", "hosts", "c3").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), a3+" ") {
		t.Errorf("getent hosts c3 in the ovlsw-attach namespace: %q %v", out, err)
	}
	if got := digShort(ctx, c1, scripted); len(got) != 1 {
		t.Errorf("%s (attached by ovlsw-attach) from c1: %v", scripted, got)
	}
	nodes[1].cli("detach", "--netns", scripted)
	if _, err := os.Stat(filepath.Join("/etc/netns", scripted)); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s left after detach: %v", scripted, err)
	}

	// Reverse: every endpoint's address answers NAME.NETWORK.
	if got := digShort(ctx, c3, "-x", a2); !slices.Equal(got, []string{"nginx_web_2.web."}) {
		t.Errorf("reverse of %s from c3: %v", a2, got)
	}
	// A service: tasks.api is every task; api the same in a fresh order.
	resolves(ctx, t, c3, "tasks.api", a1, a2)
	orders := map[string]bool{}
	for range 20 {
		out, _ := c3.Run(ctx, "dig", "+short", "api")
		orders[strings.Join(strings.Fields(out), ",")] = true
	}
	for o := range orders {
		if f := strings.Split(o, ","); len(f) != 2 || !slices.Contains(f, a1) || !slices.Contains(f, a2) {
			t.Errorf("api answered %q", o)
		}
	}
	if len(orders) < 2 {
		t.Errorf("api answered in one order only in 20 queries: %v", orders)
	}
	// A type the name lacks: NOERROR, no answer, at once.
	if out := dig(ctx, t, c1, "AAAA", "c3"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") {
		t.Errorf("AAAA c3:\n%s", out)
	}
	// Over TCP.
	if out := dig(ctx, t, c1, "+tcp", "+short", "c3.web"); strings.TrimSpace(out) != a3 {
		t.Errorf("dig +tcp c3.web: %q", out)
	}
	// Another network's names are not visible, forward or reverse.
	resolves(ctx, t, d1, "d1", ad)
	if got := digShort(ctx, c1, "d1.db"); len(got) != 0 {
		t.Errorf("d1.db resolves in c1 (network web): %v", got)
	}
	if got := digShort(ctx, c1, "-x", ad); slices.Contains(got, "d1.db.") {
		t.Errorf("reverse of d1's address in c1: %v", got)
	}
	if got := digShort(ctx, d1, "c1"); len(got) != 0 {
		t.Errorf("c1 resolves in d1 (network db): %v", got)
	}
	// Outside names: forwarded and relayed; an upstream that does not
	// answer gives SERVFAIL in bounded time; none gives REFUSED.
	if got := digShort(ctx, c1, "outside.example"); !slices.Equal(got, []string{"198.51.100.7"}) {
		t.Errorf("outside.example from c1 (upstream dnsmasq): %v", got)
	}
	start := time.Now()
	if out := dig(ctx, t, c2, "+time=5", "outside.example"); !strings.Contains(out, "status: SERVFAIL") {
		t.Errorf("outside.example from c2 (upstream dead):\n%s", out)
	}
	t.Logf("SERVFAIL from a dead upstream after %v", time.Since(start).Round(time.Millisecond))
	if out := dig(ctx, t, c3, "outside.example"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("outside.example from c3 (no upstream):\n%s", out)
	}

	// A taken name is refused, naming its holder.
	x := mustNetns(t, bed, "x")
	if err := nodes[0].cliErr("attach", "--netns", x.Name, "--network", "web", "--name", "C3"); err == nil ||
		!strings.Contains(err.Error(), `name "C3" is taken on network web`) || !strings.Contains(err.Error(), "on node d3") {
		t.Errorf("attach with a taken name: %v", err)
	}
	if bed.LinkExists(x, "eth0") {
		t.Error("the refused attach left eth0 in its namespace")
	}

	// ovlsw names and status.
	var names []control.Name
	if err := jsonUnmarshal(nodes[1].cli("names", "--network", "web", "--json"), &names); err != nil || len(names) != 3 {
		t.Errorf("names on d2: %+v %v", names, err)
	}
	if st := nodes[0].status(); st.DNS == nil || st.DNS.Answered == 0 || st.DNS.Forwarded == 0 {
		t.Errorf("status DNS of d1: %+v", st.DNS)
	}

	// Detach: the name is gone everywhere, the resolv.conf too.
	nodes[1].cli("detach", "--netns", c2.Name)
	resolves(ctx, t, c1, "nginx_web_2")
	resolves(ctx, t, c3, "tasks.api", a1)
	if _, err := os.Stat(filepath.Join("/etc/netns", c2.Name)); !os.IsNotExist(err) {
		t.Errorf("/etc/netns/%s left after detach: %v", c2.Name, err)
	}
	// The name moves to a new container on another node.
	c2b := mustNetns(t, bed, "c2b")
	e2b := nodes[2].attach(c2b, "--network", "web", "--name", "nginx_web_2", "--ip", "10.0.9.222/24")
	resolves(ctx, t, c1, "nginx_web_2", e2b.Address.Addr().String())

	// A node that dies takes its names with it, once failure detection
	// declares it dead.
	if err := nodes[2].proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	resolves(ctx, t, c1, "c3")
	resolves(ctx, t, c1, "nginx_web_2")
}
