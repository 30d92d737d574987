package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// TestSetNames: POST /v1/names names an attached endpoint after the fact
// (as the Docker plugin does once it knows the container): the binding
// gets the names and a higher sequence number, the switch answers them, a
// name held elsewhere is refused, and an endpoint that is not attached is
// a 404.
func TestSetNames(t *testing.T) {
	d := testDaemon(t)
	nw := gossip.Network{Name: "nm", VNI: 12, Subnet: netip.MustParsePrefix("10.0.12.0/24"), Gateway: netip.MustParseAddr("10.0.12.1")}
	if err := d.nets.create(nw); err != nil {
		t.Fatal(err)
	}
	mac := fdb.MAC{2, 0, 0, 0, 0, 0xcc}
	key := fdb.Key{VNI: 12, MAC: mac}
	d.fdb.Set(fdb.Entry{Key: key, Location: fdb.Location{Port: 7}, Origin: fdb.OriginLocal, Seq: 3,
		IPs: []netip.Addr{netip.MustParseAddr("10.0.12.5")}})
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: 12, MAC: fdb.MAC{2, 0, 0, 0, 0, 0xdd}}, Location: fdb.Location{VTEP: netip.MustParseAddrPort("192.0.2.2:4789")},
		Origin: fdb.OriginGossip, Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.0.12.6")}, Names: &fdb.Names{Name: "taken"}})
	d.eps.mu.Lock()
	d.eps.byPort[7] = &attached{ep: endpoint{Name: "docker/x", Network: "nm", VNI: 12, Netns: "/proc/1/ns/net", IfName: "ovdx", MAC: mac,
		Address: netip.MustParsePrefix("10.0.12.5/24")}, net: nw}
	d.eps.mu.Unlock()
	t.Cleanup(func() {
		d.eps.mu.Lock()
		delete(d.eps.byPort, 7)
		d.eps.mu.Unlock()
	})

	post := func(req control.NamesRequest) *httptest.ResponseRecorder {
		b, _ := json.Marshal(req)
		w := httptest.NewRecorder()
		d.handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/names", bytes.NewReader(b)))
		return w
	}
	if w := post(control.NamesRequest{Netns: "/proc/1/ns/net", IfName: "ovdx", DNSName: "web", Aliases: []string{"www"}}); w.Code != http.StatusOK {
		t.Fatalf("names: %d %s", w.Code, w.Body)
	}
	e, _ := d.fdb.Get(key)
	if e.Names == nil || e.Names.Name != "web" || len(e.Names.Aliases) != 1 || e.Seq != 4 {
		t.Errorf("binding after naming: names %+v seq %d, want web [www] and 4", e.Names, e.Seq)
	}
	if holder, ok := d.names.table.Holder(12, "www"); !ok || holder != mac {
		t.Errorf("www held by %v %v", holder, ok)
	}
	if w := post(control.NamesRequest{Netns: "/proc/1/ns/net", IfName: "ovdx", DNSName: "taken"}); w.Code != http.StatusBadRequest ||
		!strings.Contains(w.Body.String(), "taken") {
		t.Errorf("a name held elsewhere: %d %s", w.Code, w.Body)
	}
	if w := post(control.NamesRequest{Netns: "/proc/1/ns/net", IfName: "nope", DNSName: "x"}); w.Code != http.StatusNotFound {
		t.Errorf("not attached: %d %s", w.Code, w.Body)
	}
}

// TestRelocate: POST /v1/relocate records where a runtime moved an
// endpoint's interface, once the link there has the endpoint's MAC (a
// veth in a namespace of the test's stands in for the container's).
func TestRelocate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	name := fmt.Sprintf("ovlsw-relocate-%d", os.Getpid())
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, argv := range [][]string{{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "add", "eth0", "address", "02:00:00:00:00:0e", "type", "veth", "peer", "name", "eth1"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	to := "/run/netns/" + name
	d := testDaemon(t)
	nw := gossip.Network{Name: "rl", VNI: 13, Subnet: netip.MustParsePrefix("10.0.13.0/24")}
	d.eps.mu.Lock()
	d.eps.byPort[8] = &attached{ep: endpoint{Name: "docker/y", Network: "rl", VNI: 13, Netns: "/proc/1/ns/net", IfName: "ovdy",
		MAC: fdb.MAC{2, 0, 0, 0, 0, 0x0e}}, net: nw}
	d.eps.mu.Unlock()
	t.Cleanup(func() {
		d.eps.mu.Lock()
		delete(d.eps.byPort, 8)
		d.eps.mu.Unlock()
	})
	post := func(req control.RelocateRequest) *httptest.ResponseRecorder {
		b, _ := json.Marshal(req)
		w := httptest.NewRecorder()
		d.handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/relocate", bytes.NewReader(b)))
		return w
	}
	if w := post(control.RelocateRequest{Netns: "/proc/1/ns/net", IfName: "ovdy", ToNetns: to, ToIfName: "lo"}); w.Code != http.StatusBadRequest {
		t.Errorf("relocate to a link with another MAC: %d %s", w.Code, w.Body)
	}
	if w := post(control.RelocateRequest{Netns: "/proc/1/ns/net", IfName: "ovdy", ToNetns: to, ToIfName: "eth0"}); w.Code != http.StatusOK {
		t.Fatalf("relocate: %d %s", w.Code, w.Body)
	}
	d.eps.mu.Lock()
	ep := d.eps.byPort[8].ep
	d.eps.mu.Unlock()
	if ep.Netns != to || ep.IfName != "eth0" {
		t.Errorf("endpoint after relocate: %s %s", ep.Netns, ep.IfName)
	}
	if w := post(control.RelocateRequest{Netns: "/proc/1/ns/net", IfName: "ovdy", ToNetns: to, ToIfName: "eth0"}); w.Code != http.StatusNotFound {
		t.Errorf("relocate from where it no longer is: %d %s", w.Code, w.Body)
	}
}
