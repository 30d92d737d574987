package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitFileVerifies runs `systemd-analyze verify` on ovlsw.service, with
// ExecStart pointing at a copy of an executable (this test binary stands in
// for ovlsw: verify only needs it to exist), as make install would point it
// under its PREFIX.
func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is missing (apt-get install systemd)")
	}
	unit, err := os.ReadFile("ovlsw.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/ovlsw up --config /etc/ovlsw/ovlsw.yaml\n") {
		t.Fatal("ExecStart is not the line make install rewrites")
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin", "ovlsw")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ovlsw.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/ovlsw", bin) // as make install's sed
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSampleConfig: the sample configuration make install puts in
// /etc/ovlsw reads, and keeps the state (and the cluster secret beside it)
// in systemd's StateDirectory.
func TestSampleConfig(t *testing.T) {
	b, err := os.ReadFile("ovlsw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseUp(t, string(b))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.State != "/var/lib/ovlsw/ovlsw.state.json" || cfg.Socket != "/run/ovlsw/ovlsw.sock" || !cfg.Bind.IsValid() {
		t.Errorf("sample config: state %q socket %q bind %v", cfg.State, cfg.Socket, cfg.Bind)
	}
}
