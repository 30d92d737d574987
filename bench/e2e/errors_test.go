package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestE2EStartupErrors: each way `ovlsw up` can fail at start exits
// non-zero with one line saying what is wrong and what to do, and leaves no
// TAP and no control socket behind.
func TestE2EStartupErrors(t *testing.T) {
	bed, h1, _ := twoHosts(t)
	running := startNode(t, h1, "ok", "--vni", "42", "--bind", ul1.Addr().String())
	bin := ovlswBinary(t)
	keyFile, badKey := t.TempDir()+"/key", t.TempDir()+"/badkey"
	if err := os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badKey, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		wrap   []string // command prefix inside the namespace
		args   []string
		want   string
		socket bool // pass a fresh socket (false: reuse the running node's)
	}{
		{name: "unknown flag", args: []string{"--vni", "42", "--bind", ul1.Addr().String(), "--bogus"}, want: "unknown flag: --bogus", socket: true},
		{name: "missing bind", args: []string{"--vni", "42"}, want: "--bind is required", socket: true},
		{name: "address not on this host", args: []string{"--vni", "42", "--bind", "192.168.91.77"}, want: "not an address of this host", socket: true},
		{name: "port in use", args: []string{"--vni", "43", "--bind", ul1.Addr().String()}, want: "UDP port 4789 on 192.168.91.1 is already in use", socket: true},
		{name: "socket in use", args: []string{"--vni", "43", "--bind", ul1.Addr().String(), "--port", "4790"}, want: "another ovlsw is already running", socket: false},
		{name: "gossip key does not match", args: []string{"--vni", "43", "--bind", ul1.Addr().String(), "--port", "4792", "--gossip-port", "7947",
			"--join", ul1.Addr().String(), "--gossip-key-file", keyFile}, want: "the key does not match", socket: true},
		{name: "bad gossip key file", args: []string{"--vni", "43", "--bind", ul1.Addr().String(), "--port", "4792", "--gossip-port", "7947",
			"--gossip-key-file", badKey}, want: "want a 32-byte key in base64", socket: true},
		{name: "join self", args: []string{"--vni", "43", "--bind", ul1.Addr().String(), "--port", "4792", "--gossip-port", "7947",
			"--join", ul1.Addr().String() + ":7947"}, want: "own gossip address", socket: true},
		{name: "gossip port in use", args: []string{"--vni", "43", "--bind", ul1.Addr().String(), "--port", "4792"}, want: "gossip port 7946", socket: true},
		{name: "not root", wrap: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
			args: []string{"--vni", "42", "--bind", ul1.Addr().String()}, want: "must run as root", socket: true},
		{name: "no /dev/net/tun", wrap: []string{"unshare", "--mount", "sh", "-c", `mount -t tmpfs none /dev/net && exec "$0" "$@"`},
			args: []string{"--vni", "42", "--bind", ul1.Addr().String(), "--port", "4791"}, want: "/dev/net/tun is missing", socket: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := running.socket
			if tt.socket {
				sock = socketPath(t, "err")
			}
			argv := append([]string{"netns", "exec", h1.Name}, tt.wrap...)
			argv = append(argv, bin, "up", "--tap", "ovlerr", "--socket", sock)
			argv = append(argv, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("exit: %v, want non-zero\n%s", err, out)
			}
			msg := strings.TrimSpace(string(out))
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "ovlsw: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("output %q: want one line `ovlsw: ...%s...`", msg, tt.want)
			}
			if bed.LinkExists(h1, "ovlerr") {
				t.Error("TAP ovlerr left behind")
			}
			if tt.socket {
				if _, err := os.Stat(sock); !os.IsNotExist(err) {
					t.Errorf("socket %s left behind (%v)", sock, err)
				}
			}
		})
	}
	// The running node was not disturbed.
	if st := running.status(); len(st.Ports) != 1 {
		t.Errorf("running node: %s", jsonString(st))
	}
	running.stop(bed)
}
