package e2e

// End-to-end tests of encrypted networks (issue 16, docs/encryption.md):
// frames cross sealed and arrive intact, the underlay shows no payload,
// replays and plaintext are dropped, a rekey in the middle of a TCP stream
// loses nothing, and a node without the key exchanges nothing.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

// knownPayload is what the capture tests look for on the underlay.
const knownPayload = "OVLSW-KNOWN-PAYLOAD-do-not-leak"

// underlayCapture is tcpdump writing the VXLAN datagrams seen on a host's ul0 to a
// file.
type underlayCapture struct {
	proc *testbed.Proc
	file string
}

// startCapture starts tcpdump in ns and waits until it listens.
func startCapture(t *testing.T, ns *testbed.Netns, name string) *underlayCapture {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".pcap")
	t.Cleanup(func() { os.Remove(file) })
	p, err := ns.Start(context.Background(), "tcpdump", "-i", "ul0", "-n", "-U", "--immediate-mode", "-B", "16384", "-s", "0", "-w", file, "udp", "port", "4789")
	if err != nil {
		t.Fatal(err)
	}
	if !poll(10*time.Second, func() bool { return strings.Contains(p.Output(), "listening on") }) {
		t.Fatalf("tcpdump did not start:\n%s", p.Output())
	}
	return &underlayCapture{proc: p, file: file}
}

// stop ends the capture and returns the UDP payloads it holds, each with
// its source address.
func (c *underlayCapture) stop(t *testing.T) []udpPayload {
	t.Helper()
	if err := c.proc.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := c.proc.Wait(10 * time.Second); err != nil {
		t.Logf("tcpdump: %v", err)
	}
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pcapUDP(b)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

type udpPayload struct {
	from netip.Addr
	data []byte
}

// pcapUDP reads the IPv4 UDP payloads of a pcap file of Ethernet frames.
func pcapUDP(b []byte) ([]udpPayload, error) {
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap: %d bytes", len(b))
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: bad magic %x", b[:4])
	}
	if lt := order.Uint32(b[20:24]); lt != 1 {
		return nil, fmt.Errorf("pcap: link type %d, want Ethernet", lt)
	}
	var out []udpPayload
	for r := b[24:]; len(r) >= 16; {
		n := int(order.Uint32(r[8:12]))
		if len(r) < 16+n {
			break // the last record, cut by the stop
		}
		f := r[16 : 16+n]
		r = r[16+n:]
		if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		total := min(int(binary.BigEndian.Uint16(ip[2:4])), len(ip))
		from := netip.AddrFrom4([4]byte(ip[12:16]))
		out = append(out, udpPayload{from: from, data: bytes.Clone(ip[ihl+8 : total])})
	}
	return out, nil
}

// sendKnown sends n UDP datagrams carrying knownPayload from ns to dst
// (port 9, discard), from an unconnected socket, which the ICMP errors of
// a port nobody listens on do not stop.
func sendKnown(t *testing.T, ns *testbed.Netns, dst netip.Addr, n int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			if _, err := c.WriteToUDPAddrPort(fmt.Appendf(nil, "%s-%d", knownPayload, i), netip.AddrPortFrom(dst, 9)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sendFrom sends each packet from ns, from a socket bound to src (a
// member's own underlay address), to dst.
func sendFrom(t *testing.T, ns *testbed.Netns, src netip.Addr, dst netip.AddrPort, pkts ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range pkts {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// contains reports whether any payload holds s.
func contains(ps []udpPayload, s string) bool {
	for _, p := range ps {
		if bytes.Contains(p.data, []byte(s)) {
			return true
		}
	}
	return false
}

// keysKnown waits until every node holds the keys of the others.
func keysKnown(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		if !poll(20*time.Second, func() bool {
			e := n.status().Encryption
			return e != nil && e.PeersWithKeys >= len(nodes)-1
		}) {
			t.Fatalf("%s does not hold its peers' keys: %s", n.socket, jsonString(n.status().Encryption))
		}
	}
}

// TestE2EEncrypt: three nodes on an encrypted default network (the third
// started without --encrypted: the network is encrypted cluster-wide).
// Ping and a 64 MiB TCP stream arrive intact; a capture on the underlay
// holds sealed datagrams and not the known payload; those datagrams sent
// again from the sender's address are dropped as replays, and a plaintext
// VXLAN datagram from it as plaintext; the MTU is 32 bytes less and status
// and network inspect say encrypted.
func TestE2EEncrypt(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "e", 3)
	var nodes []*node
	for i := range 3 {
		args := []string{"--vni", "42", "--bind", ul[i].String(), "--address", fmt.Sprintf("10.96.0.%d/24", i+1)}
		if i < 2 {
			args = append(args, "--encrypted")
		}
		if i > 0 {
			args = append(args, "--join", ul[0].String())
		}
		nodes = append(nodes, startNode(t, hosts[i], fmt.Sprintf("e%d", i+1), args...))
	}
	n1, n2 := nodes[0], nodes[1]
	// The kernel cuts ovlsw's UDP GSO messages before the veth rather than
	// after, so the capture sees each datagram as sent (ovlsw still sends
	// GSO messages; replaying needs the datagrams one by one).
	for _, h := range hosts {
		if _, err := h.Run(context.Background(), "ethtool", "-K", "ul0", "tx-udp-segmentation", "off"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if !poll(20*time.Second, func() bool { return members(n) == 3 }) {
			t.Fatalf("%s sees %d members", n.socket, members(n))
		}
	}
	keysKnown(t, nodes...)
	ctx := testCtx(t, 3*time.Minute)
	for _, dst := range []string{"10.96.0.2", "10.96.0.3"} {
		if err := hosts[0].WaitPing(ctx, netip.MustParseAddr(dst), 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := hosts[2].Ping(ctx, netip.MustParseAddr("10.96.0.2"), 3); err != nil {
		t.Errorf("n3 to n2: %v", err)
	}
	// From here on nothing is dropped for a key. (Before, a frame sent
	// before a peer's key arrived by gossip was: no_key, never plaintext.)
	base := n2.status().Drops
	for _, n := range nodes {
		out := n.cli("network", "inspect", "default")
		if !strings.Contains(out, "true") {
			t.Errorf("network inspect does not say encrypted:\n%s", out)
		}
		st := n.status()
		if len(st.Ports) == 0 || st.Ports[0].MTU != 1500-50-seal.Overhead {
			t.Errorf("host port MTU %v, want %d", st.Ports, 1500-50-seal.Overhead)
		}
		if e := st.Encryption; e == nil || len(e.Networks) != 1 || e.Networks[0] != "default" {
			t.Errorf("status encryption %s", jsonString(st.Encryption))
		}
	}
	if out := n1.cli("status"); !strings.Contains(out, "encrypted networks: default") {
		t.Errorf("ovlsw status does not show encryption:\n%s", out)
	}

	if err := testbed.TCPStream(ctx, hosts[0], hosts[1], netip.MustParseAddr("10.96.0.2"), 64<<20); err != nil {
		t.Fatalf("64 MiB TCP stream: %v", err)
	}

	// The underlay, seen at n2, while n1 sends the known payload.
	capt := startCapture(t, hosts[1], "sealed")
	sendKnown(t, hosts[0], netip.MustParseAddr("10.96.0.2"), 50)
	// Barrier: a ping after the payload, answered, so the datagrams
	// before it have crossed.
	if err := hosts[0].Ping(ctx, netip.MustParseAddr("10.96.0.2"), 1); err != nil {
		t.Fatal(err)
	}
	got := capt.stop(t)
	var fromN1 [][]byte
	for _, p := range got {
		if p.from == ul[0] {
			fromN1 = append(fromN1, p.data)
		}
	}
	if len(fromN1) < 50 {
		fi, _ := os.Stat(capt.file)
		t.Fatalf("captured %d datagrams from n1 (of %d, file %d bytes), want at least 50\n%s", len(fromN1), len(got), fi.Size(), capt.proc.Output())
	}
	for _, d := range fromN1 {
		if !seal.IsSealed(d) {
			t.Fatalf("a datagram from n1 is not sealed: % x", d[:min(len(d), 16)])
		}
	}
	if contains(got, knownPayload) {
		t.Error("the known payload is visible on the underlay of an encrypted network")
	}

	// The captured datagrams again, from n1's own address: replays.
	before := n2.status().Drops
	sendFrom(t, hosts[0], ul[0], netip.AddrPortFrom(ul[1], vtep.DefaultPort), fromN1...)
	if !poll(10*time.Second, func() bool { return n2.status().Drops["replay"] >= before["replay"]+uint64(len(fromN1)) }) {
		t.Errorf("replay drops %d, want %d more", n2.status().Drops["replay"], len(fromN1))
	}

	// A handcrafted plaintext VXLAN datagram of VNI 42 from n1's address:
	// a broadcast frame from a MAC nobody has.
	plain := make([]byte, vtep.HeaderLen+14+28)
	_ = vtep.Header{VNI: 42}.Encode(plain)
	inner := plain[vtep.HeaderLen:]
	copy(inner[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(inner[6:12], []byte{0x02, 0xee, 0, 0, 0, 9})
	copy(inner[12:], []byte{0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 96, 0, 66, 10, 96, 0, 2, 8})
	sendFrom(t, hosts[0], ul[0], netip.AddrPortFrom(ul[1], vtep.DefaultPort), plain, plain, plain)
	if !poll(10*time.Second, func() bool { return n2.status().Drops["plaintext"] >= before["plaintext"]+3 }) {
		t.Errorf("plaintext drops %d, want %d more", n2.status().Drops["plaintext"], 3)
	}
	if _, ok := entryOf(n2, "02:ee:00:00:00:09"); ok {
		t.Error("n2 learned the MAC of a plaintext datagram")
	}
	after := n2.status().Drops
	for _, r := range []string{"auth_failed", "key_expired", "no_key"} {
		if after[r] != base[r] {
			t.Errorf("n2 dropped %d datagrams as %s", after[r]-base[r], r)
		}
	}
	// Traffic still flows after all that.
	if err := hosts[0].Ping(ctx, netip.MustParseAddr("10.96.0.2"), 2); err != nil {
		t.Errorf("after the replays: %v", err)
	}
}

// TestE2EEncryptPlainControl: the same capture on a plain network shows
// the known payload, so the check above would catch a leak.
func TestE2EEncryptPlainControl(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "q", 2)
	startNode(t, hosts[0], "q1", "--vni", "42", "--bind", ul[0].String(), "--address", "10.96.1.1/24")
	startNode(t, hosts[1], "q2", "--vni", "42", "--bind", ul[1].String(), "--address", "10.96.1.2/24", "--join", ul[0].String())
	ctx := testCtx(t, time.Minute)
	if err := hosts[0].WaitPing(ctx, netip.MustParseAddr("10.96.1.2"), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	capt := startCapture(t, hosts[1], "plain")
	sendKnown(t, hosts[0], netip.MustParseAddr("10.96.1.2"), 5)
	if err := hosts[0].Ping(ctx, netip.MustParseAddr("10.96.1.2"), 1); err != nil {
		t.Fatal(err)
	}
	if got := capt.stop(t); !contains(got, knownPayload) {
		t.Errorf("the known payload is not in the capture of a plain network (%d datagrams): the capture check proves nothing", len(got))
	}
}

// TestE2EEncryptRekey: with a two-second rekey interval, TCP streams run
// back to back across at least three rekeys, every one intact, and
// nothing is dropped for a key.
func TestE2EEncryptRekey(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "r", 2)
	n1 := startNode(t, hosts[0], "r1", "--vni", "42", "--encrypted", "--rekey-interval", "2s", "--bind", ul[0].String(), "--address", "10.96.2.1/24")
	n2 := startNode(t, hosts[1], "r2", "--vni", "42", "--encrypted", "--rekey-interval", "2s", "--bind", ul[1].String(), "--address", "10.96.2.2/24", "--join", ul[0].String())
	keysKnown(t, n1, n2)
	ctx := testCtx(t, 3*time.Minute)
	if err := hosts[0].WaitPing(ctx, netip.MustParseAddr("10.96.2.2"), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// Frames sent before a peer's key arrived by gossip were dropped as
	// no_key (never sent in plaintext); from here on none may be.
	base := map[*node]map[string]uint64{n1: n1.status().Drops, n2: n2.status().Drops}
	start := n1.status().Encryption.Epoch
	streams := 0
	for n1.status().Encryption.Epoch < start+3 {
		if err := testbed.TCPStream(ctx, hosts[0], hosts[1], netip.MustParseAddr("10.96.2.2"), 64<<20); err != nil {
			t.Fatalf("stream %d (epoch %d): %v", streams, n1.status().Encryption.Epoch, err)
		}
		streams++
	}
	t.Logf("%d streams of 64 MiB across epochs %d to %d", streams, start, n1.status().Encryption.Epoch)
	for _, n := range []*node{n1, n2} {
		d := n.status().Drops
		for _, r := range []string{"auth_failed", "key_expired", "no_key", "replay"} {
			if d[r] != base[n][r] {
				t.Errorf("%s dropped %d datagrams as %s across the rekeys", n.socket, d[r]-base[n][r], r)
			}
		}
	}
}

// TestE2EEncryptStaticKey: static peers (no common cluster) seal with a
// shared network key file: the two with the same key exchange frames, the
// one with another key exchanges none, and its datagrams fail
// authentication.
func TestE2EEncryptStaticKey(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "k", 3)
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	if err := os.WriteFile(keyA, []byte("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyB, []byte("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i, key := range []string{keyA, keyA, keyB} {
		args := []string{"--vni", "42", "--encrypted", "--network-key-file", key, "--bind", ul[i].String(), "--address", fmt.Sprintf("10.96.3.%d/24", i+1)}
		for j := range 3 {
			if j != i {
				args = append(args, "--peer", ul[j].String())
			}
		}
		nodes = append(nodes, startNode(t, hosts[i], fmt.Sprintf("k%d", i+1), args...))
	}
	ctx := testCtx(t, time.Minute)
	if err := hosts[0].WaitPing(ctx, netip.MustParseAddr("10.96.3.2"), 20*time.Second); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := hosts[0].Ping(ctx, netip.MustParseAddr("10.96.3.3"), 3); err == nil {
		t.Error("a node with another network key answered a ping")
	}
	if !poll(10*time.Second, func() bool {
		return nodes[2].status().Drops["auth_failed"] > 0 && nodes[0].status().Drops["auth_failed"] > 0
	}) {
		t.Errorf("auth_failed drops: n1 %d, n3 %d; want both > 0", nodes[0].status().Drops["auth_failed"], nodes[2].status().Drops["auth_failed"])
	}
	if e := nodes[0].status().Encryption; e == nil || e.Mode != "static network key" {
		t.Errorf("status encryption %s", jsonString(e))
	}
}

// TestE2EEncryptRestart: a node that stops and starts again (a new
// process: a new session, counters from 0, the same key pair from its
// file) is back on the encrypted network, in both directions, and the
// other node took its new datagrams without calling them replays.
func TestE2EEncryptRestart(t *testing.T) {
	bed := testbed.New(t)
	hosts, ul := lanHosts(t, bed, "t", 2)
	args2 := []string{"--vni", "42", "--encrypted", "--bind", ul[1].String(), "--address", "10.96.4.2/24", "--join", ul[0].String()}
	n1 := startNode(t, hosts[0], "t1", "--vni", "42", "--encrypted", "--bind", ul[0].String(), "--address", "10.96.4.1/24")
	n2 := startNode(t, hosts[1], "t2", args2...)
	keysKnown(t, n1, n2)
	ctx := testCtx(t, 2*time.Minute)
	if err := hosts[0].WaitPing(ctx, netip.MustParseAddr("10.96.4.2"), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	pub := n2.status().Encryption.PublicKey
	n2.stop(bed)
	n2 = startNodeToken(t, hosts[1], "t2", false, args2...) // it kept the cluster secret
	keysKnown(t, n1, n2)
	if got := n2.status().Encryption.PublicKey; got != pub {
		t.Errorf("public key %s after the restart, want %s from the key file", got, pub)
	}
	base := n1.status().Drops
	if err := hosts[1].WaitPing(ctx, netip.MustParseAddr("10.96.4.1"), 20*time.Second); err != nil {
		t.Fatalf("restarted node to n1: %v", err)
	}
	if err := testbed.TCPStream(ctx, hosts[0], hosts[1], netip.MustParseAddr("10.96.4.2"), 16<<20); err != nil {
		t.Fatalf("TCP after the restart: %v", err)
	}
	if d := n1.status().Drops; d["replay"] != base["replay"] || d["auth_failed"] != base["auth_failed"] {
		t.Errorf("n1 dropped %d replays and %d forgeries of the restarted node", d["replay"]-base["replay"], d["auth_failed"]-base["auth_failed"])
	}
}
