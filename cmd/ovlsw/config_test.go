package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ovlsw/ovlsw/cmd/daemon"
)

// parseUp runs ovlsw up's parsing on args with the file text (if any) as
// --config, and returns the configuration it would start with.
func parseUp(t *testing.T, file string, args ...string) (daemon.Config, string, error) {
	t.Helper()
	if file != "" {
		path := filepath.Join(t.TempDir(), "ovlsw.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	var got daemon.Config
	c := newUpCommand(func(_ *cobra.Command, cfg daemon.Config, _ *configFile) error {
		got = cfg
		return nil
	})
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SilenceErrors, c.SilenceUsage = true, true
	c.SetArgs(args)
	err := c.Execute()
	return got, out.String(), err
}

// settings is cfg without what is not a setting (the logger and its
// level's handle, the output), to compare configurations.
func settings(cfg daemon.Config) daemon.Config {
	cfg.Logger, cfg.Out, cfg.LevelVar = nil, nil, nil
	return cfg
}

// TestConfigFileKeys: a key of every kind of flag sets what the flag sets.
func TestConfigFileKeys(t *testing.T) {
	file := `
bind: 192.168.91.1          # string
vni: 42                     # uint32
port: 4790                  # uint16
max-macs-per-port: 100      # int
ageing: 90s                 # duration
insecure: true              # bool
peer: [192.168.91.2, "192.168.91.3:4790"]   # repeatable, flow style
address:                    # repeatable, block style
  - 10.91.0.1/24
  - fd00::1/64
join: 192.168.91.9          # repeatable, one value
flood: arp=drop
log-level: debug
tap: ""
`
	cfg, _, err := parseUp(t, file)
	if err != nil {
		t.Fatal(err)
	}
	want := daemon.DefaultConfig()
	want.Bind = netip.MustParseAddr("192.168.91.1")
	want.VNI, want.Port, want.MaxMACsPerPort, want.Ageing, want.Insecure = 42, 4790, 100, 90*time.Second, true
	want.Peers = []netip.AddrPort{netip.MustParseAddrPort("192.168.91.2:4790"), netip.MustParseAddrPort("192.168.91.3:4790")}
	want.Address = []netip.Prefix{netip.MustParsePrefix("10.91.0.1/24"), netip.MustParsePrefix("fd00::1/64")}
	want.Join = []string{"192.168.91.9"}
	want.Flood = "arp=drop"
	want.LogLevel = -4 // debug
	if got := settings(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("config:\n got %+v\nwant %+v", got, want)
	}
	if cfg.LevelVar == nil || cfg.LevelVar.Level() != want.LogLevel {
		t.Errorf("log level var %v, want %v", cfg.LevelVar, want.LogLevel)
	}
}

// TestConfigFileOverrides: flags on the command line win over the file,
// a repeatable flag replacing the file's list as a whole.
func TestConfigFileOverrides(t *testing.T) {
	file := "bind: 192.168.91.1\nvni: 42\npeer: [192.168.91.2, 192.168.91.3]\nmtu: 1400\n"
	cfg, _, err := parseUp(t, file, "--vni", "7", "--peer", "192.168.91.4", "--bind=192.168.91.5")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VNI != 7 || cfg.Bind.String() != "192.168.91.5" || cfg.MTU != 1400 {
		t.Errorf("vni %d bind %v mtu %d, want 7 (flag) 192.168.91.5 (flag) 1400 (file)", cfg.VNI, cfg.Bind, cfg.MTU)
	}
	if len(cfg.Peers) != 1 || cfg.Peers[0].String() != "192.168.91.4:4789" {
		t.Errorf("peers %v, want only the command line's", cfg.Peers)
	}
}

// TestConfigFileErrors: each bad file is refused with one line naming the
// file, the line and the key.
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, file string
		args       []string
		want       string // after "config FILE "
	}{
		{"unknown key", "bind: 10.0.0.1\n\nfrobnicate: 3\n", nil, `line 3: unknown key "frobnicate" (see ovlsw up --help)`},
		{"help is no key", "help: true\n", nil, `line 1: unknown key "help"`},
		{"config in the file", "bind: 10.0.0.1\nconfig: other.yaml\n", nil, `line 2: key "config" is for the command line only`},
		{"print-config in the file", "print-config: true\n", nil, `line 1: key "print-config" is for the command line only`},
		{"not a number", "bind: 10.0.0.1\nvni: forty\n", nil, `line 2: key "vni": invalid value "forty" for a uint32`},
		{"negative uint", "vni: -1\n", nil, `line 1: key "vni": invalid value "-1"`},
		{"bad duration", "ageing: 5 minutes\n", nil, `line 1: key "ageing": invalid value "5 minutes" for a duration`},
		{"bad bool", "insecure: maybe\n", nil, `line 1: key "insecure": invalid value "maybe" for a bool`},
		{"value out of range", "bind: 10.0.0.1\nvni: 0\n", nil, `line 2: key "vni": --vni 0 out of range`},
		{"bad address", "bind: 10.0.0.1\nvni: 4\naddress:\n  - 10.0.0.5\n", nil, `line 3: key "address": --address "10.0.0.5"`},
		{"bad bind", "bind: host1\n", nil, `line 1: key "bind": --bind "host1" is not an IP address`},
		{"list for a scalar", "bind: 10.0.0.1\nvni: [1, 2]\n", nil, `line 2: key "vni": want one value, not a list`},
		{"mapping for a scalar", "bind:\n  ip: 10.0.0.1\n", nil, `line 2: key "bind": want one value, not a mapping`},
		{"mapping for a list", "peer: {a: b}\n", nil, `line 1: key "peer": want a value or a list of values`},
		{"nested list", "peer:\n  - [a, b]\n", nil, `line 2: key "peer": list elements must be single values`},
		{"no value", "bind: 10.0.0.1\ntap:\n", nil, `line 2: key "tap": no value`},
		{"twice", "vni: 1\nbind: 10.0.0.1\nvni: 2\n", nil, `line 3: key "vni" given twice (first on line 1)`},
		{"not a mapping", "- bind\n- vni\n", nil, `line 1: want a mapping`},
		{"yaml syntax", "bind: 10.0.0.1\nvni: 4\n  mtu: 3\n", nil, `line 3: mapping values are not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseUp(t, tt.file, tt.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config ") || !strings.Contains(msg, "ovlsw.yaml "+tt.want) {
				t.Errorf("error %q, want `config .../ovlsw.yaml %s...`", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
	// A flag on the command line is not blamed on the file.
	_, _, err := parseUp(t, "bind: 10.0.0.1\nvni: 4\n", "--vni", "0")
	if err == nil || strings.Contains(err.Error(), "line") {
		t.Errorf("--vni 0 on the command line: %v", err)
	}
	// A missing file.
	_, _, err = parseUp(t, "", "--config", "/nonexistent/ovlsw.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ovlsw.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// TestConfigEmptyFile: an empty file or comments only set nothing.
func TestConfigEmptyFile(t *testing.T) {
	for _, file := range []string{"\n", "# nothing\n"} {
		cfg, _, err := parseUp(t, file, "--bind", "10.0.0.1")
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		want := daemon.DefaultConfig()
		want.Bind, want.Flood = netip.MustParseAddr("10.0.0.1"), "flood" // the flag's default
		if got := settings(cfg); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: got %+v, want the defaults", file, got)
		}
	}
}

// TestPrintConfig: --print-config prints every flag, sorted, and what it
// prints read back as a file (with no flags) gives the same configuration
// and prints the same again.
func TestPrintConfig(t *testing.T) {
	file := "bind: 192.168.91.1\nvni: 42\npeer: [192.168.91.2]\ninsecure: true\nageing: 1m\ntap: \"on\"\ntoken-file: '123'\n"
	args := []string{"--mtu", "1300", "--address", "10.91.0.1/24", "--address", "10.91.0.2/24", "--log-level", "warn"}
	want, _, err := parseUp(t, file, args...)
	if err != nil {
		t.Fatal(err)
	}
	_, printed, err := parseUp(t, file, append(args, "--print-config")...)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range strings.Split(printed, "\n") {
		if k, _, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			keys = append(keys, k)
		}
	}
	var flags []string
	newUp().Flags().VisitAll(func(f *pflag.Flag) {
		if configurable(f) {
			flags = append(flags, f.Name)
		}
	})
	if fmt.Sprint(keys) != fmt.Sprint(flags) {
		t.Errorf("printed keys %v,\nwant every flag, sorted: %v", keys, flags)
	}
	_, again, err := parseUp(t, printed, "--print-config")
	if err != nil {
		t.Fatalf("printed config does not read back: %v\n%s", err, printed)
	}
	if again != printed {
		t.Errorf("printed again differs:\n%s\nfirst:\n%s", again, printed)
	}
	got, _, err := parseUp(t, printed)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(settings(got), settings(want)) {
		t.Errorf("read back:\n got %+v\nwant %+v", settings(got), settings(want))
	}
}
