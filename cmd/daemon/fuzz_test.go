package daemon

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep/vteptest"
)

// testDaemon is a daemon without a host, for the control API: its switch
// runs over an in-memory UDP network and its gossip agent on loopback. It
// needs no root.
func testDaemon(tb testing.TB) *Daemon {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := DefaultConfig()
	cfg.Name, cfg.Bind, cfg.GossipPort, cfg.Logger = "fuzz", netip.MustParseAddr("127.0.0.1"), port, slog.New(slog.DiscardHandler)
	cfg.State = ""
	d := &Daemon{cfg: cfg, log: cfg.Logger, mtu: 1450, started: time.Now(), vtep: netip.AddrPortFrom(cfg.Bind, 4789)}
	if err := d.wire(vteptest.NewNetwork().Listen(d.vtep)); err != nil {
		tb.Fatal(err)
	}
	d.trust = &trust{log: d.log} // plain gossip, as with --insecure
	if err := d.startCluster(); err != nil {
		d.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	if err := d.nets.create(gossip.Network{Name: "web", VNI: 9, Subnet: netip.MustParsePrefix("10.0.9.0/24")}); err != nil {
		tb.Fatal(err)
	}
	return d
}

// FuzzControlAPI sends arbitrary bodies to the control API's endpoints
// that take one (attach excepted: a well-formed one would create a TAP).
// Every answer must be JSON with a 2xx, 400 or 404 status: malformed
// requests get an error, never a crash or a 500.
func FuzzControlAPI(f *testing.F) {
	for _, seed := range []string{
		`{"name":"db","vni":10,"subnet":"10.0.10.0/24"}`,
		`{"name":"web","vni":9}`,
		`{"name":"x","vni":0}`,
		`{"name":"y","vni":11,"subnet":"10.0.9.0/25"}`,
		`{"name":"z","vni":12,"subnet":"10.0.12.1/24","gateway":"10.0.13.1"}`,
		`{"op":"install","key":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}`,
		`{"netns":"nope","ifname":"eth0"}`,
		`{"netns":"","ifname":"` + string(bytes.Repeat([]byte("a"), 100)) + `"}`,
		`{"unknown":1}`, `{`, `[]`, `null`, ``,
	} {
		for _, path := range []string{"/v1/networks", "/v1/keys", "/v1/detach"} {
			f.Add(path, []byte(seed))
		}
	}
	d := testDaemon(f)
	h := d.handler()
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		switch path {
		case "/v1/networks", "/v1/keys", "/v1/detach":
		default:
			path = "/v1/networks"
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		if c := w.Code; c != http.StatusOK && c != http.StatusBadRequest && c != http.StatusNotFound {
			t.Fatalf("POST %s %q: status %d: %s", path, body, c, w.Body)
		}
		if w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("POST %s %q: not JSON: %s", path, body, w.Body)
		}
		// Whatever was created is removed again, so inputs stay independent.
		for _, n := range d.listNetworks() {
			if n.Name != "web" {
				d.nets.remove(n.Name, d.networkUsers)
			}
		}
	})
}
