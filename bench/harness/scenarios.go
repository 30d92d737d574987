package main

// This file holds the scenarios: base (every metric over one pair), scale
// (aggregate TCP over 1, 2 and 4 pairs at once) and fdb (TCP with an empty
// forwarding table and one of 100,000 entries). Each builds its topologies
// one at a time and records samples in the report; a measurement that fails
// is recorded as a failure and the run goes on, so one broken case does not
// hide the others.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// withTopo builds a topology, runs fn on it and tears it down.
func (h *harness) withTopo(ctx context.Context, scenario, build string, npairs int, w wiring, fn func(context.Context, *topo)) error {
	t, err := h.newTopo(ctx, build, npairs, w)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.fail(ctx, build, "build the topology", err)
		return nil
	}
	desc := fmt.Sprintf("%d pair(s)", npairs)
	if build == buildOvlsw || build == buildOvlswEncrypted {
		desc += ", " + t.wiring.String()
	}
	h.log.printf("%s: topology up (%s)", build, desc)
	var obs *observer
	if h.opts.Observe && build == buildOvlsw {
		obs = h.observe(ctx, t) // observe.go
	}
	a, errA := machineCPU()
	fn(ctx, t)
	if obs != nil {
		h.log.printf("%s: observed: %s", build, obs.stop())
	}
	if b, errB := machineCPU(); errA == nil && errB == nil && ctx.Err() == nil {
		h.otherWork(fmt.Sprintf("while measuring %s on %s", scenario, build), otherCores(a, b))
	}
	if err := t.close(); err != nil && ctx.Err() == nil {
		h.fail(ctx, build, "tear down", err)
	}
	return ctx.Err()
}

// fail records a failed measurement, unless the run was interrupted.
func (h *harness) fail(ctx context.Context, build, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	err = fmt.Errorf("%s: %s: %w", build, what, err)
	h.log.printf("FAILED %v", err)
	h.failures = append(h.failures, err)
}

// record adds a sample and logs it.
func (h *harness) record(id, build string, v float64, run int) {
	d := h.rep.add(id, build, v)
	h.log.printf("%-8s %-42s %12s %s  (run %d/%d)", build, d.metric, formatValue(v, d.unit), d.unit, run+1, h.opts.Repeat)
}

// base measures every metric over one pair of each build.
func (h *harness) base(ctx context.Context) error {
	for _, b := range h.opts.Builds {
		if err := h.withTopo(ctx, scenarioBase, b, 1, h.wiringFor(false), h.measureBase); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) measureBase(ctx context.Context, t *topo) {
	b, p := t.build, t.pairs[0]
	for run := range h.opts.Repeat {
		for _, streams := range []int{1, 4} {
			r, err := h.throughput(ctx, t, t.pairs[:1], streams)
			if err != nil {
				h.fail(ctx, b, fmt.Sprintf("TCP %d stream(s)", streams), err)
				continue
			}
			h.record("tcp"+strconv.Itoa(streams), b, r.bps/1e9, run)
			h.record("cpu_gb_tcp"+strconv.Itoa(streams), b, r.cpuPerGB(), run)
			if (b == buildOvlsw || b == buildOvlswEncrypted) && streams == 1 {
				h.record("ovlsw_cpu_tcp1", b, r.ovlswCores(), run)
			}
		}
		if pps, loss, err := h.udpRate(ctx, p); err != nil {
			h.fail(ctx, b, "UDP 64-byte", err)
		} else {
			h.record("udp_pps", b, pps/1e3, run)
			h.record("udp_loss", b, loss, run)
		}
		if p50, p99, err := h.pingLatency(ctx, p, h.opts.Pings); err != nil {
			h.fail(ctx, b, "ping", err)
		} else {
			h.record("ping_p50", b, float64(p50.Nanoseconds())/1e3, run)
			h.record("ping_p99", b, float64(p99.Nanoseconds())/1e3, run)
		}
		if rr, err := h.requestResponse(ctx, p); err != nil {
			h.fail(ctx, b, "TCP request/response", err)
		} else {
			h.record("tcp_rr", b, rr, run)
		}
	}
	if b == buildOvlsw {
		if rss, err := t.peakRSS(); err != nil {
			h.fail(ctx, b, "peak RSS", err)
		} else {
			h.record("rss", b, rss/(1<<20), 0)
		}
	}
}

// scale measures aggregate TCP throughput over 1, 2 and 4 pairs at once,
// one stream per pair, on a topology built once with the most pairs.
func (h *harness) scale(ctx context.Context) error {
	most := slices.Max(h.opts.ScalePairs)
	for _, b := range h.opts.Builds {
		err := h.withTopo(ctx, scenarioScale, b, most, h.wiringFor(true), func(ctx context.Context, t *topo) {
			for run := range h.opts.Repeat {
				for _, n := range h.opts.ScalePairs {
					r, err := h.throughput(ctx, t, t.pairs[:n], 1)
					if err != nil {
						h.fail(ctx, b, fmt.Sprintf("TCP over %d pairs", n), err)
						continue
					}
					h.record(scaleID(n), b, r.bps/1e9, run)
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func scaleID(n int) string { return "scale_" + strconv.Itoa(n) }

// fdb measures TCP over one pair with the forwarding tables as the
// topology leaves them (a handful of entries), then fills them with
// FDBEntries learned MACs and measures again. The underlay has no
// forwarding table and is skipped.
func (h *harness) fdb(ctx context.Context) error {
	for _, b := range h.opts.Builds {
		if b == buildUnderlay || b == buildWireGuard {
			continue // no forwarding table
		}
		err := h.withTopo(ctx, scenarioFDB, b, 1, h.wiringFor(false), func(ctx context.Context, t *topo) {
			for run := range h.opts.Repeat {
				if r, err := h.throughput(ctx, t, t.pairs[:1], 1); err != nil {
					h.fail(ctx, b, "TCP, empty FDB", err)
				} else {
					h.record("fdb_empty", b, r.bps/1e9, run)
				}
			}
			n, err := h.fillFDB(ctx, t, h.opts.FDBEntries)
			if err != nil {
				h.fail(ctx, b, "fill the FDB", err)
				return
			}
			h.record("fdb_entries", b, float64(n), 0)
			for run := range h.opts.Repeat {
				if r, err := h.throughput(ctx, t, t.pairs[:1], 1); err != nil {
					h.fail(ctx, b, "TCP, full FDB", err)
				} else {
					h.record("fdb_full", b, r.bps/1e9, run)
				}
			}
			if b == buildOvlsw {
				h.record("fdb_rss", b, h.fillRSS/(1<<20), 0)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// failed returns every recorded failure as one error, or nil.
func (h *harness) failed() error { return errors.Join(h.failures...) }
