package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// capture records what crosses ns's ul0 while fn runs, until enough says
// the capture holds what fn sent (or 10 s pass), and returns the inner
// Ethernet frames of the VXLAN datagrams in it.
func capture(t *testing.T, ns *testbed.Netns, fn func(), enough func([]gopacket.Packet) bool) []gopacket.Packet {
	t.Helper()
	file, stop := tcpdump(t, ns, "ul0")
	fn()
	var inner []gopacket.Packet
	poll(10*time.Second, func() bool { inner = readVXLAN(t, file); return enough(inner) })
	stop()
	return readVXLAN(t, file)
}

// tcpdump starts capturing the VXLAN datagrams (UDP port 4789) that cross
// dev in ns into a pcap file, waits until it listens, and returns the
// file and a function that ends the capture.
func tcpdump(t *testing.T, ns *testbed.Netns, dev string) (file string, stop func()) {
	t.Helper()
	file = filepath.Join(t.TempDir(), dev+".pcap")
	p, err := ns.Start(context.Background(), "tcpdump", "-i", dev, "--immediate-mode", "-U", "-n", "-w", file, "udp", "port", "4789")
	if err != nil {
		t.Fatal(err)
	}
	if !poll(10*time.Second, func() bool { return strings.Contains(p.Output(), "listening on") }) {
		t.Fatalf("tcpdump did not start:\n%s", p.Output())
	}
	return file, func() {
		t.Helper()
		p.Signal(syscall.SIGINT)
		if err := p.Wait(10 * time.Second); err != nil && !strings.Contains(p.Output(), "packets captured") {
			t.Fatalf("tcpdump: %v\n%s", err, p.Output())
		}
	}
}

// readVXLAN returns the inner frames of the VXLAN datagrams in a pcap file.
func readVXLAN(t *testing.T, file string) []gopacket.Packet {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil // the header is not written yet
	}
	var inner []gopacket.Packet
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break // EOF, or a packet tcpdump is still writing
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if vx, ok := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN); ok {
			inner = append(inner, gopacket.NewPacket(vx.Payload, layers.LayerTypeEthernet, gopacket.Default))
		}
	}
	return inner
}

// TestE2EProxy: with bindings known by gossip, pinging across nodes (IPv4
// and IPv6) puts no ARP request and no neighbour solicitation on the
// underlay: the proxy answers them. And an endpoint re-created with the
// same address and a new MAC is reached by a remote endpoint whose
// neighbour cache still held the old MAC: the gratuitous ARP updates it.
func TestE2EProxy(t *testing.T) {
	_, hosts, nodes, ov := threeNodes(t)
	ctx := testCtx(t, 2*time.Minute)
	v6 := func(i int) netip.Addr { return netip.MustParseAddr("fd92::" + string(rune('1'+i))) }
	for _, n := range nodes {
		if !poll(30*time.Second, func() bool { return len(gossipEntries(n)) == 2 }) {
			t.Fatalf("gossip did not converge:\n%s", n.cli("fdb"))
		}
	}
	// Host-port IPv6 addresses go through duplicate address detection
	// first; a tentative address drops what is sent to it.
	for _, h := range hosts {
		if !poll(10*time.Second, func() bool {
			out, err := h.Run(ctx, "ip", "-6", "addr", "show", "tentative")
			return err == nil && strings.TrimSpace(out) == ""
		}) {
			t.Fatalf("IPv6 addresses of %s stay tentative", h.Name)
		}
	}
	frames := capture(t, hosts[0], func() {
		if err := hosts[0].Ping(ctx, ov[1].Addr(), 3); err != nil {
			t.Errorf("IPv4 ping: %v", err)
		}
		if err := hosts[0].Ping(ctx, v6(1), 3); err != nil {
			out, _ := hosts[0].Run(ctx, "ip", "-6", "neigh")
			out2, _ := hosts[0].Run(ctx, "ip", "-6", "addr")
			t.Errorf("IPv6 ping: %v\n%s\n%s\n%s", err, out, out2, nodes[0].cli("fdb"))
		}
	}, func(fs []gopacket.Packet) bool { return countEchoes(fs) >= 12 })
	var questions int
	for _, f := range frames {
		if a, ok := f.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPRequest {
			questions++
		}
		if f.Layer(layers.LayerTypeICMPv6NeighborSolicitation) != nil {
			// Duplicate-address probes (from ::) are never answered by the
			// proxy: they must reach the address's owner, if any.
			if ip, ok := f.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok && !ip.SrcIP.IsUnspecified() {
				questions++
				t.Logf("NS on the underlay: %v", f)
			}
		}
	}
	icmp := countEchoes(frames)
	if icmp < 12 {
		t.Errorf("captured %d echo frames of %d, want at least 12: the capture saw too little to prove anything", icmp, len(frames))
	}
	if questions != 0 {
		t.Errorf("%d ARP requests or neighbour solicitations crossed the underlay", questions)
	}
	if st := nodes[0].status(); st.Proxy.ARPAnswered == 0 || st.Proxy.NDAnswered == 0 {
		t.Errorf("proxy counters: %+v", st.Proxy)
	}
}

func countEchoes(fs []gopacket.Packet) int {
	n := 0
	for _, f := range fs {
		if f.Layer(layers.LayerTypeICMPv4) != nil || f.Layer(layers.LayerTypeICMPv6Echo) != nil {
			n++
		}
	}
	return n
}

// TestE2ERecreatedEndpoint: a container re-created with the same address
// and a new MAC is reached by a remote container without flushing its
// neighbour cache: the remote node sends a gratuitous ARP on its ports when
// the binding moves, and the cached entry follows it.
func TestE2ERecreatedEndpoint(t *testing.T) {
	bed, _, nodes, _ := threeNodes(t)
	ctx := testCtx(t, 2*time.Minute)
	c1, c2, c2b := mustNetns(t, bed, "c1"), mustNetns(t, bed, "c2"), mustNetns(t, bed, "c2b")
	nodes[0].attach(c1, "--ip", "10.92.0.10/24")
	old := nodes[1].attach(c2, "--ip", "10.92.0.20/24")
	target := netip.MustParseAddr("10.92.0.20")
	if err := c1.WaitPing(ctx, target, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	neigh := func() string {
		out, _ := c1.Run(ctx, "ip", "neigh", "show", target.String())
		return out
	}
	if !strings.Contains(neigh(), old.MAC) {
		t.Fatalf("c1's cache before: %q, want %s", neigh(), old.MAC)
	}

	nodes[1].cli("detach", "--netns", c2.Name)
	fresh := nodes[1].attach(c2b, "--ip", "10.92.0.20/24")
	if fresh.MAC == old.MAC {
		t.Fatal("re-created endpoint got the same MAC: the test proves nothing")
	}
	// No traffic from c1 in between: only a gratuitous ARP can change its
	// cached entry.
	if !poll(15*time.Second, func() bool { return strings.Contains(neigh(), fresh.MAC) }) {
		t.Fatalf("c1's cache still %q, want %s\n%s", neigh(), fresh.MAC, nodes[0].cli("status"))
	}
	if err := c1.Ping(ctx, target, 3); err != nil {
		t.Fatalf("c1 -> re-created c2: %v", err)
	}
	if g := nodes[0].status().Proxy.GratuitousSent; g == 0 {
		t.Error("no gratuitous ARP counted on g1")
	}
}
