package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScaleEndpoints measures what the closing notes of the container issue
// ask for: attach latency (the attach command until the first ping from a
// container on another node is answered), memory per endpoint, and how many
// endpoints one node holds. It runs only with OVLSW_SCALE=N (endpoints on
// one node, e.g. 1000): `make scale`. It asserts that every attach works and
// every endpoint stays listed, never a speed.
func TestScaleEndpoints(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("OVLSW_SCALE"))
	if n <= 0 {
		t.Skip("set OVLSW_SCALE=N to attach N endpoints to one node (make scale)")
	}
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "s1", "--vni", "42", "--subnet", "10.96.0.0/16", "--bind", ul1.Addr().String(), "--log-level", "warn")
	n2 := startNode(t, h2, "s2", "--vni", "42", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--log-level", "warn")
	ctx := testCtx(t, 30*time.Minute)
	probe := mustNetns(t, bed, "probe")
	n2.attach(probe, "--ip", "10.96.255.1/16")

	rss0 := vmRSS(t, n1.proc.Pid())
	// Latency, one attach at a time, on 10 endpoints.
	var lat []time.Duration
	for i := range min(n, 10) {
		c := mustNetns(t, bed, fmt.Sprintf("e%d", i))
		start := time.Now()
		ep := n1.attach(c)
		if err := probe.WaitPing(ctx, ep.Address.Addr(), 30*time.Second); err != nil {
			t.Fatalf("endpoint %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	// The rest 32 at a time, as a busy host attaches containers.
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 10; i < n; i++ {
		c := mustNetns(t, bed, fmt.Sprintf("e%d", i))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if out, err := execOvlsw(n1, "attach", "--netns", c.Name); err != nil {
				t.Errorf("attach e%d: %v %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	bulk := time.Since(start)
	rss1 := vmRSS(t, n1.proc.Pid())
	var d struct{ Endpoints []any }
	if err := n1.get("/v1/networks/default", &d); err != nil || len(d.Endpoints) < n {
		t.Fatalf("listed %d endpoints, want %d: %v", len(d.Endpoints), n, err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("endpoints on one node: %d", n)
	t.Logf("attach to first ping answered from another node: p50 %v, max %v (%d samples; includes the %v claim settle)",
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat), time.Second)
	t.Logf("%d attaches, 32 at a time: %v", max(n-10, 0), bulk.Round(time.Millisecond))
	t.Logf("ovlsw RSS: %d KiB before, %d KiB after: %.1f KiB per endpoint", rss0, rss1, float64(rss1-rss0)/float64(n))
	out, _ := exec.Command("sh", "-c", fmt.Sprintf("grep -E 'VmHWM|Threads' /proc/%d/status", n1.proc.Pid())).Output()
	t.Logf("%s", strings.TrimSpace(string(out)))
}

func vmRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
