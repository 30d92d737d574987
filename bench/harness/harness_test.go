package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// TestQuickRun runs the whole harness in quick mode, in-process, against an
// ovlsw built for the test, and checks that every case produced numbers. It
// never checks a speed: how fast anything is is the benchmark's business.
func TestQuickRun(t *testing.T) {
	opts := quickOptions(t)
	rep := runOrFail(t, opts)

	// Which builds each row must have numbers for.
	all, overlays, ovlsw := allBuilds, []string{buildKernel, buildOvlsw}, []string{buildOvlsw}
	want := map[string][]string{
		"tcp1": all, "tcp4": all, "udp_pps": all, "udp_loss": all, "ping_p50": all, "ping_p99": all,
		"tcp_rr": all, "cpu_gb_tcp1": all, "cpu_gb_tcp4": all, "ovlsw_cpu_tcp1": ovlsw, "rss": ovlsw,
		"fdb_empty": overlays, "fdb_full": overlays, "fdb_entries": overlays, "fdb_rss": ovlsw,
		"gossip_join": ovlsw, "gossip_bind": ovlsw, "gossip_bytes": ovlsw,
		"route_bridged_tcp1": ovlsw, "route_routed_tcp1": ovlsw, "route_bridged_tcp4": ovlsw, "route_routed_tcp4": ovlsw,
	}
	for _, n := range opts.ScalePairs {
		want[scaleID(n)] = all
	}
	// A zero is a real result only for packet loss.
	mayBeZero := map[string]bool{"udp_loss": true}

	got := make(map[string]*row)
	for _, rw := range rep.Rows {
		got[rw.ID] = rw
	}
	for id, builds := range want {
		rw := got[id]
		if rw == nil {
			t.Errorf("row %s missing from the report", id)
			continue
		}
		for _, b := range builds {
			c := rw.Values[b]
			switch {
			case c == nil || len(c.Samples) == 0:
				t.Errorf("%s: no %s value", b, rw.Metric)
			case c.Median < 0 || (c.Median == 0 && !mayBeZero[id]):
				t.Errorf("%s: %s = %v %s: not measured", b, rw.Metric, c.Median, rw.Unit)
			}
		}
	}
	if rw := got["fdb_entries"]; rw != nil {
		for b, c := range rw.Values {
			if c.Median < float64(opts.FDBEntries) {
				t.Errorf("%s: FDB holds %v entries after the fill, want at least %d", b, c.Median, opts.FDBEntries)
			}
		}
	}
	if rw := got["tcp1"]; rw != nil && rw.Ratios[buildOvlsw+"/"+buildKernel] == 0 {
		t.Errorf("no ovlsw/kernel ratio for TCP 1 stream: %+v", rw.Ratios)
	}
	for _, id := range []string{"gossip_join", "gossip_bind", "gossip_bytes", "route_bridged_tcp1", "route_routed_tcp4"} {
		if rw := got[id]; rw != nil && (rw.TODO != "" || len(rw.Values) != 1 ||
			!slices.Equal(rw.NotApplicable, []string{buildUnderlay, buildKernel}) || len(rw.Ratios) != 0) {
			t.Errorf("%s: want an ovlsw value only, kernel and underlay n/a, no ratios; got %+v", id, rw)
		}
	}
	if rw := got["gossip_join"]; rw != nil && !strings.Contains(rw.Metric, fmt.Sprintf("%d nodes", gossipQuickNodes)) {
		t.Errorf("gossip row does not name the --quick cluster size: %q", rw.Metric)
	}

	var table, js bytes.Buffer
	if err := rep.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "ovlsw/kernel") || !strings.Contains(table.String(), "n/a") {
		t.Errorf("table lacks its header or the n/a cells of the gossip rows:\n%s", table.String())
	}
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Rows) != len(rep.Rows) {
		t.Errorf("JSON does not read back (%v):\n%s", err, js.String())
	}
	t.Logf("\n%s", table.String())
	testbed.CheckNoNetns(t, fmt.Sprintf("ovb%d-", os.Getpid()))
}

// TestQuickRunFallback runs the ovlsw base case with --no-attach: the
// address on each daemon's host TAP port, the path used while `ovlsw
// attach` is missing.
func TestQuickRunFallback(t *testing.T) {
	opts := quickOptions(t)
	opts.NoAttach = true
	opts.Builds, opts.Scenes = []string{buildOvlsw}, []string{scenarioBase}
	rep := runOrFail(t, opts)
	if !strings.HasPrefix(rep.Attach, "fallback") {
		t.Errorf("report does not say it fell back: %q", rep.Attach)
	}
	for _, rw := range rep.Rows {
		if c := rw.Values[buildOvlsw]; rw.ID != "udp_loss" && (c == nil || c.Median <= 0) {
			t.Errorf("%s: not measured", rw.Metric)
		}
	}
	testbed.CheckNoNetns(t, fmt.Sprintf("ovb%d-", os.Getpid()))
}

// quickOptions skips unless the machine can run the harness, builds ovlsw
// into a temporary directory and returns --quick options that use it.
func quickOptions(t *testing.T) options {
	t.Helper()
	testbed.RequireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		if os.Getenv(testbed.RequireRootEnv) == "1" {
			t.Fatalf("iperf3 is not installed and %s=1 forbids skipping", testbed.RequireRootEnv)
		}
		t.Skip("iperf3 is not installed (apt-get install iperf3)")
	}
	bin := filepath.Join(t.TempDir(), "ovlsw")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ovlsw/ovlsw/cmd/ovlsw").CombinedOutput(); err != nil {
		t.Fatalf("go build ovlsw: %v\n%s", err, out)
	}
	opts := defaultOptions()
	opts.quicken()
	opts.Ovlsw = bin
	return opts
}

func runOrFail(t *testing.T, opts options) *report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := checkPrereqs(opts); err != nil {
		t.Fatal(err)
	}
	rep, err := run(ctx, opts, testbed.LogWriter(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

func TestParseCases(t *testing.T) {
	tests := []struct {
		name           string
		in             string
		builds, scenes []string
		err            string
	}{
		{"builds only", "ovlsw,kernel", []string{buildKernel, buildOvlsw}, allScenarios, ""},
		{"scenarios only", "scale", allBuilds, []string{scenarioScale}, ""},
		{"both", " ovlsw , fdb,base", []string{buildOvlsw}, []string{scenarioBase, scenarioFDB}, ""},
		{"unknown", "ovlsw,warp", nil, nil, `unknown case "warp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, s, err := parseCases(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(b, tt.builds) || !slices.Equal(s, tt.scenes) {
				t.Errorf("parseCases(%q) = %v, %v, %v; want %v, %v", tt.in, b, s, err, tt.builds, tt.scenes)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	var usage bytes.Buffer
	o, err := parseFlags([]string{"--quick", "--repeat", "2"}, &usage)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Quick || o.Repeat != 2 || o.Duration != time.Second {
		t.Errorf("--quick --repeat 2: %+v; want quick, repeat 2 (explicit wins), 1s", o)
	}
	if _, err := parseFlags([]string{"--repeat", "0"}, &usage); err == nil {
		t.Error("--repeat 0 accepted")
	}
}

func TestStats(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	s := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	if got := percentile(s, 50); got != 5*time.Millisecond {
		t.Errorf("p50 = %v, want 5ms", got)
	}
	if got := percentile(s, 99); got != 10*time.Millisecond {
		t.Errorf("p99 = %v, want 10ms", got)
	}
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 100015: "100,015", 1234567: "1,234,567"} {
		if got := formatCount(in); got != want {
			t.Errorf("formatCount(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestFDBParsing(t *testing.T) {
	body := []byte(`[
  {
    "vni": 42,
    "mac": "02:fe:00:01:86:9f",
    "where": "vtep 192.168.91.1:4789"
  },
  {"vni":42,"mac":"aa:bb:cc:dd:ee:ff","origin":"local"}
]`)
	macs := jsonStrings(body, "mac")
	if want := []string{"02:fe:00:01:86:9f", "aa:bb:cc:dd:ee:ff"}; !slices.Equal(macs, want) {
		t.Errorf("jsonStrings = %q, want %q", macs, want)
	}
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"02:fe:00:01:86:9f", 99999, true},
		{"02:FE:00:00:00:00", 0, true},
		{"02:fd:ff:ff:ff:ff", 0, false},
		{"02:fe:00:01:86", 0, false},
		{"02:fe:00:01:86-9f", 0, false},
		{"02:fe:0g:01:86:9f", 0, false},
	}
	for _, tt := range tests {
		if got, ok := fillIndex(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("fillIndex(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
