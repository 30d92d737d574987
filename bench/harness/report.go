package main

// This file holds the report: which rows exist, the samples recorded for
// each build, medians and ratios, the machine the run was on, and the two
// outputs: an aligned table for people and JSON for machines.

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// rowDef describes one row of the report.
type rowDef struct {
	id, scenario, metric, unit string
}

// onlyBuild names, by row id, the one build a row applies to; the others
// read n/a.
var onlyBuild = map[string]string{"gossip_join": buildOvlsw, "gossip_bind": buildOvlsw, "gossip_bytes": buildOvlsw,
	"route_bridged_tcp1": buildOvlsw, "route_routed_tcp1": buildOvlsw, "route_bridged_tcp4": buildOvlsw, "route_routed_tcp4": buildOvlsw}

// rowDefs returns the rows in report order.
func rowDefs(opts options) []rowDef {
	defs := []rowDef{
		{"tcp1", scenarioBase, "TCP, 1 stream", "Gbit/s"},
		{"tcp4", scenarioBase, "TCP, 4 streams", "Gbit/s"},
		{"udp_pps", scenarioBase, "UDP, 64-byte payload, delivered", "kpps"},
		{"udp_loss", scenarioBase, "UDP, 64-byte payload, lost", "%"},
		{"ping_p50", scenarioBase, "ping RTT p50", "µs"},
		{"ping_p99", scenarioBase, "ping RTT p99", "µs"},
		{"tcp_rr", scenarioBase, "TCP request/response, 1 byte each way", "trans/s"},
		{"cpu_gb_tcp1", scenarioBase, "CPU per GB moved, TCP 1 stream", "CPU-s/GB"},
		{"cpu_gb_tcp4", scenarioBase, "CPU per GB moved, TCP 4 streams", "CPU-s/GB"},
		{"ovlsw_cpu_tcp1", scenarioBase, "ovlsw processes' CPU, TCP 1 stream", "cores"},
		{"rss", scenarioBase, "ovlsw peak RSS (VmHWM, larger node)", "MiB"},
	}
	for _, n := range opts.ScalePairs {
		defs = append(defs, rowDef{scaleID(n), scenarioScale, fmt.Sprintf("TCP aggregate, %d pair(s), 1 stream each", n), "Gbit/s"})
	}
	entries := formatCount(float64(opts.FDBEntries))
	return append(append(defs,
		rowDef{"fdb_empty", scenarioFDB, "TCP 1 stream, FDB as built (a few entries)", "Gbit/s"},
		rowDef{"fdb_full", scenarioFDB, "TCP 1 stream, FDB filled with " + entries + " MACs", "Gbit/s"},
		rowDef{"fdb_entries", scenarioFDB, "FDB entries after the fill (smaller host)", "entries"},
		rowDef{"fdb_rss", scenarioFDB, "ovlsw peak RSS after the fill, before any FDB listing", "MiB"},
		rowDef{"gossip_join", scenarioGossip, gossipLabel(opts) + ": join, until every FDB holds every node's host port", "s"},
		rowDef{"gossip_bind", scenarioGossip, gossipLabel(opts) + ": one new binding (attach) reaches every node", "s"},
		rowDef{"gossip_bytes", scenarioGossip, gossipLabel(opts) + ": gossip sent per node at rest", "B/s"},
	), routeRowIDs()...)
}

// gossipLabel starts the gossip rows' metric: the cluster size, and that
// --quick made it smaller.
func gossipLabel(opts options) string {
	s := fmt.Sprintf("gossip, %d nodes", opts.GossipNodes)
	if opts.Quick && opts.GossipNodes != gossipNodes {
		s += fmt.Sprintf(" (--quick; full run %d)", gossipNodes)
	}
	return s
}

// cell is one build's samples for a row.
type cell struct {
	Median  float64   `json:"median"`
	Samples []float64 `json:"samples"`
}

// row is one line of the report.
type row struct {
	ID       string           `json:"id"`
	Scenario string           `json:"scenario"`
	Metric   string           `json:"metric"`
	Unit     string           `json:"unit"`
	Values   map[string]*cell `json:"values,omitempty"` // by build
	// Ratios are "ovlsw/kernel" and "ovlsw/underlay", of medians.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// TODO says why a row has no numbers yet.
	TODO string `json:"todo,omitempty"`
	// NotApplicable lists the builds the row does not apply to.
	NotApplicable []string `json:"not_applicable,omitempty"`

	def rowDef
}

// settings is what the run was asked to do.
type settings struct {
	Quick       bool     `json:"quick"`
	Repeat      int      `json:"repeat"`
	Duration    string   `json:"duration"`
	Pings       int      `json:"pings"`
	Builds      []string `json:"builds"`
	Scenarios   []string `json:"scenarios"`
	FDBEntries  int      `json:"fdb_entries"`
	ScalePairs  []int    `json:"scale_pairs"`
	GossipNodes int      `json:"gossip_nodes"`
}

// background is how much CPU other work on the machine used.
type background struct {
	When       string  `json:"when"`
	OtherCores float64 `json:"other_cores"`
}

// report is the result of a run.
type report struct {
	Date         time.Time    `json:"date"`
	Kernel       string       `json:"kernel"`
	CPU          string       `json:"cpu"`
	CPUs         int          `json:"cpus"`
	CPUIdle      string       `json:"cpu_idle,omitempty"` // cpuIdle
	OvlswVersion string       `json:"ovlsw_version,omitempty"`
	Attach       string       `json:"ovlsw_containers,omitempty"`
	UpArgs       []string     `json:"ovlsw_up_args,omitempty"` // --up-args`
	Settings     settings     `json:"settings"`
	Rows         []*row       `json:"rows"`
	Background   []background `json:"background"`
	Notes        []string     `json:"notes"`
	Failures     []string     `json:"failures,omitempty"`

	rows map[string]*row // by id, every defined row
}

func newReport(opts options) *report {
	r := &report{
		Date:    time.Now(),
		Kernel:  firstLine("/proc/sys/kernel/osrelease", ""),
		CPU:     cpuModel(),
		CPUs:    runtime.NumCPU(),
		CPUIdle: cpuIdle(),
		Settings: settings{
			Quick: opts.Quick, Repeat: opts.Repeat, Duration: opts.Duration.String(), Pings: opts.Pings,
			Builds: opts.Builds, Scenarios: opts.Scenes, FDBEntries: opts.FDBEntries, ScalePairs: opts.ScalePairs,
			GossipNodes: opts.GossipNodes,
		},
		rows: make(map[string]*row),
	}
	for _, d := range rowDefs(opts) {
		rw := &row{ID: d.id, Scenario: d.scenario, Metric: d.metric, Unit: d.unit, def: d}
		if only := onlyBuild[d.id]; only != "" {
			rw.NotApplicable = slices.DeleteFunc(slices.Clone(allBuilds), func(b string) bool { return b == only })
		}
		r.rows[d.id] = rw
	}
	r.note(fmt.Sprintf("medians of %d run(s); iperf3 runs last %ds (--duration rounded up to whole seconds), "+
		"the request/response loop %v; ratios are ovlsw's median over the other build's", opts.Repeat,
		iperfSeconds(opts.Duration), opts.Duration))
	r.note("underlay: host to host on the veth; kernel and ovlsw: container to container on VNI 42 over that veth (MTU 1450)")
	r.note("kernel: testbed.KernelOverlay (vxlan dstport 4789 nolearning, static all-zeros fdb, on a bridge, containers on veths) " +
		"with transmit checksum offload turned back on, as Docker leaves it")
	r.note("CPU per GB: the whole machine's non-idle time from /proc/stat (user+nice+system+irq+softirq+steal) during the iperf3 run " +
		"over the bytes delivered; it includes iperf3's own CPU, the same work in every build")
	r.note(fmt.Sprintf("ping: %d echo requests %s s apart, nearest-rank percentiles; request/response: one TCP connection, "+
		"a Go loop in the harness writing 1 byte and reading the 1-byte echo", opts.Pings, pingInterval))
	return r
}

// add records a sample for build in row id and returns the row's definition.
func (r *report) add(id, build string, v float64) rowDef {
	rw := r.rows[id]
	if rw.Values == nil {
		rw.Values = make(map[string]*cell)
	}
	c := rw.Values[build]
	if c == nil {
		c = &cell{}
		rw.Values[build] = c
	}
	c.Samples = append(c.Samples, v)
	return rw.def
}

// todo marks row id as not yet measurable.
func (r *report) todo(id, why string) { r.rows[id].TODO = why }

// note adds a line under the table, once.
func (r *report) note(s string) {
	if !slices.Contains(r.Notes, s) {
		r.Notes = append(r.Notes, s)
	}
}

// finish computes medians and ratios and keeps the rows that have
// something to show, in definition order.
func (r *report) finish(defs []rowDef, failures []error) {
	for _, d := range defs {
		rw := r.rows[d.id]
		if len(rw.Values) == 0 && rw.TODO == "" {
			continue
		}
		for _, c := range rw.Values {
			c.Median = testbed.Median(c.Samples)
		}
		if o := rw.Values[buildOvlsw]; o != nil && o.Median != 0 && rw.Unit != "%" {
			for _, b := range optionalBuilds {
				if c := rw.Values[b]; c != nil {
					if rw.Ratios == nil {
						rw.Ratios = make(map[string]float64)
					}
					rw.Ratios[b+"/"+buildOvlsw] = c.Median / o.Median
				}
			}
		}
		if o := rw.Values[buildOvlsw]; o != nil && rw.Unit != "%" { // a ratio of loss rates says nothing
			for _, other := range []string{buildKernel, buildUnderlay} {
				if c := rw.Values[other]; c != nil && c.Median != 0 {
					if rw.Ratios == nil {
						rw.Ratios = make(map[string]float64)
					}
					rw.Ratios[buildOvlsw+"/"+other] = o.Median / c.Median
				}
			}
		}
		r.Rows = append(r.Rows, rw)
	}
	for _, err := range failures {
		r.Failures = append(r.Failures, err.Error())
	}
}

// writeJSON writes the report as indented JSON.
func (r *report) writeJSON(w io.Writer) error { return testbed.WriteJSON(w, r) }

// writeTable writes the report as an aligned table with a header and notes.
func (r *report) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "ovlsw benchmark, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "kernel %s, %s (%d CPUs)", r.Kernel, r.CPU, r.CPUs)
	if r.OvlswVersion != "" {
		fmt.Fprintf(w, ", %s", r.OvlswVersion)
	}
	fmt.Fprintln(w)
	if r.CPUIdle != "" {
		fmt.Fprintf(w, "cpu idle: %s\n", r.CPUIdle)
	}
	if r.Attach != "" {
		fmt.Fprintf(w, "ovlsw containers: %s\n", r.Attach)
	}
	if len(r.UpArgs) > 0 {
		fmt.Fprintf(w, "ovlsw up with: %s\n", strings.Join(r.UpArgs, " "))
	}
	if len(r.Background) > 0 {
		worst := slices.MaxFunc(r.Background, func(a, b background) int { return cmp.Compare(a.OtherCores, b.OtherCores) })
		fmt.Fprintf(w, "other work on the machine: at most %.2f cores (%s)\n", worst.OtherCores, worst.When)
	}
	fmt.Fprintln(w)

	// Numbers align right; the metric column is padded by hand so that it
	// reads left-aligned under tabwriter.AlignRight.
	width := len("metric")
	for _, rw := range r.Rows {
		width = max(width, utf8.RuneCountInString(rw.Metric))
	}
	left := func(s string) string { return s + strings.Repeat(" ", width-utf8.RuneCountInString(s)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	builds := slices.Clone(allBuilds)
	for _, b := range optionalBuilds {
		if slices.Contains(r.Settings.Builds, b) {
			builds = append(builds, b)
		}
	}
	fmt.Fprintf(tw, "%s\tunit\t%s\tovlsw/kernel\tovlsw/underlay\t", left("metric"), strings.Join(builds, "\t"))
	for _, b := range builds[len(allBuilds):] {
		fmt.Fprintf(tw, "%s/ovlsw\t", b)
	}
	fmt.Fprintln(tw)
	scenario := ""
	for _, rw := range r.Rows {
		if rw.Scenario != scenario {
			scenario = rw.Scenario
			fmt.Fprintf(tw, "%s%s\n", left("["+scenario+"]"), strings.Repeat("\t", 3+len(builds)))
		}
		fmt.Fprintf(tw, "%s\t%s\t", left(rw.Metric), rw.Unit)
		for _, b := range builds {
			v := "-"
			switch c := rw.Values[b]; {
			case slices.Contains(rw.NotApplicable, b):
				v = "n/a"
			case rw.TODO != "":
				v = "TODO"
			case c != nil:
				v = formatValue(c.Median, rw.Unit)
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		for _, other := range []string{buildKernel, buildUnderlay} {
			v := "-"
			if x, ok := rw.Ratios[buildOvlsw+"/"+other]; ok {
				v = strconv.FormatFloat(x, 'f', 2, 64) + "x"
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		for _, b := range builds[len(allBuilds):] {
			v := "-"
			if x, ok := rw.Ratios[b+"/"+buildOvlsw]; ok {
				v = strconv.FormatFloat(x, 'f', 2, 64) + "x"
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nnotes:")
	for _, rw := range r.Rows {
		if rw.TODO != "" {
			fmt.Fprintf(w, "- %s: %s\n", rw.Metric, rw.TODO)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if len(builds) > len(allBuilds) {
		fmt.Fprintf(w, "- %s: each build's median over plain ovlsw's\n", strings.Join(builds[len(allBuilds):], "/ovlsw, ")+"/ovlsw")
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w, "\nFAILED measurements:")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
	return nil
}

// formatValue formats v with the precision its unit deserves.
func formatValue(v float64, unit string) string {
	switch unit {
	case "Gbit/s", "CPU-s/GB", "cores", "s":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case "%", "MiB":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "entries", "trans/s", "kpps":
		return formatCount(v)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// formatCount formats a whole number with thousands separators.
func formatCount(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// firstLine returns the first line of file, or def.
func firstLine(file, def string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return def
	}
	l, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(l)
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// cpuIdle describes how idle CPUs wait: the cpuidle driver and governor
// and, with the haltpoll driver of a KVM guest, how long an idle vCPU polls
// before it halts. Every hop of a userspace switch wakes a thread; on a VM,
// waking a halted vCPU is what much of its latency is made of
// (docs/benchmarks.md), so the figures depend on this.
func cpuIdle() string {
	const dir = "/sys/devices/system/cpu/cpuidle/"
	driver := firstLine(dir+"current_driver", "")
	if driver == "" {
		return ""
	}
	s := "cpuidle " + driver + "/" + firstLine(dir+"current_governor", firstLine(dir+"current_governor_ro", "?"))
	if ns := firstLine("/sys/module/haltpoll/parameters/guest_halt_poll_ns", ""); ns != "" {
		s += ", guest_halt_poll_ns " + ns
		if shrink := firstLine("/sys/module/haltpoll/parameters/guest_halt_poll_allow_shrink", ""); shrink != "" {
			s += " (allow_shrink " + shrink + ")"
		}
	}
	return s
}

// logger writes progress lines.
type logger struct{ w io.Writer }

func (l logger) printf(format string, args ...any) {
	if l.w != nil {
		fmt.Fprintf(l.w, format+"\n", args...)
	}
}
