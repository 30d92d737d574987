package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestObserveFlagErrors: bad command lines of the observability commands
// and of --metrics are refused with one line that says what to fix.
func TestObserveFlagErrors(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"metrics without port", []string{"up", "--bind", "10.0.0.1", "--metrics", "127.0.0.1"}, `--metrics "127.0.0.1": want HOST:PORT`},
		{"metrics port zero", []string{"up", "--bind", "10.0.0.1", "--metrics", "127.0.0.1:0"}, "--metrics \"127.0.0.1:0\": want a port from 1"},
		{"capture without a point", []string{"capture", "--socket", sock}, "give one of --port, --vni or --peer"},
		{"capture at two points", []string{"capture", "--port", "a", "--vni", "4", "--socket", sock}, "give one of --port, --vni or --peer"},
		{"capture bad vni", []string{"capture", "--vni", "0", "--socket", sock}, "--vni 0 out of range"},
		{"capture bad peer", []string{"capture", "--peer", "node2", "--socket", sock}, `--peer "node2" is not an IP address`},
		{"capture count zero", []string{"capture", "--port", "a", "--count", "0", "--socket", sock}, "--count 0"},
		{"trace without network", []string{"trace", "--from", "a", "--to", "10.0.0.1", "--socket", sock}, "--network is required"},
		{"trace without to", []string{"trace", "--network", "n", "--from", "a", "--socket", sock}, "--to is required"},
		{"capture without daemon", []string{"capture", "--port", "a", "-w", t.TempDir() + "/x.pcapng", "--socket", sock}, "no ovlsw is running at " + sock},
		{"trace without daemon", []string{"trace", "--network", "n", "--from", "a", "--to", "10.0.0.1", "--socket", sock}, "no ovlsw is running at " + sock},
		{"events without daemon", []string{"events", "--socket", sock}, "no ovlsw is running at " + sock},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := newRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			err := root.Execute()
			if err == nil {
				t.Fatalf("ovlsw %v succeeded", tt.args)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line mentioning %q", msg, tt.want)
			}
		})
	}
}
