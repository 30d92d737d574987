package main

// This file holds --observe: while the ovlsw build is measured, each
// node's /metrics is scraped once a second (from inside its host
// namespace, as a Prometheus on the host would) and an `ovlsw capture`
// runs on each node's host TAP port, which the measured pair's traffic
// does not cross: the data path pays the capture's per-frame match, the
// node the scrapes. Compare a run with --observe against one without
// (issue 18 asks for under 2%).

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"time"
)

// metricsAddr is where --observe has each node serve /metrics, in its own
// host namespace.
const metricsAddr = "127.0.0.1:9464"

// observer scrapes and captures on a topology's nodes until stopped.
type observer struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	scrapes int
	errs    int
	slowest time.Duration
}

// observe starts scraping and capturing on t's nodes.
func (h *harness) observe(ctx context.Context, t *topo) *observer {
	ctx, cancel := context.WithCancel(ctx)
	o := &observer{cancel: cancel}
	for _, n := range t.nodes {
		capture := exec.CommandContext(ctx, h.opts.Ovlsw, "capture", "--port", n.tap, "--socket", n.socket, "-w", "/dev/null")
		if err := capture.Start(); err == nil {
			o.wg.Go(func() { _ = capture.Wait() })
		}
		o.wg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				err := scrapeOnce(n)
				o.mu.Lock()
				if err != nil {
					o.errs++
				} else {
					o.scrapes++
					o.slowest = max(o.slowest, time.Since(start))
				}
				o.mu.Unlock()
			}
		})
	}
	return o
}

// scrapeOnce GETs /metrics from n's namespace and reads the whole answer.
func scrapeOnce(n *node) error {
	var c net.Conn
	if err := n.ns.Do(func() error { // the socket is made in n's namespace
		var err error
		c, err = net.DialTimeout("tcp", metricsAddr, 2*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", metricsAddr); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
	return err
}

// stop ends the scrapes and captures and says what they did.
func (o *observer) stop() string {
	o.cancel()
	o.wg.Wait()
	return fmt.Sprintf("%d scrapes (%d failed, slowest %v), a capture on each host TAP port", o.scrapes, o.errs, o.slowest.Round(time.Millisecond))
}
