package vtep_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
)

// TestTrace: each decision path of the TAP -> wire path, traced over the
// fake switch, and the trace changes nothing (no learning, no counters).
func TestTrace(t *testing.T) {
	r := newRig(t)
	macL := fdb.MAC{0x02, 0, 0, 0, 0, 0x0c}
	secMAC := fdb.MAC{0x02, 0, 0, 0, 0, 0x5e}
	sec, err := r.sw.AddPort(vtep.PortConfig{Name: "sec", VNI: 42, Device: taptest.New("sec", 1450), Secure: true,
		MAC: secMAC, IPs: []netip.Addr{netip.MustParseAddr("10.0.9.5")}})
	if err != nil {
		t.Fatal(err)
	}
	r.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 42, MAC: macR}, Location: fdb.Location{VTEP: peerB}, Origin: fdb.OriginGossip,
		Node: "nodeB", Seq: 3, IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	r.fdb.Learn(fdb.Key{VNI: 42, MAC: mac2}, fdb.Location{Port: 2}, fdb.OriginLocal, r.fdb.Now().UnixNano())
	r.fdb.Learn(fdb.Key{VNI: 42, MAC: macL}, fdb.Location{Port: 1}, fdb.OriginLocal, r.fdb.Now().UnixNano())
	unknown := fdb.MAC{0x02, 0, 0, 0, 0, 0x77}
	before := r.sw.Stats()
	entries := r.fdb.Len()

	for _, tc := range []struct {
		name    string
		port    int
		policy  string
		frame   []byte
		verdict string
		drop    string
		steps   []string // stage=result, in order
		out     []string
	}{
		{name: "local", port: 1, frame: frame(mac2, mac1, "hello"), verdict: "local",
			steps: []string{"admit=ok", "port_security=off", "fdb=local"}, out: []string{"p2"}},
		{name: "remote", port: 1, frame: frame(macR, mac1, "hello"), verdict: "remote",
			steps: []string{"admit=ok", "port_security=off", "fdb=remote", "encryption=plain", "egress=encap"}, out: []string{"192.0.2.2:4789"}},
		{name: "unknown flood", port: 1, policy: "flood", frame: frame(unknown, mac1, "hello"), verdict: "flood",
			steps: []string{"admit=ok", "port_security=off", "fdb=flood", "flood_policy=flood", "encryption=plain", "egress=flood"},
			out:   []string{"p2", "sec", "192.0.2.2:4789", "192.0.2.3:4789"}},
		{name: "unknown drop", port: 1, policy: "unicast=drop", frame: frame(unknown, mac1, "hello"), verdict: "drop", drop: "flood_policy",
			steps: []string{"admit=ok", "port_security=off", "fdb=flood", "flood_policy=drop"}},
		{name: "broadcast under unicast=drop", port: 1, policy: "unicast=drop", frame: frame(fdb.Broadcast, mac1, "hello"), verdict: "flood",
			steps: []string{"admit=ok", "port_security=off", "fdb=flood", "flood_policy=flood", "encryption=plain", "egress=flood"},
			out:   []string{"p2", "sec", "192.0.2.2:4789", "192.0.2.3:4789"}},
		{name: "broadcast dropped", port: 1, policy: "drop", frame: frame(fdb.Broadcast, mac1, "hello"), verdict: "drop", drop: "flood_policy",
			steps: []string{"admit=ok", "port_security=off", "fdb=flood", "flood_policy=drop"}},
		{name: "hairpin", port: 1, frame: frame(macL, mac1, "hello"), verdict: "drop", drop: "hairpin",
			steps: []string{"admit=ok", "port_security=off", "fdb=drop"}},
		{name: "port security", port: sec, frame: frame(mac2, mac1, "hello"), verdict: "drop", drop: "port_security",
			steps: []string{"port_security=drop"}},
		{name: "secure port ok", port: sec, frame: frame(mac2, secMAC, "hello"), verdict: "local",
			steps: []string{"admit=ok", "port_security=ok", "fdb=local"}, out: []string{"p2"}},
		{name: "proxy answers", port: 1, frame: arpRequest(t, mac1, "10.0.9.1", "10.0.9.2"), verdict: "answered",
			steps: []string{"admit=ok", "port_security=off", "proxy=answer"}, out: []string{"p1"}},
		{name: "proxy unknown flooded", port: 1, policy: "flood", frame: arpRequest(t, mac1, "10.0.9.1", "10.0.9.99"), verdict: "flood",
			steps: []string{"admit=ok", "port_security=off", "proxy=unknown", "fdb=flood", "flood_policy=flood", "encryption=plain", "egress=flood"},
			out:   []string{"p2", "sec", "192.0.2.2:4789", "192.0.2.3:4789"}},
		{name: "proxy unknown dropped", port: 1, policy: "arp=drop", frame: arpRequest(t, mac1, "10.0.9.1", "10.0.9.99"), verdict: "drop", drop: "flood_policy",
			steps: []string{"admit=ok", "port_security=off", "proxy=unknown", "fdb=flood", "flood_policy=drop"}},
		{name: "spoofed ARP", port: sec, frame: arpRequest(t, secMAC, "10.0.9.6", "10.0.9.2"), verdict: "drop", drop: "port_security",
			steps: []string{"admit=ok", "port_security=ok", "proxy=drop"}},
		{name: "too big", port: 1, frame: frame(mac2, mac1, strings.Repeat("x", 1500)), verdict: "drop", drop: "mtu",
			steps: []string{"admit=drop"}},
		{name: "bad source", port: 1, frame: frame(mac2, fdb.Broadcast, "x"), verdict: "drop", drop: "bad_source",
			steps: []string{"admit=drop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := "flood"
			if tc.policy != "" {
				pol = tc.policy
			}
			fp, err := vtep.ParseFloodPolicy(pol)
			if err != nil {
				t.Fatal(err)
			}
			r.sw.SetFloodPolicy(42, fp)
			tr, err := r.sw.Trace(tc.port, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			var steps, out []string
			for _, s := range tr.Steps {
				steps = append(steps, s.Stage+"="+s.Result)
			}
			for _, o := range tr.Out {
				if o.Port != "" {
					out = append(out, o.Port)
				} else {
					out = append(out, o.VTEP.String())
					if o.SourcePort == 0 {
						t.Errorf("copy to %v has no source port", o.VTEP)
					}
				}
			}
			if tr.Verdict != tc.verdict || tr.Drop != tc.drop || strings.Join(steps, " ") != strings.Join(tc.steps, " ") ||
				strings.Join(out, " ") != strings.Join(tc.out, " ") {
				t.Errorf("trace (-want +got):\n- %s %s %v -> %v\n+ %s %s %v -> %v\n%+v", tc.verdict, tc.drop, tc.steps, tc.out,
					tr.Verdict, tr.Drop, steps, out, tr.Steps)
			}
		})
	}
	tr, _ := r.sw.Trace(1, frame(macR, mac1, "x"))
	if tr.FDB == nil || tr.FDB.Origin != "gossip" || tr.FDB.Node != "nodeB" || tr.FDB.Seq != 3 || tr.FDB.VTEP != peerB {
		t.Errorf("remote trace's FDB entry: %+v", tr.FDB)
	}
	after := r.sw.Stats()
	for k, v := range after.Drops {
		if before.Drops[k] != v {
			t.Errorf("tracing counted a %s drop", k)
		}
	}
	if after.Proxy != before.Proxy {
		t.Errorf("tracing counted proxy work: %+v -> %+v", before.Proxy, after.Proxy)
	}
	if r.fdb.Len() != entries {
		t.Errorf("tracing learned: %d entries, was %d", r.fdb.Len(), entries)
	}
	if _, ok := r.fdb.LookupIP(fdb.IPKey{VNI: 42, IP: netip.MustParseAddr("10.0.9.1")}); ok {
		t.Error("tracing an ARP request learned the sender's binding")
	}
	if _, err := r.sw.Trace(99, frame(mac2, mac1, "x")); err == nil {
		t.Error("trace from a port that does not exist: no error")
	}
	r.expectQuiet(r.p1, r.p2, r.p3)
}

// TestTraceFloodRate: a port whose flood budget is spent traces to a
// flood_rate drop, and tracing takes no token.
func TestTraceFloodRate(t *testing.T) {
	r := newRig(t)
	dev := taptest.New("limited", 1450)
	id, err := r.sw.AddPort(vtep.PortConfig{Name: "limited", VNI: 42, Device: dev, FloodRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	src := fdb.MAC{0x02, 0, 0, 0, 0, 0x1d}
	bc := frame(fdb.Broadcast, src, "x")
	for range 3 {
		if tr, _ := r.sw.Trace(id, bc); tr.Verdict != "flood" {
			t.Fatalf("trace with the budget full: %+v", tr)
		}
	}
	dev.Inject(bc) // takes the one token
	r.expectDatagram(r.toB, "B", 42, bc)
	tr, _ := r.sw.Trace(id, bc)
	if tr.Verdict != "drop" || tr.Drop != "flood_rate" {
		t.Errorf("trace with the budget spent: %+v", tr)
	}
}
