// Package e2e holds the end-to-end tests: real ovlsw processes in network
// namespaces joined by veth underlays, real traffic (ping, TCP streams), and
// the Linux kernel's vxlan driver as the interop peer. They need root and
// /dev/net/tun; see testbed.RequireRoot.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ovlswBinary builds cmd/ovlsw once per test binary.
func ovlswBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", fmt.Sprintf("ovlsw-e2e-%d-", os.Getpid()))
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ovlsw")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/ovlsw/ovlsw/cmd/ovlsw").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	// Each test removes its sockets, and the directory once it is empty;
	// what a failed test left there (a state file, a socket of a killed
	// node) goes now, when every node has been stopped.
	os.RemoveAll(socketDir())
	os.Exit(code)
}

// node is an `ovlsw up` process in a namespace.
type node struct {
	t      *testing.T
	ns     *testbed.Netns
	proc   *testbed.Proc
	socket string
	tap    string
}

// started maps the --bind address of each running node started by
// startNode to it (as hostKey writes it), so that a node joining it can
// ask it for its join token. Tests do not run in parallel.
var started = map[string]*node{}

// hostKey returns the address in a --bind or --join argument as a key of
// started: without a port or brackets, IPv6 in its canonical form, so
// that "--join [2001:db8::1]:7946" finds the node of "--bind 2001:db8::1"
// and "--join 192.168.91.1:7947" that of "--bind 192.168.91.1".
func hostKey(arg string) string {
	host := arg
	if h, _, err := net.SplitHostPort(arg); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}

// socketDir is where this test process's nodes have their sockets.
func socketDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("ovlsw-e2e-%d", os.Getpid()))
}

// socketPath returns a control socket path unique to this test process.
func socketPath(t *testing.T, name string) string {
	dir := socketDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) }) // only once empty
	return filepath.Join(dir, fmt.Sprintf("%s-%s.sock", t.Name()[:min(len(t.Name()), 20)], name))
}

// startNode runs `ovlsw up ARGS --socket S --tap T` in ns and waits for its
// control socket to answer. A node that joins one this test started gets
// that node's join token.
func startNode(t *testing.T, ns *testbed.Netns, name string, args ...string) *node {
	t.Helper()
	return startNodeToken(t, ns, name, true, args...)
}

// startNodeToken is startNode, with the join token passed only if
// autoToken.
func startNodeToken(t *testing.T, ns *testbed.Netns, name string, autoToken bool, args ...string) *node {
	t.Helper()
	n := &node{t: t, ns: ns, socket: socketPath(t, name), tap: "ovl" + name}
	argv := []string{ovlswBinary(t), "up", "--name", name, "--socket", n.socket, "--log-level", "debug"}
	if slices.Contains(args, "--vni") {
		argv = append(argv, "--tap", n.tap) // the host port of the default network
	}
	argv = append(argv, args...)
	if autoToken && testbed.NeedsToken(args) {
		// A node joins with the token of the node it joins, if this test
		// started that one.
		if to := started[hostKey(args[slices.Index(args, "--join")+1])]; to != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			tok, err := testbed.JoinToken(ctx, to.socket)
			cancel()
			if err != nil {
				t.Fatalf("join token of the node at %s: %v", args[slices.Index(args, "--join")+1], err)
			}
			argv = append(argv, "--token", tok)
		}
	}
	if off := os.Getenv("OVLSW_E2E_OFFLOAD"); off != "" {
		// The offload matrix: make test runs the end-to-end tests again
		// with OVLSW_E2E_OFFLOAD=off.
		argv = append(argv, "--offload="+off)
	}
	t.Cleanup(func() { os.Remove(n.socket) })
	proc, err := ns.Start(context.Background(), argv...)
	if err != nil {
		t.Fatal(err)
	}
	n.proc = proc
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st control.Status
		if err := n.get("/v1/status", &st); err == nil {
			if i := slices.Index(args, "--bind"); i >= 0 && i+1 < len(args) {
				bind := hostKey(args[i+1])
				started[bind] = n
				t.Cleanup(func() {
					if started[bind] == n {
						delete(started, bind)
					}
				})
			}
			return n
		}
		select {
		case <-proc.Done():
			t.Fatalf("ovlsw %s exited at start:\n%s", name, proc.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovlsw %s did not answer on %s:\n%s", name, n.socket, proc.Output())
		}
	}
}

func (n *node) get(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.NewClient(n.socket).Get(ctx, path, v)
}

func (n *node) status() control.Status {
	n.t.Helper()
	var st control.Status
	if err := n.get("/v1/status", &st); err != nil {
		n.t.Fatalf("status: %v", err)
	}
	return st
}

func (n *node) fdb() []control.FDBEntry {
	n.t.Helper()
	var es []control.FDBEntry
	if err := n.get("/v1/fdb", &es); err != nil {
		n.t.Fatalf("fdb: %v", err)
	}
	return es
}

// cli runs an ovlsw client command against the node and returns stdout.
func (n *node) cli(args ...string) string {
	n.t.Helper()
	out, err := exec.Command(ovlswBinary(n.t), append(args, "--socket", n.socket)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ovlsw %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// cliErr runs an ovlsw client command that is expected to fail and returns
// its error with the command's output as the message.
func (n *node) cliErr(args ...string) error {
	out, err := exec.Command(ovlswBinary(n.t), append(args, "--socket", n.socket)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	return nil
}

// execOvlsw runs an ovlsw client command against n and returns its output;
// safe from any goroutine.
func execOvlsw(n *node, args ...string) (string, error) {
	out, err := exec.Command(binPath, append(args, "--socket", n.socket)...).CombinedOutput()
	return string(out), err
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// stop sends SIGTERM and checks the node exits 0 and leaves neither its TAP
// nor its socket behind.
func (n *node) stop(bed *testbed.Bed) {
	n.t.Helper()
	if err := n.proc.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatal(err)
	}
	if err := n.proc.Wait(10 * time.Second); err != nil {
		n.t.Fatalf("ovlsw after SIGTERM: %v\n%s", err, n.proc.Output())
	}
	if bed.LinkExists(n.ns, n.tap) {
		n.t.Errorf("TAP %s still exists after SIGTERM", n.tap)
	}
	if _, err := os.Stat(n.socket); !os.IsNotExist(err) {
		n.t.Errorf("control socket %s still exists after SIGTERM (%v)", n.socket, err)
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var (
	ul1 = netip.MustParsePrefix("192.168.91.1/24")
	ul2 = netip.MustParsePrefix("192.168.91.2/24")
	ov1 = netip.MustParsePrefix("10.91.0.1/24")
	ov2 = netip.MustParsePrefix("10.91.0.2/24")
)

// twoHosts builds two host namespaces joined by a veth underlay.
func twoHosts(t *testing.T) (*testbed.Bed, *testbed.Netns, *testbed.Netns) {
	t.Helper()
	bed := testbed.New(t)
	h1, err := bed.Netns("h1")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := bed.Netns("h2")
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.Veth(h1, "ul0", ul1, h2, "ul0", ul2, 1500); err != nil {
		t.Fatal(err)
	}
	return bed, h1, h2
}

func jsonString(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func TestHostKey(t *testing.T) {
	for arg, want := range map[string]string{
		"192.168.91.1":          "192.168.91.1",
		"192.168.91.1:7947":     "192.168.91.1",
		"2001:db8:91::1":        "2001:db8:91::1",
		"2001:db8:91:0::1":      "2001:db8:91::1",
		"[2001:db8:91::1]":      "2001:db8:91::1",
		"[2001:db8:91::1]:7946": "2001:db8:91::1",
		"host1:7946":            "host1",
	} {
		if got := hostKey(arg); got != want {
			t.Errorf("hostKey(%q) = %q, want %q", arg, got, want)
		}
	}
}
