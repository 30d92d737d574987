package e2e

// This file holds the Podman end-to-end test: podman run on two ovlsw
// nodes, each a host namespace with a Podman of its own (storage,
// containers.conf, CNI config dir) whose networks are ovlsw-cni conflists
// pointing at that node's control socket.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// podmanHost is one host's Podman.
type podmanHost struct {
	t   *testing.T
	ns  *testbed.Netns
	dir string
	env []string
}

// podmanConf is the containers.conf the tests run Podman with. The CNI
// backend is the one that runs plugins; runc because crun refuses this
// kind of VM's hybrid cgroups; ulimits below the machine's hard limits
// (Podman's defaults exceed them and runc then fails to start the
// container).
const podmanConf = `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = %q
`

// newPodman sets up a Podman for ns whose networks are nets (ovlsw
// network names) on the node at socket, imports the test image, and
// registers the removal of every container it runs.
func newPodman(t *testing.T, ns *testbed.Netns, name, cniDir, socket, image string, nets ...string) *podmanHost {
	t.Helper()
	dir := stateDir(t, "podman-"+name)
	p := &podmanHost{t: t, ns: ns, dir: dir, env: []string{"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf")}}
	netDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(netDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(podmanConf, cniDir, netDir, filepath.Join(dir, "tmp"))
	if err := os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		// 0.4.0, as the configs runtimes ship often still say.
		list := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": %q, "plugins": [{"type": "ovlsw-cni", "network": %q, "socket": %q,
			"capabilities": {"ips": true, "mac": true, "aliases": true}}]}`, n, n, socket)
		if err := os.WriteFile(filepath.Join(netDir, n+".conflist"), []byte(list), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := p.podman(ctx, "rm", "-a", "-f", "-t", "0"); err != nil {
			t.Errorf("podman rm -af on %s: %v\n%s", name, err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := p.podman(ctx, "import", image, imageName()); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	return p
}

// podman runs podman with this host's storage and configuration.
func (p *podmanHost) podman(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"podman", "--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "vfs", "--tmpdir", filepath.Join(p.dir, "tmp")}, args...)
	return inHost(ctx, p.ns, p.env, argv...)
}

// must runs podman and fails the test if it fails.
func (p *podmanHost) must(ctx context.Context, args ...string) string {
	p.t.Helper()
	out, err := p.podman(ctx, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// pingFrom polls `ping -c 1` of dst (an address or a name) inside
// container until it answers or the deadline passes.
func pingFrom(ctx context.Context, t *testing.T, run func(context.Context, ...string) (string, error), container, dst string) {
	t.Helper()
	var out string
	var err error
	if !poll(20*time.Second, func() bool {
		out, err = run(ctx, "exec", container, "ping", "-c", "1", "-W", "1", dst)
		return err == nil
	}) {
		t.Fatalf("ping %s from %s: %v\n%s", dst, container, err, out)
	}
}

// tcpAcross sends a line over TCP from client to server's port 7000 (nc
// on both ends) and checks it arrives.
func tcpAcross(ctx context.Context, t *testing.T, srv, cli func(context.Context, ...string) (string, error), server, client, addr string) {
	t.Helper()
	if _, err := srv(ctx, "exec", "-d", server, "sh", "-c", "nc -l -p 7000 > /tmp/got"); err != nil {
		t.Fatal(err)
	}
	if !poll(20*time.Second, func() bool {
		_, err := cli(ctx, "exec", client, "sh", "-c", "echo across-"+client+" | nc -w 2 "+addr+" 7000")
		return err == nil
	}) {
		t.Fatalf("TCP from %s to %s:7000 never connected", client, addr)
	}
	var got string
	if !poll(10*time.Second, func() bool {
		got, _ = srv(ctx, "exec", server, "cat", "/tmp/got")
		return strings.TrimSpace(got) == "across-"+client
	}) {
		t.Errorf("TCP from %s to %s: server got %q", client, server, got)
	}
}

func endpointsOf(t *testing.T, n *node) []control.Endpoint {
	t.Helper()
	var eps []control.Endpoint
	if err := n.get("/v1/endpoints", &eps); err != nil {
		t.Fatal(err)
	}
	return eps
}

// TestE2EPodman runs containers with podman on two ovlsw nodes: ping and
// TCP across hosts, --ip and --mac-address honoured, names resolved
// through the switch, podman restart, network disconnect and connect, a
// second network, podman rm; nothing is left behind.
func TestE2EPodman(t *testing.T) {
	needTool(t, "podman", "podman")
	needTool(t, "runc", "runc")
	needTool(t, "nsenter", "util-linux")
	image := busyboxImage(t)
	cniDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(cniDir, "ovlsw-cni"), "github.com/ovlsw/ovlsw/cmd/ovlsw-cni").CombinedOutput(); err != nil {
		t.Fatalf("go build ovlsw-cni: %v\n%s", err, out)
	}

	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "pm1", "--bind", ul1.Addr().String(), "--dns-upstream", "none")
	n2 := startNode(t, h2, "pm2", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--dns-upstream", "none")
	n1.cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.1")
	n1.cli("network", "create", "db", "--vni", "4098", "--subnet", "10.0.10.0/24", "--gateway", "10.0.10.1")
	if !poll(30*time.Second, func() bool {
		var ns []control.Network
		return n2.get("/v1/networks", &ns) == nil && len(ns) == 2
	}) {
		t.Fatalf("networks on node 2:\n%s", n2.cli("network", "ls"))
	}
	ctx := testCtx(t, 4*time.Minute)
	p1 := newPodman(t, h1, "h1", cniDir, n1.socket, image, "web", "db")
	p2 := newPodman(t, h2, "h2", cniDir, n2.socket, image, "web", "db")

	pid := os.Getpid()
	pa, pb := fmt.Sprintf("pa%d", pid), fmt.Sprintf("pb%d", pid)
	p1.must(ctx, "run", "-d", "--name", pa, "--network", "web", "--ip", "10.0.9.50", "--mac-address", "02:42:0a:00:09:32", imageName(), "sleep", "600")
	p2.must(ctx, "run", "-d", "--name", pb, "--network", "web", imageName(), "sleep", "600")
	sandboxes := []string{p1.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", pa),
		p2.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", pb)}

	// --ip (a bare address in CNI_ARGS) and --mac-address (CNI_ARGS MAC).
	out := p1.must(ctx, "exec", pa, "ip", "addr", "show", "eth0")
	if !strings.Contains(out, "inet 10.0.9.50/24") || !strings.Contains(out, "link/ether 02:42:0a:00:09:32") {
		t.Errorf("eth0 of %s, want 10.0.9.50/24 and 02:42:0a:00:09:32:\n%s", pa, out)
	}

	// Across hosts by address and by name (the container's name is its
	// DNS name, answered by the switch), and TCP.
	pingFrom(ctx, t, p2.podman, pb, "10.0.9.50")
	pingFrom(ctx, t, p2.podman, pb, pa)
	pingFrom(ctx, t, p1.podman, pa, pb+".web")
	tcpAcross(ctx, t, p1.podman, p2.podman, pa, pb, pa)

	// podman restart: the same address comes back and traffic flows.
	p1.must(ctx, "restart", "-t", "0", pa)
	if out := p1.must(ctx, "exec", pa, "ip", "addr", "show", "eth0"); !strings.Contains(out, "inet 10.0.9.50/24") {
		t.Errorf("eth0 of %s after restart:\n%s", pa, out)
	}
	pingFrom(ctx, t, p2.podman, pb, pa)

	// disconnect and connect; a second network beside the first.
	p2.must(ctx, "network", "disconnect", "web", pb)
	if out, err := p2.podman(ctx, "exec", pb, "ip", "link", "show", "eth0"); err == nil {
		t.Errorf("eth0 still in %s after disconnect:\n%s", pb, out)
	}
	if eps := endpointsOf(t, n2); len(eps) != 0 {
		t.Errorf("endpoints on node 2 after disconnect: %s", jsonString(eps))
	}
	p2.must(ctx, "network", "connect", "web", pb)
	pingFrom(ctx, t, p2.podman, pb, pa)
	p1.must(ctx, "network", "connect", "db", pa)
	p2.must(ctx, "network", "connect", "db", pb)
	var dbAddr string
	for _, ep := range endpointsOf(t, n1) {
		if ep.Network == "db" {
			dbAddr = ep.Address.Addr().String()
		}
	}
	if dbAddr == "" {
		t.Fatalf("no db endpoint on node 1: %s", jsonString(endpointsOf(t, n1)))
	}
	pingFrom(ctx, t, p2.podman, pb, dbAddr)

	// podman rm: every endpoint, namespace and mount goes.
	p1.must(ctx, "rm", "-f", "-t", "0", pa)
	p2.must(ctx, "rm", "-f", "-t", "0", pb)
	for _, n := range []*node{n1, n2} {
		if eps := endpointsOf(t, n); len(eps) != 0 {
			t.Errorf("endpoints after podman rm: %s", jsonString(eps))
		}
	}
	for _, s := range sandboxes {
		if _, err := os.Stat(s); err == nil {
			t.Errorf("namespace %s still there after podman rm", s)
		}
	}
	for _, p := range []*podmanHost{p1, p2} {
		if ms := mountsUnder(p.dir); len(ms) != 0 {
			t.Errorf("mounts left after podman rm: %v", ms)
		}
	}
	_ = bed
}
