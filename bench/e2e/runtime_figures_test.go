package e2e

// This file holds the container runtimes' figures, on demand: how long
// from `docker run` / `podman run` until the new container answers a ping
// from a container on the other host, and a TCP stream between two Docker
// containers on ovlsw.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startToPing runs start (a `run -d` of a container at addr) and returns
// how long until a ping from the namespace at from gets an answer. The
// ping is iputils' inside the namespace (nsenter), every 50 ms.
func startToPing(ctx context.Context, t *testing.T, from, addr string, start func() error) time.Duration {
	t.Helper()
	t0 := time.Now()
	if err := start(); err != nil {
		t.Fatal(err)
	}
	if !poll(30*time.Second, func() bool {
		return exec.CommandContext(ctx, "nsenter", "--net="+from, "ping", "-c", "1", "-W", "0.05", "-q", addr).Run() == nil
	}) {
		t.Fatalf("%s never answered from %s", addr, from)
	}
	return time.Since(t0)
}

func figureRounds(t *testing.T) int {
	n, _ := strconv.Atoi(os.Getenv("OVLSW_RUNTIME_FIGURES"))
	if n <= 0 {
		t.Skip("set OVLSW_RUNTIME_FIGURES=N to measure container start to first ping across hosts over N rounds")
	}
	return n
}

// TestRuntimeFiguresDocker: start to first ping across hosts with Docker
// on ovlsw, and, as the reference, on Docker's own bridge network (one
// host: the bridge does not cross hosts); then iperf3 (the host's, in the
// containers' namespaces) TCP 1 stream between two Docker containers on
// ovlsw across hosts.
func TestRuntimeFiguresDocker(t *testing.T) {
	rounds := figureRounds(t)
	_, _, d1, d2, ctx := dockerTwoHosts(t)
	peer := "peer" + strconv.Itoa(os.Getpid())
	d2.must(ctx, "run", "-d", "--name", peer, "--network", "web", "--ip", "10.0.9.200", imageName(), "sleep", "3600")
	peerNS := d2.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", peer)
	var ovl []time.Duration
	for i := range rounds {
		name := fmt.Sprintf("f%d-%d", os.Getpid(), i)
		ovl = append(ovl, startToPing(ctx, t, peerNS, "10.0.9.60", func() error {
			_, err := d1.docker(ctx, "run", "-d", "--name", name, "--network", "web", "--ip", "10.0.9.60", imageName(), "sleep", "3600")
			return err
		}))
		d1.must(ctx, "rm", "-f", name)
	}
	t.Logf("docker run to first ping across hosts, ovlsw: %s", stats(ovl))

	d1.must(ctx, "network", "create", "-d", "bridge", "--subnet", "10.0.19.0/24", "br")
	local := "local" + strconv.Itoa(os.Getpid())
	d1.must(ctx, "run", "-d", "--name", local, "--network", "br", "--ip", "10.0.19.200", imageName(), "sleep", "3600")
	localNS := d1.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", local)
	var br []time.Duration
	for i := range rounds {
		name := fmt.Sprintf("b%d-%d", os.Getpid(), i)
		br = append(br, startToPing(ctx, t, localNS, "10.0.19.60", func() error {
			_, err := d1.docker(ctx, "run", "-d", "--name", name, "--network", "br", "--ip", "10.0.19.60", imageName(), "sleep", "3600")
			return err
		}))
		d1.must(ctx, "rm", "-f", name)
	}
	t.Logf("docker run to first ping on one host, Docker's bridge: %s", stats(br))
	d1.must(ctx, "rm", "-f", local)
	d1.must(ctx, "network", "rm", "br")

}

// TestRuntimeFiguresDockerTCP: iperf3 (the host's, in the containers'
// namespaces) TCP 1 stream between two Docker containers on ovlsw across
// hosts, for 10 s. Compare with `go run ./bench/harness --cases
// kernel,ovlsw,base` run right after it.
func TestRuntimeFiguresDockerTCP(t *testing.T) {
	figureRounds(t)
	iperf := needTool(t, "iperf3", "iperf3")
	_, _, d1, d2, ctx := dockerTwoHosts(t)
	pid := strconv.Itoa(os.Getpid())
	d1.must(ctx, "run", "-d", "--name", "srv"+pid, "--network", "web", "--ip", "10.0.9.61", imageName(), "sleep", "3600")
	d2.must(ctx, "run", "-d", "--name", "cli"+pid, "--network", "web", "--ip", "10.0.9.62", imageName(), "sleep", "3600")
	srvNS := d1.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", "srv"+pid)
	cliNS := d2.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", "cli"+pid)
	server := exec.CommandContext(ctx, "nsenter", "--net="+srvNS, iperf, "-s", "-1", "-B", "10.0.9.61")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	var out []byte
	var err error
	if !poll(20*time.Second, func() bool {
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+cliNS, iperf, "-c", "10.0.9.61", "-t", "10", "-P", "1", "-J").Output()
		return err == nil
	}) {
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	t.Logf("TCP 1 stream between Docker containers on ovlsw across hosts: %.2f Gbit/s", res.End.SumReceived.BitsPerSecond/1e9)
	if res.End.SumReceived.BitsPerSecond == 0 {
		t.Errorf("iperf3 measured nothing:\n%s", out)
	}
}

// TestRuntimeFiguresPodman: start to first ping across hosts with Podman
// on ovlsw.
func TestRuntimeFiguresPodman(t *testing.T) {
	rounds := figureRounds(t)
	needTool(t, "podman", "podman")
	image := busyboxImage(t)
	cniDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", cniDir+"/ovlsw-cni", "github.com/ovlsw/ovlsw/cmd/ovlsw-cni").CombinedOutput(); err != nil {
		t.Fatalf("go build ovlsw-cni: %v\n%s", err, out)
	}
	_, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "pf1", "--bind", ul1.Addr().String(), "--dns-upstream", "none")
	n2 := startNode(t, h2, "pf2", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--dns-upstream", "none")
	n1.cli("network", "create", "web", "--vni", "4097", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.1")
	if !poll(30*time.Second, func() bool {
		return len(n2.cli("network", "ls")) > 0 && strings.Contains(n2.cli("network", "ls"), "web")
	}) {
		t.Fatal("network web did not reach node 2")
	}
	ctx := testCtx(t, 10*time.Minute)
	p1 := newPodman(t, h1, "h1", cniDir, n1.socket, image, "web")
	p2 := newPodman(t, h2, "h2", cniDir, n2.socket, image, "web")
	peer := "peer" + strconv.Itoa(os.Getpid())
	p2.must(ctx, "run", "-d", "--name", peer, "--network", "web", "--ip", "10.0.9.200", imageName(), "sleep", "3600")
	peerNS := p2.must(ctx, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", peer)
	var ds []time.Duration
	for i := range rounds {
		name := fmt.Sprintf("f%d-%d", os.Getpid(), i)
		ds = append(ds, startToPing(ctx, t, peerNS, "10.0.9.60", func() error {
			_, err := p1.podman(ctx, "run", "-d", "--name", name, "--network", "web", "--ip", "10.0.9.60", imageName(), "sleep", "3600")
			return err
		}))
		p1.must(ctx, "rm", "-f", "-t", "0", name)
	}
	t.Logf("podman run to first ping across hosts, ovlsw: %s", stats(ds))
}
