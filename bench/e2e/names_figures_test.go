package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// lookup asks server (from inside ns) for name's A records once, with a
// short timeout. It returns the addresses, or nil for NXDOMAIN, no answer
// or a failure.
func lookup(ns *testbed.Netns, server netip.Addr, name string) []netip.Addr {
	var out []netip.Addr
	_ = ns.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 53)))
		if err != nil {
			return err
		}
		defer c.Close()
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x5151, RecursionDesired: true})
		_ = b.StartQuestions()
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		q, _ := b.Finish()
		if _, err := c.Write(q); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf[:n]); err != nil {
			return err
		}
		for _, a := range m.Answers {
			if r, ok := a.Body.(*dnsmessage.AResource); ok {
				out = append(out, netip.AddrFrom4(r.A))
			}
		}
		return nil
	})
	return out
}

// untilEverywhere polls name on every observer until check holds on all of
// them and returns how long that took from start.
func untilEverywhere(t *testing.T, start time.Time, observers []*testbed.Netns, server netip.Addr, name string, check func([]netip.Addr) bool) time.Duration {
	t.Helper()
	deadline := start.Add(60 * time.Second)
	done := make([]bool, len(observers))
	for {
		all := true
		for i, o := range observers {
			if !done[i] {
				done[i] = check(lookup(o, server, name))
			}
			all = all && done[i]
		}
		if all {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not settled on every node after 60 s", name)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func is(a netip.Addr) func([]netip.Addr) bool {
	return func(got []netip.Addr) bool { return len(got) == 1 && got[0] == a }
}

func gone(got []netip.Addr) bool { return len(got) == 0 }

// stats formats the median and the worst of ds.
func stats(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("median %v, worst %v (n=%d)", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// TestNameFreshness measures the freshness figures of the name service
// (OVLSW_DNS_FRESHNESS=N rounds; skipped otherwise): on three nodes, the
// time from an attach on one node until its name resolves from containers
// on the two others; from a detach until it is NXDOMAIN there; from the
// attach of a new container taking the name on the third node until both
// others answer its address; and from a node's SIGKILL until its names
// are gone everywhere (with the failure detection that takes). Figures,
// not thresholds: it fails only if a name never settles.
func TestNameFreshness(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("OVLSW_DNS_FRESHNESS"))
	if rounds <= 0 {
		t.Skip("set OVLSW_DNS_FRESHNESS=N to measure the name service's freshness over N rounds")
	}
	bed := testbed.New(t)
	var hosts []*testbed.Netns
	for i := range 3 {
		hosts = append(hosts, mustNetns(t, bed, fmt.Sprintf("f%d", i+1)))
	}
	ul, err := bed.LAN(netip.MustParsePrefix("192.168.95.0/24"), hosts...)
	if err != nil {
		t.Fatal(err)
	}
	start := func(i int) *node {
		args := []string{"--bind", ul[i].String(), "--dns-upstream", "none"}
		if i > 0 {
			args = append(args, "--join", ul[0].String())
		}
		return startNode(t, hosts[i], fmt.Sprintf("f%d", i+1), args...)
	}
	nodes := []*node{start(0), start(1), start(2)}
	nodes[0].cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.0.0/16", "--gateway", "10.0.9.1")
	server := netip.MustParseAddr("10.0.9.1")
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool { return strings.Contains(n.cli("network", "ls"), "web") }) {
			t.Fatal("network web not everywhere")
		}
	}
	o1, o3 := mustNetns(t, bed, "o1"), mustNetns(t, bed, "o3")
	nodes[0].attach(o1, "--network", "web", "--name", "o1")
	nodes[2].attach(o3, "--network", "web", "--name", "o3")
	obs := []*testbed.Netns{o1, o3} // observers on the nodes other than the second
	moveObs := []*testbed.Netns{o1} // a name moving to the third node, seen from the first

	var attach, attachRet, detach, move []time.Duration
	for i := range rounds {
		name := fmt.Sprintf("f%d", i)
		a, b := mustNetns(t, bed, fmt.Sprintf("a%d", i)), mustNetns(t, bed, fmt.Sprintf("b%d", i))
		t0 := time.Now()
		ea := nodes[1].attach(a, "--network", "web", "--name", name)
		ret := time.Since(t0)
		attach = append(attach, untilEverywhere(t, t0, obs, server, name, is(ea.Address.Addr())))
		attachRet = append(attachRet, max(attach[len(attach)-1]-ret, 0))

		t0 = time.Now()
		nodes[1].cli("detach", "--netns", a.Name)
		detach = append(detach, untilEverywhere(t, t0, obs, server, name, gone))

		// The name moves: the new holder is attached on the third node.
		nodes[1].attach(a, "--network", "web", "--name", name)
		untilEverywhere(t, time.Now(), obs, server, name, func(got []netip.Addr) bool { return len(got) == 1 })
		nodes[1].cli("detach", "--netns", a.Name)
		// The third node refuses the name while it still knows the old
		// holder: wait until it has heard of the detach.
		untilEverywhere(t, time.Now(), []*testbed.Netns{o3}, server, name, gone)
		t0 = time.Now()
		eb := nodes[2].attach(b, "--network", "web", "--name", name)
		move = append(move, untilEverywhere(t, t0, moveObs, server, name, is(eb.Address.Addr())))
		nodes[2].cli("detach", "--netns", b.Name)
	}
	t.Logf("name resolvable on every other node after the attach command started: %s", stats(attach))
	t.Logf("name resolvable on every other node after the attach command returned: %s", stats(attachRet))
	t.Logf("name NXDOMAIN on every other node after detach: %s", stats(detach))
	t.Logf("moved name answering the new address after its attach: %s", stats(move))

	// Death: the second node, with a named endpoint, is killed; its name
	// goes once failure detection declares it dead.
	var death, afterDead []time.Duration
	for i := range min(rounds, 5) {
		name := fmt.Sprintf("dead%d", i)
		c := mustNetns(t, bed, fmt.Sprintf("k%d", i))
		ec := nodes[1].attach(c, "--network", "web", "--name", name)
		untilEverywhere(t, time.Now(), obs, server, name, is(ec.Address.Addr()))
		t0 := time.Now()
		if err := nodes[1].proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Failure detection: the first node lists the second as dead.
		var declared atomic.Int64 // nanoseconds after t0
		go func() {
			poll(60*time.Second, func() bool {
				var ms []control.Member
				if nodes[0].get("/v1/peers", &ms) != nil {
					return false
				}
				for _, m := range ms {
					if m.Name == "f2" && m.State == "dead" {
						declared.Store(int64(time.Since(t0)))
						return true
					}
				}
				return false
			})
		}()
		death = append(death, untilEverywhere(t, t0, obs, server, name, gone))
		if !poll(60*time.Second, func() bool { return declared.Load() > 0 }) {
			t.Fatal("f2 never declared dead")
		}
		afterDead = append(afterDead, death[len(death)-1]-time.Duration(declared.Load()))
		_ = nodes[1].proc.Wait(10 * time.Second)
		os.Remove(nodes[1].socket)
		nodes[1] = start(1)
		if !poll(30*time.Second, func() bool { return strings.Contains(nodes[1].cli("network", "ls"), "web") }) {
			t.Fatal("restarted node has no network web")
		}
	}
	t.Logf("names of a SIGKILLed node gone everywhere (failure detection included): %s", stats(death))
	t.Logf("names gone everywhere after the first node declared it dead: %s", stats(afterDead))
}

// dnsperfRE reads dnsperf's summary and per-query lines.
var (
	qpsRE     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	lostRE    = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	latencyRE = regexp.MustCompile(`(?m)^> \S+ \S+ \S+ ([0-9.]+)$`)
)

// dnsperf runs dnsperf in ns against server for d and returns queries a
// second, queries lost, and (with rate > 0, where every answer is timed)
// p50 and p99 latency.
func dnsperf(ctx context.Context, t *testing.T, ns *testbed.Netns, server netip.Addr, queries string, d time.Duration, rate int) (qps float64, lost int, p50, p99 time.Duration) {
	t.Helper()
	args := []string{"dnsperf", "-s", server.String(), "-d", queries, "-l", strconv.Itoa(int(d.Seconds())), "-t", "1"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate), "-v")
	} else {
		args = append(args, "-c", "4", "-q", "200")
	}
	out, err := ns.Run(ctx, args...)
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, tail(out, 20))
	}
	m := qpsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dnsperf output:\n%s", tail(out, 20))
	}
	qps, _ = strconv.ParseFloat(m[1], 64)
	if m := lostRE.FindStringSubmatch(out); m != nil {
		lost, _ = strconv.Atoi(m[1])
	}
	var lat []time.Duration
	for _, m := range latencyRE.FindAllStringSubmatch(out, -1) {
		s, _ := strconv.ParseFloat(m[1], 64)
		lat = append(lat, time.Duration(s*float64(time.Second)))
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		p50, p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return qps, lost, p50, p99
}

// TestDNSPerfFigure compares the switch's name service with dnsmasq
// serving the same names from a container on the same overlay
// (OVLSW_DNSPERF=SECONDS per run; skipped otherwise): dnsperf from a
// container, at full speed for queries a second, and at a fixed moderate
// rate for p50 and p99 latency, each server twice, alternating.
func TestDNSPerfFigure(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("OVLSW_DNSPERF"))
	if secs <= 0 {
		t.Skip("set OVLSW_DNSPERF=SECONDS to compare the name service with dnsmasq")
	}
	needTool(t, "dnsperf", "dnsperf")
	needTool(t, "dnsmasq", "dnsmasq-base")
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "p1", "--bind", ul1.Addr().String(), "--dns-upstream", "none", "--dns-rate", "0")
	n2 := startNode(t, h2, "p2", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--dns-upstream", "none", "--dns-rate", "0")
	n1.cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.1")
	if !poll(30*time.Second, func() bool { return strings.Contains(n2.cli("network", "ls"), "web") }) {
		t.Fatal("network web not on p2")
	}
	ctx := testCtx(t, time.Duration(8*secs+120)*time.Second)
	var hostRecords []string
	var queries strings.Builder
	for i := range 10 {
		n := n1
		if i%2 == 1 {
			n = n2
		}
		ns := mustNetns(t, bed, fmt.Sprintf("s%d", i))
		name := fmt.Sprintf("svc%d", i)
		ep := n.attach(ns, "--network", "web", "--name", name)
		hostRecords = append(hostRecords, fmt.Sprintf("--host-record=%s,%s.web,%s", name, name, ep.Address.Addr()))
		fmt.Fprintf(&queries, "%s.web A\n%s A\n", name, name)
	}
	client := mustNetns(t, bed, "client")
	n1.attach(client, "--network", "web", "--name", "client")
	dm := mustNetns(t, bed, "dnsmasq")
	edm := n1.attach(dm, "--network", "web", "--name", "dnsmasq")
	args := append([]string{"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
		"--listen-address=" + edm.Address.Addr().String(), "--except-interface=lo", "--port=53", "--pid-file=", "--user=root",
		"--cache-size=1000", "--dns-forward-max=1000"}, hostRecords...)
	p, err := dm.Start(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	qf := filepath.Join(t.TempDir(), "queries")
	if err := os.WriteFile(qf, []byte(queries.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	servers := []struct {
		name string
		addr netip.Addr
	}{{"ovlsw", netip.MustParseAddr("10.0.9.1")}, {"dnsmasq", edm.Address.Addr()}}
	for _, s := range servers {
		if !poll(10*time.Second, func() bool { return len(lookup(client, s.addr, "svc3.web")) == 1 }) {
			t.Fatalf("%s does not answer svc3.web:\n%s", s.name, p.Output())
		}
	}
	d := time.Duration(secs) * time.Second
	for round := range 2 {
		for _, s := range servers {
			qps, lost, _, _ := dnsperf(ctx, t, client, s.addr, qf, d, 0)
			_, _, p50, p99 := dnsperf(ctx, t, client, s.addr, qf, d, 2000)
			t.Logf("round %d %-8s %8.0f queries/s (%d lost); at 2000/s: p50 %v, p99 %v", round+1, s.name, qps, lost, p50, p99)
		}
	}
	st := n1.status()
	t.Logf("p1: %d answered, drops %v", st.DNS.Answered, st.Drops)
	for _, l := range strings.Split(n1.proc.Output(), "\n") {
		if strings.Contains(l, "level=WARN") {
			t.Log(l)
		}
	}
}
