// Command harness is the benchmark behind `make bench`. It builds the same
// network-namespace topology three ways and measures each in one run:
//
//   - underlay: two host namespaces joined by a veth pair, host to host
//     (the ceiling);
//   - kernel: on each host a Linux vxlan device on a bridge with container
//     namespaces behind veths (Docker's overlay wiring), container to
//     container (the baseline);
//   - ovlsw: an `ovlsw up` node on each host with containers attached by
//     `ovlsw attach`, container to container.
//
// It needs root, iperf3, ip, bridge, ethtool and ping, installs nothing, and
// removes every namespace and process it made, also on Ctrl-C.
//
// This file holds the command line, the prerequisites and the outline of a
// run. topology.go builds the three topologies, measure.go takes the
// measurements, fdbfill.go fills forwarding tables, report.go collects
// samples into the table and the JSON document.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// Builds and scenarios that --cases selects from.
const (
	buildUnderlay = "underlay"
	buildKernel   = "kernel"
	buildOvlsw    = "ovlsw"
	// buildOvlswEncrypted is ovlsw with the network encrypted (issue 16):
	// both nodes --encrypted with one --network-key-file, as static peers
	// (the harness's nodes found a cluster each, so they share no gossip).
	buildOvlswEncrypted = "ovlsw-encrypted"

	scenarioBase   = "base"
	scenarioScale  = "scale"
	scenarioFDB    = "fdb"
	scenarioGossip = "gossip"
)

var (
	allBuilds = []string{buildUnderlay, buildKernel, buildOvlsw}
	// optionalBuilds run only when --cases names them; they appear in the
	// report after the others.
	optionalBuilds = []string{buildOvlswEncrypted, buildWireGuard}
	allScenarios   = []string{scenarioBase, scenarioScale, scenarioFDB, scenarioGossip, scenarioRoute}
)

// options is the parsed command line.
type options struct {
	Quick    bool          // each case once and briefly
	Repeat   int           // runs of each measurement; the median is reported
	Duration time.Duration // length of each iperf3 run and request/response loop
	Pings    int           // echo requests per latency measurement
	JSON     bool          // print JSON instead of the table
	Builds   []string      // selected builds, in allBuilds order
	Scenes   []string      // selected scenarios, in allScenarios order
	Ovlsw    string        // path to the ovlsw binary
	NoAttach bool          // use the host-TAP fallback even if `ovlsw attach` exists
	UpArgs   []string      // extra arguments for every `ovlsw up`, e.g. --offload=off
	Observe  bool          // scrape metrics and run a capture while measuring ovlsw (observe.go)

	// FDBEntries is how many distinct source MACs the fdb scenario sends.
	FDBEntries int
	// ScalePairs are the numbers of container pairs the scale scenario
	// measures at once.
	ScalePairs []int
	// GossipNodes is the cluster size of the gossip scenario.
	GossipNodes int
}

// defaultOptions is a full run: three repeats of 3 s measurements keep the
// whole run under five minutes on two cores while every iperf3 run still
// spans a few hundred TCP windows.
func defaultOptions() options {
	return options{
		Repeat:     3,
		Duration:   3 * time.Second,
		Pings:      200, // at 5 ms apart: 1 s, and p99 is the 2nd-worst sample
		Builds:     allBuilds,
		Scenes:     allScenarios,
		Ovlsw:      "bin/ovlsw",
		FDBEntries: 100_000,
		ScalePairs: []int{1, 2, 4},

		GossipNodes: gossipNodes,
	}
}

// quicken turns o into a --quick run: one repeat of 1 s measurements, and
// a smaller gossip cluster.
func (o *options) quicken() {
	o.Quick = true
	o.Repeat = 1
	o.Duration = time.Second
	o.Pings = 50
	o.GossipNodes = gossipQuickNodes
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	testbed.Main("harness", err, func() error { return checkPrereqs(opts) }, func(ctx context.Context) (func(io.Writer) error, error) {
		rep, err := run(ctx, opts, os.Stderr)
		switch {
		case rep == nil:
			return nil, err
		case opts.JSON:
			return rep.writeJSON, err
		}
		return rep.writeTable, err
	})
}

func parseFlags(args []string, usageOut io.Writer) (options, error) {
	opts := defaultOptions()
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	quick := fs.Bool("quick", false, "run each case once with 1 s measurements (well under a minute)")
	repeat := fs.Int("repeat", opts.Repeat, "runs of each measurement; medians are reported")
	duration := fs.Duration("duration", opts.Duration, "length of each throughput and request/response measurement")
	fs.BoolVar(&opts.JSON, "json", false, "print the results as JSON instead of a table")
	cases := fs.String("cases", "", "comma list of builds ("+strings.Join(append(slices.Clone(allBuilds), optionalBuilds...), ",")+
		") and scenarios ("+strings.Join(allScenarios, ",")+"); naming no build means all builds, naming no scenario all scenarios")
	fs.StringVar(&opts.Ovlsw, "ovlsw", opts.Ovlsw, "path to the ovlsw binary (make build)")
	upArgs := fs.String("up-args", "", "extra arguments, space-separated, for every `ovlsw up` (e.g. --offload=off to measure without the fast path)")
	fs.BoolVar(&opts.Observe, "observe", false, "while measuring ovlsw, scrape each node's /metrics every second and run a capture on its host TAP port (to compare with a run without)")
	fs.BoolVar(&opts.NoAttach, "no-attach", false, "attach no containers to ovlsw: put the address on its host TAP port (the fallback used when the attach subcommand is missing)")
	fs.Usage = func() {
		fmt.Fprintln(usageOut, "usage: harness [flags]  (run as root; see docs/benchmarks.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	opts.UpArgs = strings.Fields(*upArgs)
	if *quick {
		opts.quicken()
	}
	// Explicit --repeat and --duration win over --quick.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "repeat":
			opts.Repeat = *repeat
		case "duration":
			opts.Duration = *duration
		}
	})
	switch {
	case opts.Repeat < 1:
		return opts, fmt.Errorf("--repeat %d: want at least 1", opts.Repeat)
	case opts.Duration < 500*time.Millisecond:
		return opts, fmt.Errorf("--duration %v: want at least 500ms", opts.Duration)
	}
	if *cases != "" {
		var err error
		if opts.Builds, opts.Scenes, err = parseCases(*cases); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// usesOvlsw reports whether builds run the ovlsw binary.
func usesOvlsw(builds []string) bool {
	return slices.Contains(builds, buildOvlsw) || slices.Contains(builds, buildOvlswEncrypted)
}

// parseCases splits a --cases list into builds and scenarios.
func parseCases(s string) (builds, scenes []string, err error) {
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		switch {
		case c == "":
		case slices.Contains(allBuilds, c) || slices.Contains(optionalBuilds, c):
			builds = append(builds, c)
		case slices.Contains(allScenarios, c):
			scenes = append(scenes, c)
		default:
			return nil, nil, fmt.Errorf("--cases: unknown case %q: want builds %s and scenarios %s",
				c, strings.Join(append(slices.Clone(allBuilds), optionalBuilds...), ","), strings.Join(allScenarios, ","))
		}
	}
	inOrder := func(sel, all []string) []string {
		if len(sel) == 0 {
			return all
		}
		return slices.DeleteFunc(slices.Clone(all), func(x string) bool { return !slices.Contains(sel, x) })
	}
	if len(builds) == 0 {
		return allBuilds, inOrder(scenes, allScenarios), nil
	}
	return inOrder(builds, append(slices.Clone(allBuilds), optionalBuilds...)), inOrder(scenes, allScenarios), nil
}

// checkPrereqs says what is missing before anything is created.
func checkPrereqs(opts options) error {
	if err := testbed.CheckHost("sudo make bench"); err != nil {
		return err
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return errors.New("iperf3 is not installed: install it with `apt-get install iperf3` (`make bench` does that for you)")
	}
	if usesOvlsw(opts.Builds) {
		return testbed.CheckOvlswBinary(opts.Ovlsw)
	}
	return nil
}

// run measures every selected case and returns the report. progress gets a
// line per measurement as it finishes. A measurement that fails is listed in
// the report and in the returned error, and the run goes on; the report is
// nil only when ctx is cancelled or nothing could start. Every namespace and
// process run creates is gone when it returns, also when ctx is cancelled.
func run(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	h := &harness{opts: opts, log: logger{progress}, rep: newReport(opts)}
	if usesOvlsw(opts.Builds) {
		abs, err := filepath.Abs(opts.Ovlsw)
		if err != nil {
			return nil, err
		}
		h.opts.Ovlsw = abs
		h.rep.OvlswVersion = ovlswVersion(ctx, abs)
		h.attach = probeAttach(ctx, abs)
		h.gossip = hasFlag(ctx, abs, "--join", "up")
		h.rep.UpArgs = opts.UpArgs
		if opts.NoAttach {
			h.attach = false
		}
		if h.attach {
			h.rep.Attach = "ovlsw attach: each container is a namespace with a TAP port of the daemon"
		} else {
			h.rep.Attach = "fallback: no containers; the overlay address is on each daemon's host TAP port (--address), measured host namespace to host namespace"
			h.rep.note("ovlsw: `ovlsw attach` is not available (or --no-attach), so the ovlsw build has no container namespaces: " +
				"the address is on the host TAP port and traffic runs host namespace to host namespace; " +
				"the scale scenario puts container veths on a Linux bridge with the host TAP port instead.")
		}
		dir, err := os.MkdirTemp("", "ovlsw-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		h.sockDir = dir
	}

	defer func() {
		if h.wgDir != "" {
			os.RemoveAll(h.wgDir)
		}
	}()
	h.checkIdle(ctx, "before the run")
	for _, sc := range opts.Scenes {
		var err error
		switch sc {
		case scenarioBase:
			err = h.base(ctx)
		case scenarioScale:
			err = h.scale(ctx)
		case scenarioFDB:
			err = h.fdb(ctx)
		case scenarioGossip:
			err = h.gossipScenario(ctx)
		case scenarioRoute:
			err = h.routeScenario(ctx) // route.go
		}
		if err != nil {
			return nil, err
		}
	}
	h.checkIdle(ctx, "after the run")
	h.rep.finish(rowDefs(opts), h.failures)
	return h.rep, h.failed()
}

// ovlswVersion returns `ovlsw --version`, or "unknown".
func ovlswVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// probeAttach reports whether bin has the `attach` subcommand with the
// flags the harness passes.
func probeAttach(ctx context.Context, bin string) bool {
	return hasFlag(ctx, bin, "--netns", "attach") && hasFlag(ctx, bin, "--ip", "attach")
}

// hasFlag reports whether `bin SUBCOMMAND --help` succeeds and mentions flag.
func hasFlag(ctx context.Context, bin, flag string, subcommand ...string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(subcommand, "--help")...).CombinedOutput()
	return err == nil && strings.Contains(string(out), flag)
}
