package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep"
)

// nextEvent returns the next event of kind from f, skipping others.
func nextEvent(t *testing.T, f <-chan control.Event, kind string) control.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-f:
			if e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

// TestWatcherEvents: FDB changes become added, moved, duplicate and
// removed events, address moves ip_moved, and polled networks
// network_added and network_removed.
func TestWatcherEvents(t *testing.T) {
	d := testDaemon(t)
	if err := d.startObserver(); err != nil {
		t.Fatal(err)
	}
	f := d.obs.watch.follow()
	defer f.Close()
	k := fdb.Key{VNI: 9, MAC: fdb.MAC{2, 0, 0, 0, 0, 9}}
	a, b := netip.MustParseAddrPort("192.0.2.2:4789"), netip.MustParseAddrPort("192.0.2.3:4789")
	d.fdb.Set(fdb.Entry{Key: k, Location: fdb.Location{VTEP: a}, Origin: fdb.OriginGossip, Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})
	if e := nextEvent(t, f.C(), "fdb_added"); e.MAC != k.MAC.String() || e.Where != a.String() || e.Origin != "gossip" || e.Node != "n2" || e.VNI != 9 {
		t.Errorf("added: %+v", e)
	}
	d.fdb.Set(fdb.Entry{Key: k, Location: fdb.Location{VTEP: b}, Origin: fdb.OriginGossip, Node: "n3", Seq: 1})
	if e := nextEvent(t, f.C(), "fdb_moved"); e.From != a.String() || e.Where != b.String() || e.Node != "n3" {
		t.Errorf("moved: %+v", e)
	}
	d.fdb.Set(fdb.Entry{Key: k, Location: fdb.Location{VTEP: b}, Origin: fdb.OriginGossip, Node: "n3", Seq: 2, Duplicate: true})
	nextEvent(t, f.C(), "duplicate_mac")
	other := fdb.MAC{2, 0, 0, 0, 0, 10}
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 9, MAC: other}, Location: fdb.Location{VTEP: a}, Origin: fdb.OriginGossip, Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.3")}})
	d.fdb.Set(fdb.Entry{Key: k, Location: fdb.Location{VTEP: b}, Origin: fdb.OriginGossip, Node: "n3", Seq: 3, IPs: []netip.Addr{netip.MustParseAddr("10.0.9.3")}})
	if e := nextEvent(t, f.C(), "ip_moved"); e.IP != netip.MustParseAddr("10.0.9.3") || e.MAC != k.MAC.String() || e.From != other.String() {
		t.Errorf("ip moved: %+v", e)
	}
	d.fdb.Delete(k)
	if e := nextEvent(t, f.C(), "fdb_removed"); e.MAC != k.MAC.String() {
		t.Errorf("removed: %+v", e)
	}
	if err := d.nets.create(gossip.Network{Name: "db", VNI: 10}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, f.C(), "network_added"); e.Name != "db" || e.VNI != 10 {
		t.Errorf("network added: %+v", e)
	}
	if err := d.nets.remove("db", d.networkUsers); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, f.C(), "network_removed")
}

// TestTraceAPI: POST /v1/trace over the fake switch: from a port with a
// learned MAC to an address the FDB vouches for (answered, then remote),
// to one nobody holds (flood), and errors for what does not exist.
func TestTraceAPI(t *testing.T) {
	d := testDaemon(t)
	if err := d.startObserver(); err != nil {
		t.Fatal(err)
	}
	id, err := d.sw.AddPort(vtep.PortConfig{Name: "p1", VNI: 9, Device: taptest.New("p1", 1450)})
	if err != nil {
		t.Fatal(err)
	}
	src := fdb.MAC{2, 0, 0, 0, 0, 1}
	d.fdb.Learn(fdb.Key{VNI: 9, MAC: src}, fdb.Location{Port: id}, fdb.OriginLocal, d.fdb.Now().UnixNano())
	d.fdb.BindIP(fdb.Key{VNI: 9, MAC: src}, netip.MustParseAddr("10.0.9.1"))
	peer := netip.MustParseAddrPort("192.0.2.2:4789")
	dst := fdb.MAC{2, 0, 0, 0, 0, 2}
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 9, MAC: dst}, Location: fdb.Location{VTEP: peer}, Origin: fdb.OriginGossip, Node: "n2",
		IPs: []netip.Addr{netip.MustParseAddr("10.0.9.2")}})

	code, tr, body := postTrace(t, d, control.TraceRequest{Network: "web", From: "p1", To: "10.0.9.2", Proto: "udp/53"})
	if code != http.StatusOK || len(tr.Frames) != 2 || tr.Frames[0].Verdict != "answered" || tr.Frames[0].Answer != dst.String() ||
		tr.Frames[1].Verdict != "remote" || tr.Frames[1].Out[0].VTEP != peer || !strings.Contains(tr.Frames[1].Frame, "UDP 10.0.9.1:40000 > 10.0.9.2:53") {
		t.Errorf("trace to a remote address: %d %s", code, body)
	}
	code, tr, body = postTrace(t, d, control.TraceRequest{Network: "web", From: "p1", To: "10.0.9.77"})
	if code != http.StatusOK || len(tr.Frames) != 1 || tr.Frames[0].Verdict != "flood" || len(tr.Notes) != 1 {
		t.Errorf("trace to an unknown address: %d %s", code, body)
	}
	code, tr, body = postTrace(t, d, control.TraceRequest{Network: "web", From: "p1", To: "10.1.0.1"})
	if code != http.StatusBadRequest || !strings.Contains(body, "no gateway") {
		t.Errorf("trace off the subnet without a gateway: %d %s", code, body)
	}
	for _, tc := range []struct {
		req  control.TraceRequest
		code int
		want string
	}{
		{control.TraceRequest{Network: "nope", From: "p1", To: "10.0.9.2"}, http.StatusNotFound, "network nope"},
		{control.TraceRequest{Network: "web", From: "nobody", To: "10.0.9.2"}, http.StatusNotFound, "nobody"},
		{control.TraceRequest{Network: "web", From: "p1", To: "somewhere"}, http.StatusBadRequest, "IP address or a MAC"},
		{control.TraceRequest{Network: "web", From: "p1", To: "10.0.9.2", Proto: "sctp/9"}, http.StatusBadRequest, "tcp/PORT"},
		{control.TraceRequest{Network: "web", From: "p1", To: "10.0.9.2", SrcMAC: "zz"}, http.StatusBadRequest, "source MAC"},
	} {
		if code, _, body := postTrace(t, d, tc.req); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%+v: %d %s, want %d with %q", tc.req, code, body, tc.code, tc.want)
		}
	}
}

func postTrace(t *testing.T, d *Daemon, req control.TraceRequest) (int, control.Trace, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	w := httptest.NewRecorder()
	d.handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/trace", bytes.NewReader(body)))
	var tr control.Trace
	_ = json.Unmarshal(w.Body.Bytes(), &tr)
	return w.Code, tr, strings.TrimSpace(w.Body.String())
}
