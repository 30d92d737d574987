package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// TestRouteThroughput measures TCP with 1 and 4 streams (iperf3, 5 s)
// from a container on one node to two on the other: one in the sender's
// subnet (bridged) and one in another subnet of the same network (routed
// by the sender's node), alternating, OVLSW_ROUTE_FIGURES times each, for
// the closing note of issue 17. It runs only with OVLSW_ROUTE_FIGURES set
// and asserts nothing of speed.
func TestRouteThroughput(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("OVLSW_ROUTE_FIGURES"))
	if runs <= 0 {
		t.Skip("set OVLSW_ROUTE_FIGURES=N to measure routed against bridged TCP N times")
	}
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "n1", "--bind", ul1.Addr().String(), "--log-level", "warn")
	n2 := startNode(t, h2, "n2", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--log-level", "warn")
	ctx := testCtx(t, time.Duration(runs)*2*time.Minute+time.Minute)
	n1.cli("network", "create", "prod", "--vni", "4097", "--subnet", "10.1.1.0/24", "--gateway", "10.1.1.1",
		"--subnet", "10.1.2.0/24", "--gateway", "10.1.2.1")
	if !poll(30*time.Second, func() bool { return n2.cliErr("network", "inspect", "prod") == nil }) {
		t.Fatal("n2 never had network prod")
	}
	src := mustNetns(t, bed, "src")
	n1.attach(src, "--network", "prod", "--ip", "10.1.1.10/24")
	targets := map[string]routed{}
	for name, ip := range map[string]string{"bridged": "10.1.1.20/24", "routed": "10.1.2.20/24"} {
		ns := mustNetns(t, bed, name)
		targets[name] = routed{ns: ns, ep: n2.attach(ns, "--network", "prod", "--ip", ip)}
		srv, err := ns.Start(ctx, "iperf3", "-s", "-B", targets[name].addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Stop(5 * time.Second) })
		if err := src.WaitPing(ctx, targets[name].addr(), 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	iperf := func(name string, streams int) float64 {
		var r struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		var out string
		var err error
		// The server may not listen yet: poll until a run reports.
		if !testbed.Poll(ctx, 20*time.Second, func() bool {
			out, err = src.Run(ctx, "iperf3", "-c", targets[name].addr().String(), "-t", "5", "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "2000")
			r.Error, r.End.SumReceived.BitsPerSecond = "", 0
			return json.Unmarshal([]byte(out), &r) == nil && r.Error == "" && r.End.SumReceived.BitsPerSecond > 0
		}) {
			t.Fatalf("iperf3 to %s: %v %s\n%s", name, err, r.Error, out)
		}
		return r.End.SumReceived.BitsPerSecond / 1e9
	}
	got := map[string][]float64{}
	for run := range runs {
		order := []string{"bridged", "routed"}
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, streams := range []int{1, 4} {
			for _, name := range order {
				g := iperf(name, streams)
				key := fmt.Sprintf("%s tcp%d", name, streams)
				got[key] = append(got[key], g)
				t.Logf("run %d: %s %.2f Gbit/s", run+1, key, g)
			}
		}
	}
	for _, streams := range []int{1, 4} {
		b, r := testbed.Median(got[fmt.Sprintf("bridged tcp%d", streams)]), testbed.Median(got[fmt.Sprintf("routed tcp%d", streams)])
		line := fmt.Sprintf("TCP %d stream(s), median of %d: bridged %.2f Gbit/s, routed %.2f Gbit/s, routed/bridged %.2f", streams, runs, b, r, r/b)
		t.Log(line)
		fmt.Fprintln(os.Stderr, line)
	}
	var rs struct {
		Stats struct {
			Routed uint64 `json:"routed"`
		} `json:"stats"`
	}
	if err := n1.get("/v1/routes", &rs); err != nil || rs.Stats.Routed == 0 {
		t.Errorf("n1 routed nothing: %v %+v", err, rs)
	}
}
