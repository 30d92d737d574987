package main

// This file holds the report: the faults injected and what each cost in
// traffic, the re-attaches, the never-killed node's resources, the flows,
// and the checks; printed as a table for people or as JSON for machines.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// report is the result of one run. Its methods are safe for concurrent
// use while the run goes on; the exported fields are read once it is over.
type report struct {
	Passed       bool      `json:"passed"`
	Quick        bool      `json:"quick"`
	OvlswVersion string    `json:"ovlsw_version"`
	Started      time.Time `json:"started"`
	DurationS    float64   `json:"duration_s"`   // the whole run, setup to teardown
	LoopS        float64   `json:"fault_loop_s"` // the fault loop alone
	Cycles       int       `json:"cycles"`       // complete rounds of every fault kind
	Topology     string    `json:"topology"`

	Faults      map[string]int `json:"faults"` // by kind
	FaultsTotal int            `json:"faults_total"`
	// Reattach counts containers attached again after their node was
	// SIGKILLed (or stopped with SIGUSR2) and restarted, because the new
	// process did not take them back; ReattachAfterTerm after a SIGTERM,
	// which is expected (ovlsw removes its ports on SIGTERM).
	Reattach          int  `json:"reattach"`
	ReattachAfterTerm int  `json:"reattach_after_sigterm"`
	AllowReattach     bool `json:"allow_reattach"`
	// UpgradeRestart says whether the SIGUSR2 fault ran (the binary has it).
	UpgradeRestart bool `json:"sigusr2_restart"`

	// LongestGap is the longest time a TCP flow went without a round trip
	// (including up to stallTimeout of detection); LongestPathGap the same
	// for the UDP probes, close to the data path's outage.
	LongestGap     gapFigure           `json:"longest_gap"`
	LongestPathGap gapFigure           `json:"longest_path_gap"`
	GapsByKind     map[string]kindGaps `json:"gaps_by_kind"`
	// BetweenFaults are the gaps of the steady traffic between two faults
	// (each pause is one count; RecoverS is unused).
	BetweenFaults kindGaps      `json:"between_faults"`
	Resources     resources     `json:"resources"`
	Nodes         []nodeReport  `json:"nodes"`
	Flows         []flowReport  `json:"flows"`
	FaultLog      []faultRecord `json:"fault_log"`
	Leaks         []string      `json:"leaks,omitempty"`
	Notes         []string      `json:"notes,omitempty"`
	Checks        []checkResult `json:"checks"`

	mu      sync.Mutex   // guards every field while the run goes on
	start   time.Time    // when the run started
	between [2][]float64 // the longest TCP and UDP gap of each pause
}

// gapFigure is the longest time a flow went without a round trip.
type gapFigure struct {
	Seconds float64 `json:"s"`
	Flow    string  `json:"flow"`
}

// kindGaps summarises the gaps of one fault kind.
type kindGaps struct {
	Count       int     `json:"count"`
	MaxS        float64 `json:"max_s"` // TCP
	MedianS     float64 `json:"median_s"`
	PathMaxS    float64 `json:"path_max_s"` // UDP probes
	PathMedianS float64 `json:"path_median_s"`
	RecoverS    float64 `json:"max_recover_s"` // injection until every flow resumed, worst
}

// resources are the never-killed node's figures.
type resources struct {
	Node       string     `json:"node"`
	Start      procSample `json:"start"`    // once traffic runs
	Baseline   procSample `json:"baseline"` // after the warm-up cycle
	End        procSample `json:"end"`
	PeakRSSKiB int64      `json:"peak_rss_kib"`
	// RSSSlopeMiBh is the least-squares slope of RSS over the later half
	// of the samples taken after warm-up, in MiB an hour: near zero once
	// memory has levelled off.
	RSSSlopeMiBh float64      `json:"rss_slope_mib_per_h"`
	RSSSlopeOK   bool         `json:"rss_slope_computed"` // false: less than 2*minSlopeSpan after warm-up
	Samples      []procSample `json:"samples"`            // after every fault
}

// nodeReport is one node at the end of the run.
type nodeReport struct {
	Name     string     `json:"name"`
	Restarts int        `json:"restarts"`
	End      procSample `json:"end"`
}

// flowReport is one flow over the run.
type flowReport struct {
	Name        string  `json:"name"`
	Proto       string  `json:"proto"` // tcp, or udp for a probe
	RoundTrips  uint64  `json:"round_trips"`
	Bytes       uint64  `json:"bytes"`
	Connections uint64  `json:"connections"`
	FailedDials uint64  `json:"failed_dials"`
	Corrupt     uint64  `json:"corrupt"`
	LongestGapS float64 `json:"longest_gap_s"`
}

// faultRecord is one fault and what it cost.
type faultRecord struct {
	Kind     string  `json:"kind"`
	Target   string  `json:"target"`
	AtS      float64 `json:"at_s"`
	RecoverS float64 `json:"recover_s"` // injection until every flow had a round trip after the repair
	// Gap is the longest interval without a round trip on any TCP flow,
	// PathGap on any UDP probe, from the last round trip before the
	// injection until every flow resumed.
	Gap        gapFigure `json:"gap"`
	PathGap    gapFigure `json:"path_gap"`
	BindingsS  float64   `json:"bindings_s"` // then, until every FDB and endpoint list matched
	Reattached int       `json:"reattached,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// checkResult is one pass/fail check.
type checkResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func newReport(opts options) *report {
	now := time.Now()
	return &report{
		Quick: opts.Quick, Started: now.UTC().Round(time.Second), start: now, AllowReattach: opts.AllowReattach,
		Topology: fmt.Sprintf("%d nodes, %d long-lived containers each, %d cross-node TCP flows and as many UDP probes",
			opts.Nodes, opts.PerNode, opts.Nodes*opts.PerNode),
		Resources: resources{Node: "n1"},
	}
}

// check records a check; detail explains a failure and is dropped on
// success.
func (r *report) check(name string, ok bool, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		detail = ""
	}
	r.Checks = append(r.Checks, checkResult{Name: name, OK: ok, Detail: detail})
}

func (r *report) leak(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Leaks = append(r.Leaks, what)
}

func (r *report) note(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, what)
}

func (r *report) addFault(f faultRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.FaultLog = append(r.FaultLog, f)
}

// addBetween records the longest gaps of the pause after a fault.
func (r *report) addBetween(tcp, udp gapFigure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.between[0] = append(r.between[0], tcp.Seconds)
	r.between[1] = append(r.between[1], udp.Seconds)
}

// countReattach counts one container attached again after a restart.
func (r *report) countReattach(afterKill bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if afterKill {
		r.Reattach++
	} else {
		r.ReattachAfterTerm++
	}
}

// finish computes the totals once the run is over.
func (r *report) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.DurationS = seconds(time.Since(r.start))
	r.Faults = map[string]int{}
	r.GapsByKind = map[string]kindGaps{}
	gaps, pathGaps := map[string][]float64{}, map[string][]float64{}
	for _, f := range r.FaultLog {
		r.Faults[f.Kind]++
		r.FaultsTotal++
		gaps[f.Kind] = append(gaps[f.Kind], f.Gap.Seconds)
		pathGaps[f.Kind] = append(pathGaps[f.Kind], f.PathGap.Seconds)
		k := r.GapsByKind[f.Kind]
		k.Count++
		k.MaxS = max(k.MaxS, f.Gap.Seconds)
		k.PathMaxS = max(k.PathMaxS, f.PathGap.Seconds)
		k.RecoverS = max(k.RecoverS, f.RecoverS)
		r.GapsByKind[f.Kind] = k
	}
	for kind := range gaps {
		k := r.GapsByKind[kind]
		k.MedianS, k.PathMedianS = testbed.Median(gaps[kind]), testbed.Median(pathGaps[kind])
		r.GapsByKind[kind] = k
	}
	for _, f := range r.Flows {
		worst := &r.LongestGap
		if f.Proto == "udp" {
			worst = &r.LongestPathGap
		}
		if f.LongestGapS > worst.Seconds {
			*worst = gapFigure{Seconds: f.LongestGapS, Flow: f.Name}
		}
	}
	if b := r.between; len(b[0]) > 0 {
		r.BetweenFaults = kindGaps{Count: len(b[0]), MaxS: slices.Max(b[0]), MedianS: testbed.Median(b[0]),
			PathMaxS: slices.Max(b[1]), PathMedianS: testbed.Median(b[1])}
	}
	res := &r.Resources
	if n := len(res.Samples); n > 0 && res.Baseline.PID != 0 {
		if span := res.Samples[n-1].AtS - res.Baseline.AtS; span >= 2*minSlopeSpan.Seconds() {
			res.RSSSlopeMiBh = rssSlope(res.Samples, res.Baseline.AtS+span/2)
			res.RSSSlopeOK = true
		}
	}
	r.Passed = true
	for _, c := range r.Checks {
		r.Passed = r.Passed && c.OK
	}
}

// failed returns an error naming the failed checks, or nil.
func (r *report) failed() error {
	var names []string
	for _, c := range r.Checks {
		if !c.OK {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%d check(s) failed: %s", len(names), strings.Join(names, "; "))
}

// minSlopeSpan is the least time over which an RSS trend is fitted. The
// fit leaves out the first half of the time after warm-up, in which the
// heap is still growing towards its size in steady state (a 30-minute run
// levelled off after about five minutes), so the run needs twice this
// after warm-up: a default ten-minute run has it, a --quick one does not.
const minSlopeSpan = 4 * time.Minute

// rssSlope fits a line to the readable RSS samples taken at or after from
// (seconds since the start) and returns its slope in MiB an hour; 0 with
// fewer than three samples.
func rssSlope(samples []procSample, from float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range samples {
		if p.AtS < from || p.PID == 0 {
			continue
		}
		x, y := p.AtS/3600, mib(p.RSSKiB)
		n++
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if n < 3 || n*sxx == sx*sx {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func (r *report) writeJSON(w io.Writer) error { return testbed.WriteJSON(w, r) }

// writeTable prints the report for people.
func (r *report) writeTable(w io.Writer) error {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	mode := "full"
	if r.Quick {
		mode = "--quick"
	}
	fmt.Fprintf(w, "ovlsw soak (%s): %s\n\n", mode, verdict)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ovlsw\t%s\n", r.OvlswVersion)
	fmt.Fprintf(tw, "duration\t%v in all, fault loop %v, %d complete cycles\n",
		time.Duration(r.DurationS*float64(time.Second)).Round(time.Second),
		time.Duration(r.LoopS*float64(time.Second)).Round(time.Second), r.Cycles)
	fmt.Fprintf(tw, "topology\t%s\n", r.Topology)
	var kinds []string
	for _, k := range faultKinds {
		if r.Faults[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Faults[k]))
		}
	}
	fmt.Fprintf(tw, "faults injected\t%d: %s\n", r.FaultsTotal, strings.Join(kinds, ", "))
	allowed := ""
	if r.AllowReattach && r.Reattach > 0 {
		allowed = " (allowed by --allow-reattach)"
	}
	fmt.Fprintf(tw, "reattach\t%d after a SIGKILL or SIGUSR2 restart%s; %d after SIGTERM (expected)\n", r.Reattach, allowed, r.ReattachAfterTerm)
	fmt.Fprintf(tw, "longest traffic gap\tTCP %.2fs (%s, with up to %v of stall detection); UDP probe %.2fs (%s)\n",
		r.LongestGap.Seconds, r.LongestGap.Flow, stallTimeout, r.LongestPathGap.Seconds, r.LongestPathGap.Flow)
	res := r.Resources
	fmt.Fprintf(tw, "RSS of %s\t%.1f MiB at start, %.1f MiB after warm-up, %.1f MiB at the end, peak %.1f MiB\n", res.Node,
		mib(res.Start.RSSKiB), mib(res.Baseline.RSSKiB), mib(res.End.RSSKiB), mib(res.PeakRSSKiB))
	if res.RSSSlopeOK {
		fmt.Fprintf(tw, "RSS trend\t%+.1f MiB/h (least-squares fit to the samples after each fault, later half of the run after warm-up)\n", res.RSSSlopeMiBh)
	} else {
		fmt.Fprintf(tw, "RSS trend\tnot computed: needs %v after warm-up\n", 2*minSlopeSpan)
	}
	fmt.Fprintf(tw, "fds of %s\t%d at start, %d after warm-up, %d at the end\n", res.Node, res.Start.FDs, res.Baseline.FDs, res.End.FDs)
	fmt.Fprintf(tw, "threads of %s\t%d at start, %d after warm-up, %d at the end\n", res.Node, res.Start.Threads, res.Baseline.Threads, res.End.Threads)
	fmt.Fprintf(tw, "goroutines of %s\t%d at start, %d after warm-up, %d at the end\n", res.Node, res.Start.Goroutines, res.Baseline.Goroutines, res.End.Goroutines)
	tw.Flush()

	fmt.Fprintln(w, "\ngaps by fault kind, s (longest interval without a round trip on any flow, from injection until all flows resumed)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tcount\tTCP max\tTCP median\tUDP max\tUDP median\tmax recovery\t")
	for _, k := range faultKinds {
		if g, ok := r.GapsByKind[k]; ok {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, g.Count, g.MaxS, g.MedianS, g.PathMaxS, g.PathMedianS, g.RecoverS)
		}
	}
	if g := r.BetweenFaults; g.Count > 0 {
		fmt.Fprintf(tw, "between faults (steady)\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t-\t\n", g.Count, g.MaxS, g.MedianS, g.PathMaxS, g.PathMedianS)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nnodes at the end")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\trestarts\tpid\tRSS MiB\tfds\tthreads\t")
	for _, n := range r.Nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%d\t%d\t\n", n.Name, n.Restarts, n.End.PID, mib(n.End.RSSKiB), n.End.FDs, n.End.Threads)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nflows")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flow\tproto\tround trips\tMB echoed\tconnections\tfailed dials\tlongest gap s\t")
	for _, f := range r.Flows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%d\t%d\t%.2f\t\n", f.Name, f.Proto, f.RoundTrips, float64(f.Bytes)/1e6, f.Connections, f.FailedDials, f.LongestGapS)
	}
	tw.Flush()

	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	fmt.Fprintln(w, "\nchecks")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s\n", mark, c.Name)
		if c.Detail != "" {
			for line := range strings.Lines(c.Detail) {
				fmt.Fprintf(w, "       %s", strings.TrimRight(line, "\n")+"\n")
			}
		}
	}
	return nil
}
