package gossip

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkConvergence measures, with memberlist's LAN timers on loopback,
// how long N nodes take to agree: join-ms from the first Join until every
// node's FDB holds every other node's binding and its peer lists are
// complete, and announce-ms for one new binding to reach every other node.
func BenchmarkConvergence(b *testing.B) {
	lan := func(c *Config) { c.Tune = nil }
	for _, n := range []int{3, 10, 50} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var joinTotal, announceTotal time.Duration
			for range b.N {
				b.StopTimer()
				nodes := make([]*node, n)
				owners := map[*node][]Binding{}
				for i := range nodes {
					nd, err := startNode(b, i, 0, nil, lan)
					if err != nil {
						b.Fatal(err)
					}
					bd := testBinding(nd, 0, 100)
					if err := nd.agent.Announce(bd); err != nil {
						b.Fatal(err)
					}
					nodes[i], owners[nd] = nd, []Binding{bd}
				}
				b.StartTimer()

				start := time.Now()
				seed := []string{nodes[0].agent.Addr().String()}
				for _, nd := range nodes[1:] {
					if _, err := nd.agent.Join(seed); err != nil {
						b.Fatal(err)
					}
				}
				pollUntil(b, 60*time.Second, func() error { return converged(nodes, owners) })
				joinTotal += time.Since(start)

				start = time.Now()
				last := nodes[n-1]
				bd := testBinding(last, 1, 100)
				if err := last.agent.Announce(bd); err != nil {
					b.Fatal(err)
				}
				owners[last] = append(owners[last], bd)
				pollUntil(b, 60*time.Second, func() error { return converged(nodes, owners) })
				announceTotal += time.Since(start)

				b.StopTimer()
				for _, nd := range nodes {
					nd.agent.Close()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(joinTotal.Milliseconds())/float64(b.N), "join-ms")
			b.ReportMetric(float64(announceTotal.Milliseconds())/float64(b.N), "announce-ms")
		})
	}
}

// pollUntil is waitFor with a finer poll, for timing.
func pollUntil(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not converged after %v: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
