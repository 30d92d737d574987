package daemon

// This file holds the observer: the owner of what the node shows about
// itself beyond the control API's snapshots: the Prometheus /metrics
// server (--metrics). It reads the other owners through their public
// methods and keeps no node state of its own.

import (
	"net"
	"strconv"

	"github.com/ovlsw/ovlsw/cmd/daemon/metrics"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// observer owns the metrics server. Its fields are set once in start.
type observer struct {
	metrics *metrics.Server // nil without --metrics
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

// startObserver starts what cfg asks for: the metrics server on
// cfg.Metrics.
func (d *Daemon) startObserver() error {
	if d.cfg.Metrics == "" {
		return nil
	}
	c := metrics.New(d.metricsSources(), metrics.BuildInfo{Version: d.cfg.Version})
	srv, err := metrics.Listen(d.cfg.Metrics, metrics.Registry(c), d.log)
	if err != nil {
		return err
	}
	d.obs.metrics = srv
	d.log.Info("metrics served", "addr", srv.Addr())
	return nil
}

// close stops what the observer started. It is idempotent.
func (o *observer) close() error {
	if o.metrics == nil {
		return nil
	}
	err := o.metrics.Close()
	o.metrics = nil
	return err
}
