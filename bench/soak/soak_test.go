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

// TestQuickSoak runs the soak in --quick mode, in-process, against an ovlsw
// built for the test, and requires every check to pass.
func TestQuickSoak(t *testing.T) {
	testbed.RequireRoot(t)
	if testing.Short() {
		t.Skip("the quick soak takes about a minute")
	}
	bin := filepath.Join(t.TempDir(), "ovlsw")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ovlsw/ovlsw/cmd/ovlsw").CombinedOutput(); err != nil {
		t.Fatalf("go build ovlsw: %v\n%s", err, out)
	}
	opts := defaultOptions()
	opts.quicken()
	opts.Ovlsw = bin
	if err := checkPrereqs(opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	rep, err := run(ctx, opts, testbed.LogWriter(t))
	if rep != nil {
		var table bytes.Buffer
		if err := rep.writeTable(&table); err != nil {
			t.Error(err)
		}
		t.Logf("\n%s", table.String())
		var js bytes.Buffer
		if err := rep.writeJSON(&js); err != nil {
			t.Error(err)
		}
		var back report
		if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.FaultsTotal != rep.FaultsTotal {
			t.Errorf("JSON does not read back (%v):\n%s", err, js.String())
		}
	}
	if err != nil {
		t.Fatalf("soak: %v", err)
	}
	for _, k := range faultKinds {
		if rep.Faults[k] == 0 && (k != kindUpgrade || rep.UpgradeRestart) {
			t.Errorf("no %s fault injected: %v", k, rep.Faults)
		}
	}
	if rep.Resources.Baseline.PID == 0 || rep.Resources.End.RSSKiB == 0 {
		t.Errorf("resources not sampled: %+v", rep.Resources)
	}
	testbed.CheckNoNetns(t, fmt.Sprintf("%s%d-", namePrefix, os.Getpid()))
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want func(options) bool
		err  string
	}{
		{"defaults", nil, func(o options) bool { return o.Duration == 10*time.Minute && o.Cycles == 0 && !o.Quick }, ""},
		{"quick", []string{"--quick"}, func(o options) bool { return o.Quick && o.Cycles == 3 && o.Pause == 2*time.Second }, ""},
		{"quick, explicit duration wins", []string{"--quick", "--duration", "30s"}, func(o options) bool { return o.Quick && o.Duration == 30*time.Second }, ""},
		{"allow reattach", []string{"--allow-reattach", "--json"}, func(o options) bool { return o.AllowReattach && o.JSON }, ""},
		{"too short", []string{"--duration", "1s"}, nil, "at least 10s"},
		{"stray argument", []string{"now"}, nil, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var usage bytes.Buffer
			o, err := parseFlags(tt.args, &usage)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.want(o) {
				t.Errorf("parseFlags(%q) = %+v, %v", tt.args, o, err)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tovlsw\nUmask:\t0022\nVmRSS:\t   18340 kB\nRssAnon:\t    9000 kB\nThreads:\t11\n"
	rss, threads, err := parseStatus([]byte(status))
	if err != nil || rss != 18340 || threads != 11 {
		t.Errorf("parseStatus = %d, %d, %v; want 18340, 11, nil", rss, threads, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tovlsw\nThreads:\t3\n")); err == nil {
		t.Error("a status without VmRSS parsed")
	}
	if _, _, err := parseStatus([]byte("VmRSS:\tlots kB\nThreads:\t3\n")); err == nil {
		t.Error("a bad VmRSS parsed")
	}
	// The test process itself has a status file to read.
	ps, err := sampleProc(os.Getpid())
	if err != nil || ps.RSSKiB <= 0 || ps.Threads <= 0 || ps.FDs <= 0 {
		t.Errorf("sampleProc(self) = %+v, %v", ps, err)
	}
}

func TestLinkNames(t *testing.T) {
	out := "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n" +
		"2: ul0@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 02:11:22:33:44:55\n" +
		"4: ovt7: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether 02:aa:bb:cc:dd:ee\n"
	if got, want := linkNames(out), []string{"lo", "ul0", "ovt7"}; !slices.Equal(got, want) {
		t.Errorf("linkNames = %q, want %q", got, want)
	}
}

func TestBound(t *testing.T) {
	if got := bound(100, 16); got != 166 {
		t.Errorf("bound(100, 16) = %d, want 166", got)
	}
}

func TestRSSSlope(t *testing.T) {
	// 1 MiB more every 360 s after warm-up at 100 s: 10 MiB/h. The sample
	// before warm-up and the unreadable one (pid 0) are left out.
	samples := []procSample{{PID: 1, AtS: 10, RSSKiB: 500 << 10}, {PID: 0, AtS: 200}}
	for i := range 5 {
		samples = append(samples, procSample{PID: 1, AtS: 100 + 360*float64(i), RSSKiB: int64(20+i) << 10})
	}
	if got := rssSlope(samples, 100); got < 9.999 || got > 10.001 {
		t.Errorf("rssSlope = %v MiB/h, want 10", got)
	}
	if got := rssSlope(samples[:3], 100); got != 0 {
		t.Errorf("rssSlope of one sample after warm-up = %v, want 0", got)
	}
}

// TestFlowGaps checks the gap accounting with made-up round-trip times:
// the window counts the interval that spans its opening, and an interval
// still open when it closes.
func TestFlowGaps(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var f flow
	f.progress(at(0), 10)
	f.progress(at(20), 10)
	f.openWindow()
	f.progress(at(1500), 10) // 1480 ms without a round trip, across the opening
	f.progress(at(1520), 10)
	if !f.since(at(1510)) || f.since(at(1520)) {
		t.Error("since does not follow the last round trip")
	}
	if got := f.windowGap(at(1530)); got != 1480*time.Millisecond {
		t.Errorf("window gap = %v, want 1.48s", got)
	}
	f.openWindow()
	if got := f.windowGap(at(4520)); got != 3*time.Second {
		t.Errorf("window gap with no round trip since = %v, want the open 3s", got)
	}
	if f.maxGap != 1480*time.Millisecond || f.rounds != 4 || f.bytes != 40 {
		t.Errorf("maxGap %v, rounds %d, bytes %d; want 1.48s, 4, 40", f.maxGap, f.rounds, f.bytes)
	}
}

func TestFillChunk(t *testing.T) {
	a, b, c := make([]byte, flowChunk), make([]byte, flowChunk), make([]byte, flowChunk)
	fillChunk(a, 1, 7)
	fillChunk(b, 1, 8)
	fillChunk(c, 2, 7)
	if bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("chunks of different rounds or flows are equal")
	}
	fillChunk(b, 1, 7)
	if !bytes.Equal(a, b) {
		t.Error("fillChunk is not deterministic")
	}
}
