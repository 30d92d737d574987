package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/daemon"
)

// fakeNode records the configurations a reload hands it.
type fakeNode struct{ got []daemon.Config }

func (f *fakeNode) Reload(next daemon.Config) ([]string, []string, error) {
	f.got = append(f.got, next)
	return []string{"something"}, nil, nil
}

// startUp parses ovlsw up ARGS as at start and returns its configFile and
// the flag values it would run with.
func startUp(t *testing.T, args ...string) (*configFile, map[string][]string) {
	t.Helper()
	var cf *configFile
	var vals map[string][]string
	c := newUpCommand(func(c *cobra.Command, _ daemon.Config, f *configFile) error {
		cf, vals = f, effective(c.Flags())
		return nil
	})
	c.SilenceErrors, c.SilenceUsage = true, true
	c.SetArgs(args)
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	return cf, vals
}

// TestReloadParse: a reload reads the file again under the command line's
// flags, and splits what changed into what it applies and what needs a
// restart.
func TestReloadParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ovlsw.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("bind: 10.0.0.1\nvni: 42\nflood-rate: 100\nlog-level: info\npeer: [10.0.0.2]\n")
	cf, running := startUp(t, "--config", path, "--vni", "7", "--address", "10.91.0.1/24")
	if got := cf.args(); !slices.Equal(got, []string{"--address=10.91.0.1/24", "--config=" + path, "--vni=7"}) {
		t.Errorf("command line kept for reloads: %q", got)
	}

	write("bind: 10.0.0.9\nvni: 43\nflood-rate: 5\nlog-level: debug\npeer: [10.0.0.2, 10.0.0.3]\nmax-macs-per-vni: 10\n")
	next, vals, err := parseAgain(cf.args())
	if err != nil {
		t.Fatal(err)
	}
	if next.VNI != 7 || next.FloodRate != 5 || next.LogLevel != slog.LevelDebug || len(next.Address) != 1 {
		t.Errorf("reloaded config: vni %d (want the flag's 7) flood rate %d log level %v addresses %v", next.VNI, next.FloodRate, next.LogLevel, next.Address)
	}
	apply, restart := plan(running, vals)
	if want := []string{"flood-rate", "log-level", "max-macs-per-vni"}; !slices.Equal(apply, want) {
		t.Errorf("applied %q, want %q", apply, want)
	}
	if want := []string{"bind", "peer"}; !slices.Equal(restart, want) {
		t.Errorf("restart %q, want %q", restart, want)
	}

	// reload itself: the node gets the new configuration, each key that
	// needs a restart is logged, and stays as running for the next reload.
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	node := &fakeNode{}
	now := reload(node, cf, running, logger)
	if len(node.got) != 1 || node.got[0].FloodRate != 5 {
		t.Fatalf("node got %+v", node.got)
	}
	for _, k := range []string{"bind", "peer"} {
		if !strings.Contains(log.String(), "not applied: "+k+" changed; restart to apply") {
			t.Errorf("log does not say %s needs a restart:\n%s", k, log.String())
		}
		if !slices.Equal(now[k], running[k]) {
			t.Errorf("%s after reload %q, want the running %q", k, now[k], running[k])
		}
	}
	if !slices.Equal(now["flood-rate"], []string{"5"}) {
		t.Errorf("flood-rate after reload %q", now["flood-rate"])
	}
	log.Reset()
	reload(node, cf, now, logger)
	if !strings.Contains(log.String(), "not applied: bind changed") {
		t.Errorf("a second reload forgets that bind needs a restart:\n%s", log.String())
	}

	// A bad file is logged and changes nothing.
	write("bind: 10.0.0.1\nvni: [\n")
	log.Reset()
	if got := reload(node, cf, now, logger); len(node.got) != 2 || !slices.Equal(got["flood-rate"], now["flood-rate"]) {
		t.Errorf("a bad file reached the node (%d reloads) or changed the values", len(node.got))
	}
	if !strings.Contains(log.String(), "reload: configuration not changed") || !strings.Contains(log.String(), "line 2: did not find expected node content") {
		t.Errorf("bad file not logged with its line:\n%s", log.String())
	}
	write("bind: 10.0.0.1\nageing: 1ms\n")
	log.Reset()
	reload(node, cf, now, logger)
	if len(node.got) != 2 || !strings.Contains(log.String(), "ageing") {
		t.Errorf("an invalid configuration reached the node, or was not logged:\n%s", log.String())
	}
}
