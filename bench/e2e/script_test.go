package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// attachScript is cmd/ovlsw-attach/ovlsw-attach, relative to this package.
var attachScript = filepath.Join("..", "..", "cmd", "ovlsw-attach", "ovlsw-attach")

// runAttachScript runs the script with dash (the strictest POSIX sh at
// hand) or sh, ovlsw on PATH and OVLSW_SOCKET set to n's socket (if n is not
// nil), and returns its combined output and exit code.
func runAttachScript(t *testing.T, n *node, args ...string) (string, int) {
	t.Helper()
	shell := "sh"
	if _, err := exec.LookPath("dash"); err == nil {
		shell = "dash"
	}
	cmd := exec.Command(shell, append([]string{attachScript}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(ovlswBinary(t))+string(os.PathListSeparator)+os.Getenv("PATH"))
	if n != nil {
		cmd.Env = append(cmd.Env, "OVLSW_SOCKET="+n.socket)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%s %v: %v", shell, args, err)
	return "", 0
}

// netnsExists reports whether /run/netns/name exists.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// TestE2EAttachScript: ovlsw-attach creates a missing namespace and attaches
// it, and a container attached with ovlsw attach on the other node pings
// it; an existing namespace is attached as it is; a failed attach removes
// the namespace the script created; bad usage exits 2 with a usage line.
func TestE2EAttachScript(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "s1", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul1.Addr().String(), "--peer", ul2.Addr().String())
	n2 := startNode(t, h2, "s2", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul2.Addr().String(), "--peer", ul1.Addr().String())
	ctx := testCtx(t, time.Minute)

	// A namespace the script creates: its removal is registered first.
	name := fmt.Sprintf("ovlsw-e2e-script-%d", os.Getpid())
	t.Cleanup(func() {
		if netnsExists(name) {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v %s", name, err, out)
			}
		}
	})
	if netnsExists(name) {
		t.Fatalf("netns %s exists before the test", name)
	}
	out, code := runAttachScript(t, n1, name, "default", "10.0.9.50/24")
	if code != 0 || !strings.Contains(out, "10.0.9.50/24") {
		t.Fatalf("ovlsw-attach %s: exit %d\n%s", name, code, out)
	}
	if !netnsExists(name) {
		t.Fatalf("ovlsw-attach did not create netns %s", name)
	}
	c2 := mustNetns(t, bed, "c2")
	e2 := n2.attach(c2, "--ip", "10.0.9.100/24")
	if err := c2.WaitPing(ctx, netip.MustParseAddr("10.0.9.50"), 10*time.Second); err != nil {
		t.Fatalf("c2 -> %s across nodes: %v\n%s", name, err, n1.proc.Output())
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", name, "ping", "-c", "1", "-W", "2", e2.Address.Addr().String()).CombinedOutput(); err != nil {
		t.Errorf("%s -> c2: %v\n%s", name, err, out)
	}

	// An existing namespace is attached as it is, the address allocated.
	c3 := mustNetns(t, bed, "c3")
	out, code = runAttachScript(t, n1, c3.Name, "default")
	if code != 0 || !strings.Contains(out, "10.0.9.") {
		t.Errorf("ovlsw-attach %s (existing): exit %d\n%s", c3.Name, code, out)
	}

	// A failed attach removes the namespace the script created.
	bad := fmt.Sprintf("ovlsw-e2e-script-%d-bad", os.Getpid())
	t.Cleanup(func() {
		if netnsExists(bad) {
			exec.Command("ip", "netns", "del", bad).Run()
		}
	})
	out, code = runAttachScript(t, n1, bad, "nosuch")
	if code == 0 || !strings.Contains(out, "nosuch") {
		t.Errorf("ovlsw-attach to a missing network: exit %d\n%s", code, out)
	}
	if netnsExists(bad) {
		t.Errorf("ovlsw-attach left netns %s behind after a failed attach", bad)
	}

	// Bad usage.
	for _, args := range [][]string{{}, {name}, {name, "default", "10.0.9.51/24", "extra"}, {name, "default", "10.0.9.51"}} {
		out, code := runAttachScript(t, n1, args...)
		if code != 2 || !strings.Contains(out, "ovlsw-attach") {
			t.Errorf("ovlsw-attach %q: exit %d, want 2 with a message\n%s", args, code, out)
		}
		if len(args) < 2 && !strings.Contains(out, "usage: ovlsw-attach NETNS NETWORK [IP/PREFIX]") {
			t.Errorf("ovlsw-attach %q: no usage line\n%s", args, out)
		}
	}

	n1.stop(bed)
	n2.stop(bed)
}
