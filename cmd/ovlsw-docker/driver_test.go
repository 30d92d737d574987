package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// fakeDaemon answers the control API calls the plugin makes, from a
// network list and endpoint list it keeps.
type fakeDaemon struct {
	socket string

	mu       sync.Mutex
	networks map[string]control.NetworkDetail
	attached []control.AttachRequest
	detached []control.DetachRequest
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{socket: filepath.Join(t.TempDir(), "ovlsw.sock"), networks: map[string]control.NetworkDetail{}}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []control.Network{}
		for _, n := range f.networks {
			out = append(out, n.Network)
		}
		control.WriteJSON(w, 200, out)
	})
	mux.HandleFunc("GET /v1/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		n, ok := f.networks[r.PathValue("name")]
		if !ok {
			control.WriteJSON(w, 404, control.Error{Error: "no such network"})
			return
		}
		control.WriteJSON(w, 200, n)
	})
	mux.HandleFunc("POST /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		var n control.Network
		json.NewDecoder(r.Body).Decode(&n)
		if !n.DNS.IsValid() {
			n.DNS = n.Gateway
		}
		f.mu.Lock()
		f.networks[n.Name] = control.NetworkDetail{Network: n}
		f.mu.Unlock()
		control.WriteJSON(w, 200, control.NetworkDetail{Network: n})
	})
	mux.HandleFunc("POST /v1/attach", func(w http.ResponseWriter, r *http.Request) {
		var req control.AttachRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.attached = append(f.attached, req)
		n := f.networks[req.Network]
		mac := req.MAC
		if mac == "" {
			mac = "02:00:00:00:00:99"
		}
		ep := control.Endpoint{Network: req.Network, Netns: req.Netns, IfName: req.IfName, MAC: mac, Address: req.Address, Gateway: n.Gateway}
		n.Endpoints = append(n.Endpoints, ep)
		f.networks[req.Network] = n
		control.WriteJSON(w, 200, ep)
	})
	mux.HandleFunc("POST /v1/detach", func(w http.ResponseWriter, r *http.Request) {
		var req control.DetachRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.detached = append(f.detached, req)
		control.WriteJSON(w, 404, control.Error{Error: "nothing attached"})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// call posts body to the plugin's path and decodes the answer into a
// map; it fails the test unless the status is want.
func call(t *testing.T, h http.Handler, path string, body any, want int) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(b)))
	if rec.Code != want {
		t.Fatalf("%s: status %d, want %d: %s", path, rec.Code, want, rec.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body)
	}
	return out
}

// TestDriver walks the calls dockerd makes for `docker network create`,
// `docker run --ip` on two endpoints (one with a MAC) and `docker rm`.
func TestDriver(t *testing.T) {
	f := newFakeDaemon(t)
	d, err := newDriver(config{Socket: f.socket, Netns: "/run/netns/host", State: filepath.Join(t.TempDir(), "state.json")})
	if err != nil {
		t.Fatal(err)
	}
	h := d.handler()
	if got := call(t, h, "/Plugin.Activate", nil, 200); len(got["Implements"].([]any)) != 2 {
		t.Errorf("Activate: %v", got)
	}
	if got := call(t, h, "/NetworkDriver.GetCapabilities", nil, 200); got["Scope"] != "local" || got["ConnectivityScope"] != "global" {
		t.Errorf("GetCapabilities: %v", got)
	}

	// docker network create: the pool, the gateway, the network.
	pool := call(t, h, "/IpamDriver.RequestPool", requestPoolRequest{Pool: "10.0.9.0/24"}, 200)
	if pool["PoolID"] != "10.0.9.0/24" {
		t.Fatalf("RequestPool: %v", pool)
	}
	call(t, h, "/IpamDriver.RequestPool", requestPoolRequest{}, 500)
	gw := call(t, h, "/IpamDriver.RequestAddress", requestAddressRequest{PoolID: "10.0.9.0/24", Options: map[string]string{"RequestAddressType": gatewayRequest}}, 200)
	if gw["Address"] != "10.0.9.1/24" {
		t.Errorf("gateway: %v", gw)
	}
	call(t, h, "/NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: "n1"}, 500) // no -o ovlsw.network
	call(t, h, "/NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: "n1",
		Options:  map[string]any{genericOptions: map[string]any{optNetwork: "web"}},
		IPv4Data: []ipamData{{Pool: "10.0.9.0/24", Gateway: "10.0.9.1/24"}}}, 200)
	f.mu.Lock()
	if n := f.networks["web"]; n.Subnet != netip.MustParsePrefix("10.0.9.0/24") || n.Gateway != netip.MustParseAddr("10.0.9.1") || n.VNI != defaultVNI("web") {
		t.Errorf("network created: %+v", n.Network)
	}
	// An endpoint on another node holds 10.0.9.7.
	n := f.networks["web"]
	n.Endpoints = append(n.Endpoints, control.Endpoint{Node: "other", Address: netip.MustParsePrefix("10.0.9.7/24")})
	f.networks["web"] = n
	f.mu.Unlock()

	// Addresses: one in use elsewhere refused, one asked for, dynamic ones
	// never in use or handed out twice.
	call(t, h, "/IpamDriver.RequestAddress", requestAddressRequest{PoolID: "10.0.9.0/24", Address: "10.0.9.7"}, 500)
	a := call(t, h, "/IpamDriver.RequestAddress", requestAddressRequest{PoolID: "10.0.9.0/24", Address: "10.0.9.50"}, 200)
	if a["Address"] != "10.0.9.50/24" {
		t.Fatalf("RequestAddress 10.0.9.50: %v", a)
	}
	call(t, h, "/IpamDriver.RequestAddress", requestAddressRequest{PoolID: "10.0.9.0/24", Address: "10.0.9.50"}, 500)
	seen := map[string]bool{}
	for range 20 {
		got := call(t, h, "/IpamDriver.RequestAddress", requestAddressRequest{PoolID: "10.0.9.0/24"}, 200)["Address"].(string)
		if seen[got] || got == "10.0.9.7/24" || got == "10.0.9.1/24" || got == "10.0.9.50/24" || got == "10.0.9.0/24" || got == "10.0.9.255/24" {
			t.Errorf("dynamic address %s: taken, reserved or not a host address", got)
		}
		seen[got] = true
	}
	for a := range seen {
		call(t, h, "/IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: "10.0.9.0/24", Address: strings.TrimSuffix(a, "/24")}, 200)
	}
	if len(d.reserved) != 1 {
		t.Errorf("reserved after release: %v, want 10.0.9.50 alone", d.reserved)
	}

	// Endpoints: the TAP is left unconfigured in dockerd's namespace, a
	// MAC Docker gave is not answered back, one the daemon picked is.
	ep1 := "0123456789abcdef0123"
	got := call(t, h, "/NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: "n1", EndpointID: ep1,
		Interface: &endpointInterface{Address: "10.0.9.50/24", MacAddress: "02:42:0a:00:09:32"}}, 200)
	if _, ok := got["Interface"]; ok {
		t.Errorf("CreateEndpoint with a MAC answered %v", got)
	}
	got = call(t, h, "/NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: "n1", EndpointID: "fedcba9876543210",
		Interface: &endpointInterface{Address: "10.0.9.51/24"}}, 200)
	if ifc, _ := got["Interface"].(map[string]any); ifc["MacAddress"] != "02:00:00:00:00:99" {
		t.Errorf("CreateEndpoint without a MAC answered %v", got)
	}
	f.mu.Lock()
	if r := f.attached[0]; !r.Unconfigured || r.Netns != "/run/netns/host" || r.IfName != "ovd0123456789a" || r.MAC != "02:42:0a:00:09:32" ||
		r.Address != netip.MustParsePrefix("10.0.9.50/24") || r.Network != "web" {
		t.Errorf("attach request %+v", r)
	}
	f.mu.Unlock()
	join := call(t, h, "/NetworkDriver.Join", joinRequest{NetworkID: "n1", EndpointID: ep1, SandboxKey: "/var/run/docker/netns/x"}, 200)
	if ifn := join["InterfaceName"].(map[string]any); ifn["SrcName"] != "ovd0123456789a" || ifn["DstPrefix"] != "eth" || join["Gateway"] != "10.0.9.1" {
		t.Errorf("Join: %v", join)
	}
	// A join the plugin has no record of (made by an earlier run).
	join = call(t, h, "/NetworkDriver.Join", joinRequest{NetworkID: "n1", EndpointID: "abcdef0123456789"}, 200)
	if ifn := join["InterfaceName"].(map[string]any); ifn["SrcName"] != "ovdabcdef01234" || join["Gateway"] != "10.0.9.1" {
		t.Errorf("Join of an endpoint made earlier: %v", join)
	}
	call(t, h, "/NetworkDriver.Leave", endpointRequest{NetworkID: "n1", EndpointID: ep1}, 200)
	call(t, h, "/NetworkDriver.DeleteEndpoint", endpointRequest{NetworkID: "n1", EndpointID: ep1}, 200) // a 404 is done already
	f.mu.Lock()
	if len(f.detached) != 1 || f.detached[0].IfName != "ovd0123456789a" {
		t.Errorf("detached %+v", f.detached)
	}
	f.mu.Unlock()

	// A restarted plugin knows the network from its state file.
	d2, err := newDriver(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := d2.networkOf("n1"); err != nil || name != "web" {
		t.Errorf("after restart: network n1 is %q, %v", name, err)
	}
	call(t, h, "/NetworkDriver.DeleteNetwork", networkRequest{NetworkID: "n1"}, 200)
	call(t, h, "/NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: "n1", EndpointID: "x",
		Interface: &endpointInterface{Address: "10.0.9.52/24"}}, 500)
}
