package main

// This file holds the wireguard-go build (issue 16's comparison):
// wireguard-go, built from the Go module proxy at a pinned version, as a
// tunnel between the same two host namespaces over the same veth, each end
// configured through its UAPI socket (no wireguard-tools needed).
//
// Design notes: WireGuard is a layer-3 tunnel, so there are no containers
// and no Ethernet: the pair is host namespace to host namespace over the
// wg devices (MTU 1420, WireGuard's default on a 1500 underlay), like the
// underlay build. The binary is built once per run into a temporary
// directory with `go install module@version`, which leaves this module's
// go.mod alone.

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	// buildWireGuard is wireguard-go between the host namespaces.
	buildWireGuard = "wireguard-go"
	// wireguardModule is the version of wireguard-go measured: the newest
	// on the module proxy when this was written.
	wireguardModule = "golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446"
	// wgPort is both ends' listen port; wgMTU is wireguard-go's default
	// MTU, the most a 1500-byte IPv4 underlay carries (80 bytes of
	// headers: IPv6 outer worst case).
	wgPort = 51820
	wgMTU  = 1420
)

// wireguardBinary builds wireguard-go once per run and returns its path.
func (h *harness) wireguardBinary(ctx context.Context) (string, error) {
	if h.wgBin != "" {
		return h.wgBin, nil
	}
	dir, err := os.MkdirTemp("", "ovlsw-bench-wg-")
	if err != nil {
		return "", err
	}
	h.wgDir = dir
	cmd := exec.CommandContext(ctx, "go", "install", wireguardModule)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v: %s", wireguardModule, err, strings.TrimSpace(string(out)))
	}
	h.wgBin = filepath.Join(dir, "wireguard")
	h.rep.note("wireguard-go: " + wireguardModule + ", built with go install; host namespace to host namespace over wg devices (MTU 1420), no containers")
	return h.wgBin, nil
}

// buildWireGuardTopo starts wireguard-go on both hosts and wires them as
// each other's peer; npairs pairs all run host to host.
func (h *harness) buildWireGuardTopo(ctx context.Context, t *topo, npairs int) error {
	bin, err := h.wireguardBinary(ctx)
	if err != nil {
		return err
	}
	uls := [2]netip.Prefix{ul1, ul2}
	var privs [2]*ecdh.PrivateKey
	for side := range 2 {
		if privs[side], err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return err
		}
	}
	var eps [2]endpoint
	for side := range 2 {
		ns := t.hosts[side]
		dev := fmt.Sprintf("wg%d", side+1) // distinct: the UAPI sockets share /var/run/wireguard
		proc, err := ns.Start(ctx, bin, "-f", dev)
		if err != nil {
			return err
		}
		sock := filepath.Join("/var/run/wireguard", dev+".sock")
		deadline := time.Now().Add(readyTimeout)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) || proc.Exited() {
				return fmt.Errorf("wireguard-go %s did not start: %s", dev, proc.Output())
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		peer := uls[1-side].Addr()
		addr := overlayAddr(side+1, 0)
		conf := fmt.Sprintf("set=1\nprivate_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nallowed_ip=%s/32\n\n",
			hex.EncodeToString(privs[side].Bytes()), wgPort, hex.EncodeToString(privs[1-side].PublicKey().Bytes()),
			netip.AddrPortFrom(peer, wgPort), overlayAddr(2-side, 0).Addr())
		if err := wgConfigure(sock, conf); err != nil {
			return fmt.Errorf("configure %s: %w", dev, err)
		}
		for _, argv := range [][]string{
			{"ip", "address", "add", addr.String(), "dev", dev},
			{"ip", "link", "set", "dev", dev, "mtu", fmt.Sprint(wgMTU), "up"},
		} {
			if _, err := ns.Run(ctx, argv...); err != nil {
				return err
			}
		}
		eps[side] = endpoint{ns, addr.Addr(), dev}
	}
	for range npairs {
		t.pairs = append(t.pairs, pair{src: eps[0], dst: eps[1]})
	}
	return nil
}

// wgConfigure sends a UAPI set operation and checks its errno.
func wgConfigure(sock, conf string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(conf)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "errno=0" {
		return fmt.Errorf("wireguard-go answered %q", strings.TrimSpace(line))
	}
	return nil
}
