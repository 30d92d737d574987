package vtep_test

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep"
)

// TestTraceRoute: a packet to the router MAC is traced through routing's
// decision (routeDecide, as route acts on): forwarded to the holder of
// the address and switched on, answered at the gateway, dropped with an
// ICMP error for an unknown host and for a spent TTL.
func TestTraceRoute(t *testing.T) {
	r := newRig(t)
	r.sw.SetSubnets(42, []vtep.Subnet{
		{Prefix: netip.MustParsePrefix("10.0.9.0/24"), Gateway: netip.MustParseAddr("10.0.9.254")},
		{Prefix: netip.MustParsePrefix("10.0.10.0/24"), Gateway: netip.MustParseAddr("10.0.10.254")},
	})
	r.sw.SetGatewayAddrs(42, []netip.Addr{netip.MustParseAddr("10.0.9.254"), netip.MustParseAddr("10.0.10.254")})
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		Node: "nodeB", IPs: []netip.Addr{netip.MustParseAddr("10.0.10.2")}})
	rmac := vtep.RouterMAC(42)
	ipFrame := func(dst string, ttl uint8) []byte {
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: netip.MustParseAddr("10.0.9.1").AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
		_ = udp.SetNetworkLayerForChecksum(ip)
		return serialize(t, &layers.Ethernet{SrcMAC: mac1[:], DstMAC: rmac[:], EthernetType: layers.EthernetTypeIPv4}, ip, udp)
	}
	for _, tc := range []struct {
		name, dst      string
		ttl            uint8
		verdict, drop  string
		route, fdbStep string
	}{
		{"forward", "10.0.10.2", 64, "remote", "", "forward", "remote"},
		{"gateway", "10.0.9.254", 64, "answered", "", "gateway", ""},
		{"unknown host", "10.0.10.77", 64, "drop", "no_route", "drop", ""},
		{"ttl", "10.0.10.2", 1, "drop", "ttl_exceeded", "drop", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := r.sw.Trace(1, ipFrame(tc.dst, tc.ttl))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, s := range tr.Steps {
				got[s.Stage] = s.Result
			}
			if tr.Verdict != tc.verdict || tr.Drop != tc.drop || got["route"] != tc.route || got["fdb"] != tc.fdbStep {
				t.Errorf("trace: %s %s %+v", tr.Verdict, tr.Drop, tr.Steps)
			}
			if tc.name == "forward" && (len(tr.Out) != 1 || tr.Out[0].VTEP != peerB) {
				t.Errorf("routed copy leaves by %+v, want %v", tr.Out, peerB)
			}
		})
	}
	if got := r.sw.RouteStats(); got != (vtep.RouteStats{}) {
		t.Errorf("tracing counted routing work: %+v", got)
	}
	r.expectQuiet(r.p1, r.p2, r.p3)
}
