package daemon

// This file holds the observer: the owner of what the node shows about
// itself beyond the control API's snapshots: the Prometheus /metrics
// server (--metrics), the event hub and its watcher (watch.go), and the
// streams of the control API that outlive a request's usual span (events
// and captures, observe_api.go), which it ends on close. It reads the
// other owners through their methods and keeps no node state of its own.

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/cmd/daemon/events"
	"github.com/ovlsw/ovlsw/cmd/daemon/metrics"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// observer owns the metrics server, the event hub and the streams. Its
// fields are set once in startObserver.
type observer struct {
	metrics *metrics.Server // nil without --metrics
	hub     *events.Hub[control.Event]
	watch   *watcher
	// ctx ends every stream (events, captures) when the node closes, so
	// that the control server's shutdown does not wait for them.
	ctx    context.Context
	cancel context.CancelFunc
	caps   captureSessions
}

// checkMetricsAddr checks a --metrics address: host:port, the host
// optional (all addresses).
func checkMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return configErrorf("metrics address %q: want HOST:PORT, e.g. 127.0.0.1:9464 ([::1]:9464 for IPv6)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return configErrorf("metrics address %q: want a port from 1 to 65535", addr)
	}
	return nil
}

// metricsSources are the getters the collector reads d's owners with.
func (d *Daemon) metricsSources() metrics.Sources {
	return metrics.Sources{
		Switch: d.sw.Stats,
		FDB: func() (map[fdb.Origin]int, uint64) {
			by := d.fdb.CountByOrigin()
			m := make(map[fdb.Origin]int, len(by))
			for _, o := range fdb.Origins() {
				m[o] = by[o]
			}
			return m, d.fdb.Refused()
		},
		Gossip: func() (gossip.Stats, []gossip.MemberInfo, bool) {
			c := d.cluster.Load()
			if c == nil {
				return gossip.Stats{}, nil, false
			}
			return c.agent.Stats(), c.agent.Members(), true
		},
		KeyEpoch: func() (uint64, bool) {
			c := d.cluster.Load()
			if c == nil || c.rotator == nil {
				return 0, false
			}
			return c.rotator.epoch.Load(), true
		},
	}
}

// startObserver starts the event hub and its watcher, and what cfg asks
// for: the metrics server on cfg.Metrics.
func (d *Daemon) startObserver() error {
	d.obs.ctx, d.obs.cancel = context.WithCancel(context.Background())
	d.obs.hub = events.New[control.Event]()
	d.obs.watch = newWatcher(d, d.obs.hub)
	if d.cfg.Metrics == "" {
		return nil
	}
	src := d.metricsSources()
	src.Extra = append(src.Extra, metrics.RouteCounters(d.sw.RouteStats))
	if d.names != nil {
		src.Extra = append(src.Extra, metrics.DNSCounters(d.names.stats))
	}
	src.Extra = append(src.Extra, metrics.Table{
		Snapshot: func() any { p, l := d.obs.hub.Stats(); return [2]uint64{p, l} },
		Counters: []metrics.Counter{
			{Name: "ovlsw_events_published_total", Help: "Events published to followers of ovlsw events.", Get: func(s any) uint64 { return s.([2]uint64)[0] }},
			{Name: "ovlsw_events_lost_total", Help: "Events lost by followers that fell behind.", Get: func(s any) uint64 { return s.([2]uint64)[1] }},
		},
	}, metrics.Table{
		Snapshot: func() any { c, l := d.captureStats(); return [2]uint64{c, l} },
		Counters: []metrics.Counter{
			{Name: "ovlsw_capture_frames_total", Help: "Frames copied to ovlsw capture sessions.", Get: func(s any) uint64 { return s.([2]uint64)[0] }},
			{Name: "ovlsw_capture_lost_total", Help: "Frames capture sessions lost: their reader fell behind.", Get: func(s any) uint64 { return s.([2]uint64)[1] }},
		},
	})
	c := metrics.New(src, metrics.BuildInfo{Version: d.cfg.Version})
	srv, err := metrics.Listen(d.cfg.Metrics, metrics.Registry(c), d.log)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return configErrorf("metrics address %s is already in use: choose another port", d.cfg.Metrics)
		}
		return configErrorf("%v", err)
	}
	d.obs.metrics = srv
	d.log.Info("metrics served", "addr", srv.Addr())
	return nil
}

// close stops what the observer started and ends the streams. It is
// idempotent.
func (o *observer) close() error {
	if o.cancel != nil {
		o.cancel()
	}
	if o.watch != nil {
		o.watch.close()
		o.hub.Close()
		o.watch = nil
	}
	if o.metrics == nil {
		return nil
	}
	err := o.metrics.Close()
	o.metrics = nil
	return err
}
