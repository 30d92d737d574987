package e2e

// This file holds what the container runtime tests (Podman, Docker) share:
// a per-test state directory that is unmounted and removed whatever
// happens, and running a runtime's command in a host namespace.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"golang.org/x/sys/unix"
)

// stateDirs numbers the state directories of this process.
var stateDirs atomic.Int64

// stateDir makes a directory for a runtime's storage, named with the pid,
// whose removal (after the runtime's own cleanup, registered later, has
// run) unmounts whatever the runtime left mounted in it.
func stateDir(t *testing.T, what string) string {
	t.Helper()
	// Short: Podman refuses a run root path over 50 bytes.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("ovlsw-%s-%d-%d", what, os.Getpid(), stateDirs.Add(1)))
	t.Cleanup(func() {
		for _, m := range mountsUnder(dir) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			ms = append(ms, fields[4])
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
	return ms
}

// inHost runs argv in ns's network namespace with nsenter, keeping this
// process's mount namespace: a runtime that bind-mounts a container's
// namespace under /run/netns (Podman) or /var/run/docker/netns must do so
// where the ovlsw daemon can open it. (`ip netns exec` makes a private
// mount namespace, and dockerd fails in it.) env is added to the
// environment.
func inHost(ctx context.Context, ns *testbed.Netns, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return string(out), nil
}
