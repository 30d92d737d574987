package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// TestE2ETwoNodes: two ovlsw nodes on a veth underlay ping each other both
// ways, a 64 MiB TCP stream arrives byte-identical, status and fdb show what
// happened, and SIGTERM leaves no TAP and no socket.
func TestE2ETwoNodes(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "n1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())
	n2 := startNode(t, h2, "n2", "--vni", "42", "--bind", ul2.Addr().String(), "--peer", ul1.Addr().String(), "--address", ov2.String())
	ctx := testCtx(t, 2*time.Minute)

	if err := h1.WaitPing(ctx, ov2.Addr(), 10*time.Second); err != nil {
		t.Fatalf("n1 -> n2: %v\nn1:\n%s\nn2:\n%s", err, n1.proc.Output(), n2.proc.Output())
	}
	if err := h2.Ping(ctx, ov1.Addr(), 3); err != nil {
		t.Fatalf("n2 -> n1: %v", err)
	}
	if err := testbed.TCPStream(ctx, h1, h2, ov2.Addr(), 64<<20); err != nil {
		t.Fatalf("64 MiB stream n1 -> n2: %v\n%s", err, jsonString(n1.status()))
	}

	if fi, err := os.Stat(n1.socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	st := n1.status()
	if len(st.Ports) != 1 || st.Ports[0].Name != n1.tap || st.Ports[0].MTU != 1450 || st.Ports[0].RxBytes < 64<<20 {
		t.Errorf("n1 ports: %s", jsonString(st.Ports))
	}
	if len(st.Peers) != 1 || st.Peers[0].Addr.Addr() != ul2.Addr() || st.Peers[0].TxBytes < 64<<20 || st.Peers[0].RxFrames == 0 {
		t.Errorf("n1 peers: %s", jsonString(st.Peers))
	}
	// The fast path is on unless the offload matrix turned it off, and
	// status says which.
	if off := os.Getenv("OVLSW_E2E_OFFLOAD") == "off"; off {
		if o := st.Offload; o.TAP != "off" || o.UDP != "off" || o.GRO {
			t.Errorf("with --offload=off, status offload: %+v", o)
		}
	} else if o := st.Offload; !strings.Contains(o.TAP, "tso4") || !strings.Contains(o.UDP, "gso") || !strings.Contains(o.UDP, "gro") || !o.GRO {
		t.Errorf("status offload %+v: want TSO on the TAP, UDP GSO and GRO, userspace GRO (this kernel has them all)", o)
	}
	// n1 learned n2's TAP MAC behind n2's VTEP, and its own locally.
	var local, learned int
	for _, e := range n1.fdb() {
		switch {
		case e.Origin == "local" && e.Port == n1.tap:
			local++
		case e.Origin == "learned" && e.VTEP == ul2.Addr().String()+":4789":
			learned++
		}
	}
	if local != 1 || learned != 1 {
		t.Errorf("n1 fdb: %d local, %d learned; want 1 and 1:\n%s", local, learned, n1.cli("fdb"))
	}
	// The human-readable forms carry the same facts.
	if out := n1.cli("status"); !strings.Contains(out, n1.tap) || !strings.Contains(out, "not_member") || !strings.Contains(out, "offload") {
		t.Errorf("ovlsw status:\n%s", out)
	}
	if out := n1.cli("fdb"); !strings.Contains(out, "learned") || !strings.Contains(out, "vtep "+ul2.Addr().String()) {
		t.Errorf("ovlsw fdb:\n%s", out)
	}

	n1.stop(bed)
	n2.stop(bed)
}

// TestE2EKernelInterop: an ovlsw node and a Linux kernel vxlan device
// (nolearning with a static all-zeros fdb entry, and learning) exchange
// ping and TCP in both directions.
func TestE2EKernelInterop(t *testing.T) {
	for _, learning := range []bool{false, true} {
		t.Run(fmt.Sprintf("learning=%v", learning), func(t *testing.T) {
			bed, h1, h2 := twoHosts(t)
			n1 := startNode(t, h1, "k1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())
			err := testbed.KernelVXLAN(h2, testbed.VXLANOpts{
				Name: "vx42", VNI: 42, Local: ul2.Addr(), Remotes: []netip.Addr{ul1.Addr()},
				Learning: learning, Address: ov2,
			})
			if err != nil {
				t.Fatal(err)
			}
			kernelExchange(t, n1, h1, h2)
			n1.stop(bed)
		})
	}
}

// kernelExchange checks that ovlsw node n1 in h1 (overlay address ov1)
// and a kernel vxlan device in h2 (ov2) exchange ping and a 16 MiB TCP
// stream in both directions.
func kernelExchange(t *testing.T, n1 *node, h1, h2 *testbed.Netns) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	if err := h1.WaitPing(ctx, ov2.Addr(), 10*time.Second); err != nil {
		t.Fatalf("ovlsw -> kernel: %v\n%s", err, jsonString(n1.status()))
	}
	if err := h2.Ping(ctx, ov1.Addr(), 3); err != nil {
		t.Fatalf("kernel -> ovlsw: %v", err)
	}
	if err := testbed.TCPStream(ctx, h1, h2, ov2.Addr(), 16<<20); err != nil {
		t.Fatalf("TCP ovlsw -> kernel: %v\n%s", err, jsonString(n1.status()))
	}
	if err := testbed.TCPStream(ctx, h2, h1, ov1.Addr(), 16<<20); err != nil {
		t.Fatalf("TCP kernel -> ovlsw: %v\n%s", err, jsonString(n1.status()))
	}
}

// TestE2EVNIIsolation: a node on VNI 42 and a node on VNI 43 share an
// underlay and a subnet but cannot reach each other; the VNI 43 node counts
// VNI 42's frames as unknown_vni.
func TestE2EVNIIsolation(t *testing.T) {
	bed, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "i1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())
	n2 := startNode(t, h2, "i2", "--vni", "43", "--bind", ul2.Addr().String(), "--peer", ul1.Addr().String(), "--address", ov2.String())
	ctx := testCtx(t, time.Minute)
	if err := h1.Ping(ctx, ov2.Addr(), 3); err == nil {
		t.Fatal("VNI 42 reached VNI 43")
	}
	if got := n2.status().Drops["unknown_vni"]; got == 0 {
		t.Errorf("VNI 43 node counted no unknown_vni drops: %s", jsonString(n2.status()))
	}
	if got := n1.status().Peers[0].TxFrames; got == 0 {
		t.Error("VNI 42 node sent nothing: the test proves nothing")
	}
	n1.stop(bed)
	n2.stop(bed)
}
