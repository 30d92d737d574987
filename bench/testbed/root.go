// Entry points for tests: New and RequireRoot. They take the TB interface
// rather than testing.TB so that the package, which the benchmark program
// links, does not import testing.

package testbed

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// RequireRootEnv is the environment variable that turns RequireRoot's skip
// into a failure. CI sets OVLSW_REQUIRE_ROOT_TESTS=1 so root tests cannot
// silently stop running.
const RequireRootEnv = "OVLSW_REQUIRE_ROOT_TESTS"

// tools are the programs the package runs.
var tools = []string{"ip", "bridge", "ethtool", "ping"}

// TB is the part of testing.TB the package uses; *testing.T and *testing.B
// satisfy it.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// New returns an empty Bed for a test or benchmark, after RequireRoot, and
// registers its Close with tb.Cleanup (a failing Close fails the test).
// Namespace names start with "ovt<pid>-<counter>-".
func New(tb TB) *Bed {
	tb.Helper()
	RequireRoot(tb)
	b, err := NewStandalone("ovt")
	if err != nil {
		tb.Fatalf("testbed: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("testbed: close: %v", err)
		}
	})
	return b
}

// RequireRoot skips the test, saying why, unless it runs as root with
// /dev/net/tun present and ip, bridge, ethtool and ping installed. When
// OVLSW_REQUIRE_ROOT_TESTS=1 it fails instead of skipping.
func RequireRoot(tb TB) {
	tb.Helper()
	if why := missingPrereq(); why != "" {
		if os.Getenv(RequireRootEnv) == "1" {
			tb.Fatalf("root test cannot run (%s) and %s=1 forbids skipping", why, RequireRootEnv)
		}
		tb.Skipf("root test skipped: %s (set %s=1 to make this a failure)", why, RequireRootEnv)
	}
}

// missingPrereq returns why root tests cannot run here, or "" if they can.
func missingPrereq() string {
	if err := CheckHost("sudo make test"); err != nil {
		return err.Error()
	}
	return ""
}

// CheckHost says what this machine lacks for a test bed, before anything
// is created: root, /dev/net/tun (for ovlsw's TAPs) and the tools the
// package runs. sudo is the command to suggest to a user who is not root.
func CheckHost(sudo string) error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("needs root (it creates network namespaces), running as uid %d: run `%s`", uid, sudo)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("needs /dev/net/tun for ovlsw's TAP ports: %v (modprobe tun)", err)
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s is not installed: install it with `apt-get install iproute2 ethtool iputils-ping` (or `make deps`)", t)
		}
	}
	return nil
}

// CheckOvlswBinary says if path is not an executable file, and how to get
// one.
func CheckOvlswBinary(path string) error {
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("no ovlsw binary at %s: run `make build` or pass --ovlsw PATH", path)
	}
	return nil
}

// LogWriter returns a writer that passes each write, less a trailing
// newline, to t.Log: progress output of a harness or soak run inside a test.
func LogWriter(t interface{ Log(args ...any) }) io.Writer { return logWriter{t} }

type logWriter struct{ t interface{ Log(args ...any) } }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
