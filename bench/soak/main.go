// Command soak is the soak test behind `make soak`: three `ovlsw up` nodes
// in network namespaces joined by gossip, containers attached on each, TCP
// flows and UDP probes running between containers on different nodes the
// whole time, and a loop of faults: a node SIGKILLed and restarted, a node
// SIGTERMed and restarted, a node stopped for an upgrade (SIGUSR2, where
// ovlsw has it) and restarted, a container detached and re-attached, fresh
// containers attached and removed. At the end it checks that nothing crashed, that the
// never-restarted node's file descriptors, threads and RSS stayed within a
// bound after warm-up, that every node's FDB equals the live endpoints,
// that no TAP or namespace leaked, and that traffic resumed after every
// fault; it reports the faults, the traffic gaps and the resource figures,
// and exits non-zero if any check failed.
//
// It needs root, /dev/net/tun, ip, bridge, ethtool and ping, and removes
// every namespace and process it made, also on Ctrl-C.
//
// This file holds the command line and the outline of a run. cluster.go
// builds the nodes and containers, traffic.go the echo servers and TCP
// flows, probe.go the UDP probes, faults.go the fault loop, checks.go the
// checks and resource sampling, report.go the report.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// options is the parsed command line.
type options struct {
	// Duration bounds the fault loop; the run takes this plus setup and
	// teardown (well under a minute).
	Duration time.Duration
	// Cycles, when not 0, stops the loop after that many rounds of every
	// fault kind, even if Duration has not passed.
	Cycles int
	// Pause is the steady traffic between two faults.
	Pause time.Duration
	// Quick marks a --quick run (for the report).
	Quick bool
	// Ovlsw is the path to the ovlsw binary.
	Ovlsw string
	// JSON prints the report as JSON instead of a table.
	JSON bool
	// AllowReattach lets the run pass although a SIGKILLed node's
	// containers had to be attached again because the restarted daemon did
	// not take them back.
	AllowReattach bool
	// Nodes is the cluster size and PerNode the long-lived containers on
	// each node.
	Nodes, PerNode int
}

// defaultOptions is a full run: ten minutes of faults with five seconds of
// steady traffic between them, about 25 fault cycles.
func defaultOptions() options {
	return options{
		Duration: 10 * time.Minute,
		Pause:    5 * time.Second,
		Ovlsw:    "bin/ovlsw",
		Nodes:    3,
		PerNode:  2,
	}
}

// quicken turns o into a --quick run: three rounds of every fault (the
// first is the warm-up) with two seconds of traffic between faults, about
// a minute in all; Duration only caps it.
func (o *options) quicken() {
	o.Quick = true
	o.Cycles = 3
	o.Pause = 2 * time.Second
	o.Duration = 90 * time.Second
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	testbed.Main("soak", err, func() error { return checkPrereqs(opts) }, func(ctx context.Context) (func(io.Writer) error, error) {
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
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	quick := fs.Bool("quick", false, "three rounds of every fault, about a minute in all (CI)")
	duration := fs.Duration("duration", opts.Duration, "how long the fault loop runs")
	pause := fs.Duration("pause", opts.Pause, "steady traffic between two faults")
	fs.StringVar(&opts.Ovlsw, "ovlsw", opts.Ovlsw, "path to the ovlsw binary (make build)")
	fs.BoolVar(&opts.JSON, "json", false, "print the report as JSON instead of a table")
	fs.BoolVar(&opts.AllowReattach, "allow-reattach", false,
		"pass even if a SIGKILLed node's containers had to be attached again (the daemon did not take them back on restart)")
	fs.Usage = func() {
		fmt.Fprintln(usageOut, "usage: soak [flags]  (run as root; see docs/benchmarks.md, section Soak)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *quick {
		opts.quicken()
	}
	// Explicit --duration and --pause win over --quick.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "duration":
			opts.Duration = *duration
		case "pause":
			opts.Pause = *pause
		}
	})
	switch {
	case opts.Duration < 10*time.Second:
		return opts, fmt.Errorf("--duration %v: want at least 10s", opts.Duration)
	case opts.Pause < 0:
		return opts, fmt.Errorf("--pause %v: want 0 or more", opts.Pause)
	}
	return opts, nil
}

// checkPrereqs says what is missing before anything is created.
func checkPrereqs(opts options) error {
	if err := testbed.CheckHost("sudo make soak"); err != nil {
		return err
	}
	return testbed.CheckOvlswBinary(opts.Ovlsw)
}

// run builds the cluster, starts the traffic, runs the fault loop, checks
// and tears everything down. progress gets a line per step. It returns the
// report (nil only if ctx was cancelled or the cluster could not be built)
// and an error naming the failed checks. Every namespace and process it
// creates is gone when it returns, also when ctx is cancelled.
func run(ctx context.Context, opts options, progress io.Writer) (*report, error) {
	bin, err := filepath.Abs(opts.Ovlsw)
	if err != nil {
		return nil, err
	}
	opts.Ovlsw = bin
	bed, err := testbed.NewStandalone(namePrefix)
	if err != nil {
		return nil, err
	}
	s := &soak{opts: opts, bed: bed, log: logger{w: progress, start: time.Now()}, rep: newReport(opts), knownDiff: map[string]bool{}}
	s.rep.OvlswVersion = ovlswVersion(ctx, bin)
	s.upgrade = hasUpgradeStop(ctx, bin)
	s.rep.UpgradeRestart = s.upgrade
	if !s.upgrade {
		s.rep.note("this ovlsw has no upgrade stop (no SIGUSR2 in `ovlsw up --help`): the " + kindUpgrade + " fault is left out")
	}
	defer bed.Close() // idempotent: the normal path closes it below and checks the result
	// Ctrl-C: close the Bed at once, from here, while the run unwinds.
	stopClose := context.AfterFunc(ctx, func() { _ = bed.Close() })
	defer stopClose()

	defer func() {
		if s.sockDir != "" {
			os.RemoveAll(s.sockDir)
		}
	}()
	if err := s.build(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("build the cluster: %w", err)
	}
	s.startTraffic(ctx)
	if err := s.waitAllFlowing(ctx, time.Now(), resumeTimeout); err != nil {
		s.stopTraffic()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("traffic did not start: %w", err)
	}
	s.rep.Resources.Start = s.sampleSteady()
	s.log.printf("cluster up: %d nodes, %d containers, %d flows; fault loop for up to %v", len(s.nodes), len(s.containers), len(s.flows), opts.Duration)

	s.faultLoop(ctx)
	if ctx.Err() != nil {
		s.stopTraffic()
		return nil, ctx.Err()
	}
	s.finalChecks(ctx)
	s.stopTraffic()
	s.rep.Flows = s.flowReports()

	s.teardownChecks(ctx)
	closeErr := bed.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s.rep.check("bed closed cleanly", closeErr == nil, errString(closeErr))
	s.namespaceLeakCheck()
	s.rep.finish()
	return s.rep, s.rep.failed()
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

// hasUpgradeStop reports whether `ovlsw up --help` offers SIGUSR2, the stop
// that keeps attached containers for the next process.
func hasUpgradeStop(ctx context.Context, bin string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "up", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "SIGUSR2")
}

// namePrefix starts every namespace name: soak<pid>-<counter>-<name>.
const namePrefix = "soak"

// logger writes progress lines with the time since the start.
type logger struct {
	w     io.Writer
	start time.Time
}

func (l logger) printf(format string, args ...any) {
	if l.w != nil {
		fmt.Fprintf(l.w, "soak %6.1fs: %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
