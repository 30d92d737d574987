package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// cniRuntime plays a container runtime: libcni executing the ovlsw-cni
// plugin from a plugin directory of its own, with a private result cache.
type cniRuntime struct {
	t   *testing.T
	cni *libcni.CNIConfig
}

// newCNIRuntime builds cmd/ovlsw-cni into a fresh plugin directory.
func newCNIRuntime(t *testing.T) *cniRuntime {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "ovlsw-cni"), "github.com/ovlsw/ovlsw/cmd/ovlsw-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ovlsw-cni: %v\n%s", err, out)
	}
	return &cniRuntime{t: t, cni: libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)}
}

// confList is a network config list with one ovlsw-cni plugin; extra is
// added to the plugin's object.
func (r *cniRuntime) confList(version, socket, network, extra string) *libcni.NetworkConfigList {
	r.t.Helper()
	list, err := libcni.ConfListFromBytes(fmt.Appendf(nil, `{
		"cniVersion": %q, "name": "ovlsw-e2e",
		"plugins": [{"type": "ovlsw-cni", "network": %q, "socket": %q, "capabilities": {"ips": true}%s}]
	}`, version, network, socket, extra))
	if err != nil {
		r.t.Fatal(err)
	}
	return list
}

// add runs ADD and returns the result as a 1.0 result.
func (r *cniRuntime) add(ctx context.Context, list *libcni.NetworkConfigList, rc *libcni.RuntimeConf) *types100.Result {
	r.t.Helper()
	res, err := r.cni.AddNetworkList(ctx, list, rc)
	if err != nil {
		r.t.Fatalf("ADD %s: %v", rc.ContainerID, err)
	}
	res100, err := types100.NewResultFromResult(res)
	if err != nil {
		r.t.Fatalf("ADD %s: result: %v", rc.ContainerID, err)
	}
	return res100
}

// cniCode is the CNI error code of err, or 0 if err is not a CNI error.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// checkResult checks an ADD result: one interface eth0 in sandbox, one
// address in 10.0.9.0/24 (want, if valid) via the gateway, the default
// route. It returns the address.
func checkResult(t *testing.T, res *types100.Result, sandbox string, want netip.Prefix) netip.Prefix {
	t.Helper()
	gw := netip.MustParseAddr("10.0.9.254")
	if len(res.Interfaces) != 1 || len(res.IPs) != 1 || len(res.Routes) != 1 {
		t.Fatalf("result: want one interface, address and route:\n%s", jsonString(res))
	}
	ifc, ip, route := res.Interfaces[0], res.IPs[0], res.Routes[0]
	if ifc.Name != "eth0" || ifc.Sandbox != sandbox || ifc.Mac == "" {
		t.Errorf("result interface %+v, want eth0 in %s with a MAC", ifc, sandbox)
	}
	a, _ := netip.AddrFromSlice(ip.Address.IP)
	ones, _ := ip.Address.Mask.Size()
	addr := netip.PrefixFrom(a.Unmap(), ones)
	if ip.Interface == nil || *ip.Interface != 0 || !netip.MustParsePrefix("10.0.9.0/24").Contains(addr.Addr()) || addr.Bits() != 24 ||
		(want.IsValid() && addr != want) {
		t.Errorf("result address %+v (%v), want interface 0 and %v", ip, addr, cmpOr(want, "10.0.9.0/24"))
	}
	if g, _ := netip.AddrFromSlice(ip.Gateway); g.Unmap() != gw {
		t.Errorf("result gateway %v, want %v", ip.Gateway, gw)
	}
	if g, _ := netip.AddrFromSlice(route.GW); route.Dst.String() != "0.0.0.0/0" || g.Unmap() != gw {
		t.Errorf("result route %v, want 0.0.0.0/0 via %v", route, gw)
	}
	return addr
}

func cmpOr(p netip.Prefix, s string) string {
	if p.IsValid() {
		return p.String()
	}
	return s
}

// TestE2ECNI drives the ovlsw-cni plugin through libcni as a container
// runtime does: ADD on two nodes, ping across, CHECK, DEL (twice), CHECK
// after DEL fails, the freed address is handed out again; a DEL without
// the namespace finds the endpoint by name; refusals and a missing daemon
// come back as CNI errors with the codes the plugin documents.
func TestE2ECNI(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "k1", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul1.Addr().String(), "--peer", ul2.Addr().String())
	n2 := startNode(t, h2, "k2", "--vni", "42", "--subnet", "10.0.9.0/24", "--gateway", "10.0.9.254",
		"--bind", ul2.Addr().String(), "--peer", ul1.Addr().String())
	ctx := testCtx(t, 2*time.Minute)
	rt := newCNIRuntime(t)
	c1, c2 := mustNetns(t, bed, "c1"), mustNetns(t, bed, "c2")
	list1 := rt.confList("1.0.0", n1.socket, "default", "")
	list2 := rt.confList("1.0.0", n2.socket, "default", "")
	if _, err := rt.cni.ValidateNetworkList(ctx, list1); err != nil {
		t.Fatalf("VALIDATE: %v", err)
	}

	// ADD: allocated on node 1, asked for through the "ips" capability on
	// node 2 (the nodes share no allocation state without gossip).
	pid := os.Getpid()
	rc1 := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("e2e-%d-c1", pid), NetNS: c1.Path, IfName: "eth0"}
	rc2 := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("e2e-%d-c2", pid), NetNS: c2.Path, IfName: "eth0",
		CapabilityArgs: map[string]any{"ips": []string{"10.0.9.100/24"}}}
	a1 := checkResult(t, rt.add(ctx, list1, rc1), c1.Path, netip.Prefix{})
	a2 := checkResult(t, rt.add(ctx, list2, rc2), c2.Path, netip.MustParsePrefix("10.0.9.100/24"))
	out, err := c1.Run(ctx, "ip", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, a1.String()) {
		t.Errorf("eth0 in c1: %q %v, want %v", out, err, a1)
	}
	if err := c1.WaitPing(ctx, a2.Addr(), 10*time.Second); err != nil {
		t.Fatalf("c1 -> c2 across nodes: %v\n%s", err, n1.proc.Output())
	}

	// CHECK passes, and notices a change behind the daemon's back.
	for _, c := range []struct {
		list *libcni.NetworkConfigList
		rc   *libcni.RuntimeConf
	}{{list1, rc1}, {list2, rc2}} {
		if err := rt.cni.CheckNetworkList(ctx, c.list, c.rc); err != nil {
			t.Errorf("CHECK %s: %v", c.rc.ContainerID, err)
		}
	}
	if _, err := c1.Run(ctx, "ip", "addr", "del", a1.String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := rt.cni.CheckNetworkList(ctx, list1, rc1); cniCode(err) != 101 || !strings.Contains(err.Error(), a1.String()) {
		t.Errorf("CHECK with the address removed: %v (code %d), want code 101 naming %v", err, cniCode(err), a1)
	}

	// DEL, and DEL again: both succeed; CHECK after DEL fails.
	if err := rt.cni.DelNetworkList(ctx, list1, rc1); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if bed.LinkExists(c1, "eth0") {
		t.Error("eth0 still in c1 after DEL")
	}
	if err := rt.cni.DelNetworkList(ctx, list1, rc1); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	if err := rt.cni.CheckNetworkList(ctx, list1, rc1); cniCode(err) != 101 {
		t.Errorf("CHECK after DEL: %v (code %d), want code 101", err, cniCode(err))
	}
	var eps []control.Endpoint
	if err := n1.get("/v1/endpoints", &eps); err != nil || len(eps) != 0 {
		t.Errorf("endpoints on node 1 after DEL: %v %s", err, jsonString(eps))
	}

	// The freed address is handed out again.
	c3 := mustNetns(t, bed, "c3")
	rc3 := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("e2e-%d-c3", pid), NetNS: c3.Path, IfName: "eth0"}
	checkResult(t, rt.add(ctx, list1, rc3), c3.Path, a1)
	if err := rt.cni.DelNetworkList(ctx, list1, rc3); err != nil {
		t.Errorf("DEL c3: %v", err)
	}

	// A DEL whose runtime lost the namespace path finds the endpoint by the
	// name ADD gave it.
	if err := rt.cni.DelNetworkList(ctx, list2, &libcni.RuntimeConf{ContainerID: rc2.ContainerID, IfName: "eth0"}); err != nil {
		t.Errorf("DEL without netns: %v", err)
	}
	if err := n2.get("/v1/endpoints", &eps); err != nil || len(eps) != 0 {
		t.Errorf("endpoints on node 2 after DEL without netns: %v %s", err, jsonString(eps))
	}

	// Every spec version a runtime may send, with the address and MAC as
	// Podman passes --ip and --mac-address (CNI_ARGS, the address bare):
	// libcni takes the result in the config's version; CHECK from 0.4.0,
	// GC and STATUS at 1.1.0.
	t.Run("versions", func(t *testing.T) {
		for i, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
			c := mustNetns(t, bed, fmt.Sprintf("v%d", i))
			addr, mac := fmt.Sprintf("10.0.9.%d", 150+i), fmt.Sprintf("02:42:0a:00:09:%02x", 150+i)
			rc := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("e2e-%d-v%d", pid, i), NetNS: c.Path, IfName: "eth0",
				Args: [][2]string{{"IgnoreUnknown", "1"}, {"IP", addr}, {"MAC", mac}}}
			list := rt.confList(v, n1.socket, "default", "")
			res, err := rt.cni.AddNetworkList(ctx, list, rc)
			if err != nil {
				t.Fatalf("ADD %s: %v", v, err)
			}
			if res.Version() != v {
				t.Errorf("ADD %s: result version %s", v, res.Version())
			}
			out, err := c.Run(ctx, "ip", "-o", "link", "show", "dev", "eth0")
			if err != nil || !strings.Contains(out, mac) {
				t.Errorf("%s: eth0 %q %v, want MAC %s", v, out, err, mac)
			}
			if out, err := c.Run(ctx, "ip", "-o", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(out, addr+"/24") {
				t.Errorf("%s: eth0 %q %v, want %s/24", v, out, err, addr)
			}
			if v >= "0.4.0" {
				if err := rt.cni.CheckNetworkList(ctx, list, rc); err != nil {
					t.Errorf("CHECK %s: %v", v, err)
				}
			}
			if v == "1.1.0" {
				if err := rt.cni.GCNetworkList(ctx, list, &libcni.GCArgs{}); err != nil {
					t.Errorf("GC %s: %v", v, err)
				}
			}
			if err := rt.cni.DelNetworkList(ctx, list, rc); err != nil {
				t.Errorf("DEL %s: %v", v, err)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		c4 := mustNetns(t, bed, "c4")
		rc4 := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("e2e-%d-c4", pid), NetNS: c4.Path, IfName: "eth0"}

		// A network the daemon does not have: refused, with its name.
		_, err := rt.cni.AddNetworkList(ctx, rt.confList("1.0.0", n1.socket, "nosuch", ""), rc4)
		if cniCode(err) != 100 || !strings.Contains(err.Error(), `"nosuch"`) {
			t.Errorf("ADD to a missing network: %v (code %d), want code 100 naming it", err, cniCode(err))
		}
		if bed.LinkExists(c4, "eth0") {
			t.Error("a refused ADD left eth0 behind")
		}
		// An ipam section: invalid config.
		_, err = rt.cni.AddNetworkList(ctx, rt.confList("1.0.0", n1.socket, "default", `, "ipam": {"type": "host-local"}`), rc4)
		if cniCode(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("ADD with ipam: %v (code %d), want %d", err, cniCode(err), types.ErrInvalidNetworkConfig)
		}
		// No daemon: ADD is "try again later", DEL succeeds (nothing can be
		// left), STATUS says the plugin is not available.
		none := filepath.Join(t.TempDir(), "none.sock")
		_, err = rt.cni.AddNetworkList(ctx, rt.confList("1.0.0", none, "default", ""), rc4)
		if cniCode(err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), none) {
			t.Errorf("ADD without a daemon: %v (code %d), want %d naming the socket", err, cniCode(err), types.ErrTryAgainLater)
		}
		if err := rt.cni.DelNetworkList(ctx, rt.confList("1.0.0", none, "default", ""), rc4); err != nil {
			t.Errorf("DEL without a daemon: %v", err)
		}
		// A namespace that is gone: nothing attached there, DEL succeeds.
		gone := &libcni.RuntimeConf{ContainerID: rc4.ContainerID, NetNS: fmt.Sprintf("/run/netns/ovlsw-e2e-gone-%d", pid), IfName: "eth0"}
		if err := rt.cni.DelNetworkList(ctx, list1, gone); err != nil {
			t.Errorf("DEL of a missing netns: %v", err)
		}
		if err := rt.cni.GetStatusNetworkList(ctx, rt.confList("1.1.0", none, "default", "")); cniCode(err) != 50 {
			t.Errorf("STATUS without a daemon: %v (code %d), want 50", err, cniCode(err))
		}
		if err := rt.cni.GetStatusNetworkList(ctx, rt.confList("1.1.0", n1.socket, "default", "")); err != nil {
			t.Errorf("STATUS: %v", err)
		}
	})

	n1.stop(bed)
	n2.stop(bed)
}
