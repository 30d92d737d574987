package e2e

// This file holds the Docker end-to-end test: dockerd on two ovlsw nodes,
// each a host namespace with a dockerd of its own (data and exec roots,
// API socket) and an ovlsw-docker plugin talking to that node's daemon,
// found by dockerd through a spec file named for the host.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/cmd/control"
)

// dockerHost is one host's dockerd and ovlsw-docker plugin.
type dockerHost struct {
	t       *testing.T
	ns      *testbed.Netns
	dir     string
	client  string // the docker CLI
	driver  string // the plugin's name, which is the driver's and the IPAM driver's
	dockerd *exec.Cmd
	done    chan struct{}
	plugin  *testbed.Proc
}

// dockerClient is the docker CLI matching Debian's dockerd (API 1.41):
// /usr/bin/docker from docker.io, else the first on PATH.
func dockerClient(t *testing.T) string {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	return needTool(t, "docker", "docker.io")
}

// newDockerHost starts the plugin (binary plugin) for the node at socket
// and a dockerd in ns, and imports the test image.
func newDockerHost(t *testing.T, ns *testbed.Netns, dir, name, plugin, socket, image string) *dockerHost {
	t.Helper()
	h := &dockerHost{t: t, ns: ns, dir: dir, client: dockerClient(t), driver: fmt.Sprintf("ovlsw%d%s", os.Getpid(), name)}

	// The plugin, and the spec file dockerd finds it by (dockerd reads
	// only the system plugin directories).
	pluginSock := filepath.Join(dir, "plugin.sock")
	p, err := ns.Start(context.Background(), plugin, "--plugin-socket", pluginSock, "--socket", socket,
		"--netns", ns.Path, "--state", filepath.Join(dir, "plugin.json"), "--docker-host", "unix://"+filepath.Join(dir, "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	h.plugin = p
	spec := filepath.Join("/etc/docker/plugins", h.driver+".spec")
	t.Cleanup(func() { os.Remove(spec) })
	if err := os.MkdirAll(filepath.Dir(spec), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec, []byte("unix://"+pluginSock+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !poll(10*time.Second, func() bool { _, err := os.Stat(pluginSock); return err == nil }) {
		t.Fatalf("ovlsw-docker did not listen on %s:\n%s", pluginSock, p.Output())
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if h.running() {
			if out, err := h.docker(ctx, "ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
				if out, err := h.docker(ctx, append([]string{"rm", "-f"}, strings.Fields(out)...)...); err != nil {
					t.Errorf("docker rm on %s: %v\n%s", name, err, out)
				}
			}
			h.stopDockerd()
		}
	})
	h.startDockerd()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := h.docker(ctx, "import", image, imageName()); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	return h
}

// startDockerd runs dockerd in the host namespace through nsenter (`ip
// netns exec` remounts /sys and dockerd then fails), with no bridge, no
// iptables and storage of its own, and waits until it answers.
func (h *dockerHost) startDockerd() {
	h.t.Helper()
	d := h.dir
	cmd := exec.Command("nsenter", "--net="+h.ns.Path, "--", "dockerd", "--config-file", filepath.Join(d, "daemon.json"),
		"--data-root", filepath.Join(d, "data"), "--exec-root", filepath.Join(d, "exec"), "-H", "unix://"+filepath.Join(d, "docker.sock"),
		"--pidfile", filepath.Join(d, "docker.pid"), "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--userland-proxy=false", "--storage-driver", "vfs", "--log-level", "warn")
	log, err := os.OpenFile(filepath.Join(d, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.dockerd, h.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(h.done)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !poll(45*time.Second, func() bool {
		_, err := h.docker(ctx, "version")
		return err == nil
	}) {
		h.t.Fatalf("dockerd on %s did not answer:\n%s", h.ns.Name, h.log())
	}
}

func (h *dockerHost) running() bool {
	if h.done == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// stopDockerd stops dockerd with SIGTERM (its containers are stopped and
// their endpoints deleted), then SIGKILLs its process group if it has not
// exited within a minute.
func (h *dockerHost) stopDockerd() {
	h.t.Helper()
	_ = h.dockerd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(time.Minute):
		h.t.Errorf("dockerd on %s did not exit on SIGTERM", h.ns.Name)
		_ = syscall.Kill(-h.dockerd.Process.Pid, syscall.SIGKILL)
		<-h.done
	}
}

func (h *dockerHost) log() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "dockerd.log"))
	return string(b[max(0, len(b)-4000):])
}

// docker runs the docker CLI against this host's dockerd.
func (h *dockerHost) docker(ctx context.Context, args ...string) (string, error) {
	return inHost(ctx, h.ns, nil, append([]string{h.client, "-H", "unix://" + filepath.Join(h.dir, "docker.sock")}, args...)...)
}

func (h *dockerHost) must(ctx context.Context, args ...string) string {
	h.t.Helper()
	out, err := h.docker(ctx, args...)
	if err != nil {
		h.t.Fatalf("%v\n%s\nplugin:\n%s", err, h.log(), h.plugin.Output())
	}
	return strings.TrimSpace(out)
}

// createNetwork creates Docker network web on ovlsw network web.
func (h *dockerHost) createNetwork(ctx context.Context) {
	h.t.Helper()
	h.createNetworkNamed(ctx, "web", "10.0.9.0/24", "10.0.9.1")
}

// createNetworkNamed creates Docker network name on the ovlsw network of
// that name.
func (h *dockerHost) createNetworkNamed(ctx context.Context, name, subnet, gateway string) {
	h.t.Helper()
	h.must(ctx, "network", "create", "-d", h.driver, "--ipam-driver", h.driver, "--subnet", subnet, "--gateway", gateway,
		"-o", "ovlsw.network="+name, name)
}

func buildTo(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// dockerNodeArgs are the flags of the two nodes of dockerTwoHosts.
var dockerNodeArgs = [2][]string{
	{"--bind", ul1.Addr().String(), "--dns-upstream", "none"},
	{"--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--dns-upstream", "none"},
}

// dockerTwoHosts is two ovlsw nodes with a dockerd each and Docker network
// web on ovlsw network web on both.
func dockerTwoHosts(t *testing.T) (n1, n2 *node, d1, d2 *dockerHost, ctx context.Context) {
	t.Helper()
	needTool(t, "dockerd", "docker.io")
	needTool(t, "nsenter", "util-linux")
	image := busyboxImage(t)
	plugin := buildTo(t, "github.com/ovlsw/ovlsw/cmd/ovlsw-docker")
	_, h1, h2 := twoHosts(t)
	dirs := [2]string{stateDir(t, "docker-h1"), stateDir(t, "docker-h2")}
	n1 = startNode(t, h1, "dk1", dockerNodeArgs[0]...)
	n2 = startNode(t, h2, "dk2", dockerNodeArgs[1]...)
	ctx = testCtx(t, 5*time.Minute)
	d1 = newDockerHost(t, h1, dirs[0], "h1", plugin, n1.socket, image)
	d2 = newDockerHost(t, h2, dirs[1], "h2", plugin, n2.socket, image)
	d1.createNetwork(ctx)
	if !poll(30*time.Second, func() bool {
		var ns []control.Network
		return n2.get("/v1/networks", &ns) == nil && len(ns) == 1
	}) {
		t.Fatalf("network web did not reach node 2:\n%s", n2.cli("network", "ls"))
	}
	d2.createNetwork(ctx)
	return n1, n2, d1, d2, ctx
}

// TestE2EDocker runs containers with dockerd on two ovlsw nodes through
// the ovlsw-docker network and IPAM driver: ping and TCP across hosts,
// --ip and --mac-address honoured, an address in use on the other host
// refused, names across hosts through --dns GATEWAY, an upgrade (SIGUSR2
// restart) of a node, docker restart,
// network disconnect and connect, a second network, a dockerd restart,
// docker rm and network rm; nothing is left behind.
func TestE2EDocker(t *testing.T) {
	n1, n2, d1, d2, ctx := dockerTwoHosts(t)
	pid := os.Getpid()
	da, db := fmt.Sprintf("da%d", pid), fmt.Sprintf("db%d", pid)
	d1.must(ctx, "run", "-d", "--name", da, "--network", "web", "--ip", "10.0.9.60", "--mac-address", "02:42:0a:00:09:3c",
		"--dns", "10.0.9.1", imageName(), "sleep", "600")
	d2.must(ctx, "run", "-d", "--name", db, "--network", "web", "--dns", "10.0.9.1", imageName(), "sleep", "600")

	out := d1.must(ctx, "exec", da, "ip", "addr", "show", "eth0")
	if !strings.Contains(out, "inet 10.0.9.60/24") || !strings.Contains(out, "link/ether 02:42:0a:00:09:3c") {
		t.Errorf("eth0 of %s, want 10.0.9.60/24 and 02:42:0a:00:09:3c:\n%s", da, out)
	}
	dbAddr := d2.must(ctx, "inspect", "--format", "{{.NetworkSettings.Networks.web.IPAddress}}", db)
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")
	pingFrom(ctx, t, d1.docker, da, dbAddr)
	tcpAcross(ctx, t, d1.docker, d2.docker, da, db, "10.0.9.60")

	// Names across hosts: Docker's resolver forwards what it does not know
	// to --dns 10.0.9.1, the switch, which has the containers' names.
	pingFrom(ctx, t, d2.docker, db, da)
	pingFrom(ctx, t, d1.docker, da, db)

	// Cluster-wide IPAM: host 2 does not hand out host 1's address.
	if out, err := d2.docker(ctx, "run", "-d", "--name", fmt.Sprintf("dc%d", pid), "--network", "web", "--ip", "10.0.9.60",
		imageName(), "sleep", "600"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("docker run --ip 10.0.9.60 on host 2: %v %s, want refused as in use", err, out)
	}
	d2.docker(ctx, "rm", "-f", fmt.Sprintf("dc%d", pid))

	// An upgrade of node 1 (SIGUSR2, then ovlsw up again): it takes the
	// port back from inside the container, where the plugin told it
	// Docker moved it.
	if !poll(30*time.Second, func() bool {
		eps := endpointsOf(t, n1)
		return len(eps) == 1 && eps[0].IfName == "eth0"
	}) {
		t.Fatalf("the node never learnt where Docker moved the interface: %s\nplugin:\n%s", jsonString(endpointsOf(t, n1)), d1.plugin.Output())
	}
	if err := n1.proc.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if err := n1.proc.Wait(10 * time.Second); err != nil {
		t.Fatalf("ovlsw after SIGUSR2: %v", err)
	}
	n1 = startNode(t, n1.ns, "dk1", append(dockerNodeArgs[0], "--join", ul2.Addr().String())...)
	if eps := endpointsOf(t, n1); len(eps) != 1 {
		t.Fatalf("endpoints after the restart: %s\n%s", jsonString(eps), n1.proc.Output())
	}
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")

	// docker restart.
	d1.must(ctx, "restart", "-t", "0", da)
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")

	// disconnect and connect.
	d2.must(ctx, "network", "disconnect", "web", db)
	if eps := endpointsOf(t, n2); len(eps) != 0 {
		t.Errorf("endpoints on node 2 after disconnect: %s", jsonString(eps))
	}
	d2.must(ctx, "network", "connect", "web", db)
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")

	// A second network beside the first.
	d1.createNetworkNamed(ctx, "db", "10.0.10.0/24", "10.0.10.1")
	if !poll(30*time.Second, func() bool {
		var ns []control.Network
		return n2.get("/v1/networks", &ns) == nil && len(ns) == 2
	}) {
		t.Fatalf("network db did not reach node 2:\n%s", n2.cli("network", "ls"))
	}
	d2.createNetworkNamed(ctx, "db", "10.0.10.0/24", "10.0.10.1")
	d1.must(ctx, "network", "connect", "--ip", "10.0.10.60", "db", da)
	d2.must(ctx, "network", "connect", "db", db)
	pingFrom(ctx, t, d2.docker, db, "10.0.10.60")
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")

	// dockerd restart: its containers stop and their endpoints go; started
	// again, they are back on the overlay.
	d1.stopDockerd()
	if eps := endpointsOf(t, n1); len(eps) != 0 {
		t.Errorf("endpoints on node 1 with dockerd stopped: %s", jsonString(eps))
	}
	d1.startDockerd()
	d1.must(ctx, "start", da)
	pingFrom(ctx, t, d2.docker, db, "10.0.9.60")

	// docker rm and network rm leave nothing.
	d1.must(ctx, "rm", "-f", da)
	d2.must(ctx, "rm", "-f", db)
	for i, n := range []*node{n1, n2} {
		if eps := endpointsOf(t, n); len(eps) != 0 {
			t.Errorf("endpoints on node %d after docker rm: %s", i+1, jsonString(eps))
		}
	}
	for _, d := range []*dockerHost{d1, d2} {
		d.must(ctx, "network", "rm", "web", "db")
		for _, m := range mountsUnder(d.dir) {
			if strings.Contains(m, "/netns/") {
				t.Errorf("namespace mount left after docker rm: %s", m)
			}
		}
		if out, err := d.ns.Run(ctx, "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "ovd") {
			t.Errorf("links in %s after docker rm: %v\n%s", d.ns.Name, err, out)
		}
	}
}
