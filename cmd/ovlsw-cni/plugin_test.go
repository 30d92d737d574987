package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// fakeDaemon answers the control API on a unix socket with canned answers
// and records the requests.
type fakeDaemon struct {
	socket string

	mu       sync.Mutex
	attached []control.AttachRequest
	detached []control.DetachRequest
	attach   func(control.AttachRequest) (int, any) // status and body
	detach   func(control.DetachRequest) (int, any)
	eps      []control.Endpoint
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{socket: filepath.Join(t.TempDir(), "ovlsw.sock")}
	ln, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, code int, v any) {
		if code/100 != 2 {
			v = control.Error{Error: v.(string)}
		}
		control.WriteJSON(w, code, v)
	}
	mux.HandleFunc("POST /v1/attach", func(w http.ResponseWriter, r *http.Request) {
		var req control.AttachRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answer(w, 400, err.Error())
			return
		}
		d.mu.Lock()
		d.attached = append(d.attached, req)
		code, v := d.attach(req)
		d.mu.Unlock()
		answer(w, code, v)
	})
	mux.HandleFunc("POST /v1/detach", func(w http.ResponseWriter, r *http.Request) {
		var req control.DetachRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answer(w, 400, err.Error())
			return
		}
		d.mu.Lock()
		d.detached = append(d.detached, req)
		code, v := d.detach(req)
		d.mu.Unlock()
		answer(w, code, v)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		eps := d.eps
		d.mu.Unlock()
		answer(w, 200, eps)
	})
	mux.HandleFunc("GET /v1/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "default" {
			answer(w, 404, "network "+r.PathValue("name")+": not found")
			return
		}
		answer(w, 200, control.NetworkDetail{Network: control.Network{Name: "default", VNI: 42, Subnet: netip.MustParsePrefix("10.0.9.0/24")}})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

// set changes the canned answers under the lock the handlers take.
func (d *fakeDaemon) set(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f()
}

func conf(t *testing.T, socket string, extra string) []byte {
	t.Helper()
	s := `{"cniVersion": "1.0.0", "name": "test", "type": "ovlsw-cni", "socket": "` + socket + `"` + extra + `}`
	return []byte(s)
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		network string
		socket  string
		code    uint
	}{
		{name: "defaults", json: `{"cniVersion":"1.0.0","name":"n","type":"ovlsw-cni"}`, network: "default", socket: control.DefaultSocket},
		{name: "set", json: `{"cniVersion":"1.0.0","name":"n","type":"ovlsw-cni","network":"blue","socket":"/s"}`, network: "blue", socket: "/s"},
		{name: "ipam refused", json: `{"cniVersion":"1.0.0","name":"n","type":"ovlsw-cni","ipam":{"type":"host-local"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "two ips", json: `{"cniVersion":"1.0.0","name":"n","type":"ovlsw-cni","runtimeConfig":{"ips":["10.0.9.1/24","10.0.9.2/24"]}}`, code: types.ErrInvalidNetworkConfig},
		{name: "not json", json: `{`, code: types.ErrDecodingFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConf([]byte(tc.json))
			if got := cniCode(err); got != tc.code {
				t.Fatalf("code %d (%v), want %d", got, err, tc.code)
			}
			if err == nil && (c.Network != tc.network || c.Socket != tc.socket) {
				t.Errorf("network %q socket %q, want %q %q", c.Network, c.Socket, tc.network, tc.socket)
			}
		})
	}
}

func TestRequestedAddress(t *testing.T) {
	subnet := func() (netip.Prefix, error) { return netip.MustParsePrefix("10.0.9.0/24"), nil }
	for _, tc := range []struct {
		name string
		ips  []string
		args string
		want string
		code uint
	}{
		{name: "none", want: "invalid Prefix"},
		{name: "runtimeConfig", ips: []string{"10.0.9.5/24"}, args: "IP=10.0.9.6/24", want: "10.0.9.5/24"},
		{name: "runtimeConfig bare", ips: []string{"10.0.9.5"}, want: "10.0.9.5/24"},
		{name: "CNI_ARGS", args: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.9.6/24", want: "10.0.9.6/24"},
		{name: "bare address takes the subnet's prefix", args: "IgnoreUnknown=1;IP=10.0.9.6", want: "10.0.9.6/24"},
		{name: "bare address outside the subnet", args: "IP=10.0.8.6", code: types.ErrInvalidNetworkConfig},
		{name: "not an address", args: "IP=ten", code: types.ErrInvalidNetworkConfig},
		{name: "unknown arg", args: "FOO=1", code: types.ErrInvalidEnvironmentVariables},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &netConf{Network: "web"}
			c.RuntimeConfig.IPs = tc.ips
			got, err := requestedAddress(c, tc.args, subnet)
			if code := cniCode(err); code != tc.code {
				t.Fatalf("code %d (%v), want %d", code, err, tc.code)
			}
			if err == nil && got.String() != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRequestedMAC(t *testing.T) {
	for _, tc := range []struct {
		name, capability, args, want string
		code                         uint
	}{
		{name: "none"},
		{name: "CNI_ARGS", args: "IgnoreUnknown=1;MAC=02:42:0A:00:09:05", want: "02:42:0a:00:09:05"},
		{name: "capability wins", capability: "02:00:00:00:00:07", args: "MAC=02:42:0a:00:09:05", want: "02:00:00:00:00:07"},
		{name: "not a MAC", args: "MAC=nope", code: types.ErrInvalidNetworkConfig},
		{name: "not Ethernet", capability: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", code: types.ErrInvalidNetworkConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &netConf{}
			c.RuntimeConfig.MAC = tc.capability
			got, err := requestedMAC(c, tc.args)
			if code := cniCode(err); code != tc.code {
				t.Fatalf("code %d (%v), want %d", code, err, tc.code)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAddVersions: ADD answers every spec version a runtime may send with
// a result of that version (converted by the library), a bare CNI_ARGS IP=
// gets the subnet's prefix, MAC= reaches the daemon, and a 0.4.0
// prevResult is kept.
func TestAddVersions(t *testing.T) {
	d := newFakeDaemon(t)
	sandbox := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(sandbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.set(func() {
		d.attach = func(req control.AttachRequest) (int, any) {
			return 200, control.Endpoint{
				Name: req.Name, Network: req.Network, Netns: req.Netns, IfName: req.IfName, MAC: req.MAC,
				Address: req.Address, Gateway: netip.MustParseAddr("10.0.9.254"), MTU: 1450,
			}
		}
	})
	for _, v := range supportedVersions.SupportedVersions() {
		t.Run(v, func(t *testing.T) {
			c, err := parseConf([]byte(`{"cniVersion":"` + v + `","name":"test","type":"ovlsw-cni","socket":"` + d.socket + `"}`))
			if err != nil {
				t.Fatal(err)
			}
			res, err := add(c, &skel.CmdArgs{ContainerID: "c1", Netns: sandbox, IfName: "eth0", Args: "IgnoreUnknown=1;IP=10.0.9.50;MAC=02:42:0a:00:09:32"})
			if err != nil {
				t.Fatal(err)
			}
			d.set(func() {
				got := d.attached[len(d.attached)-1]
				if got.Address != netip.MustParsePrefix("10.0.9.50/24") || got.MAC != "02:42:0a:00:09:32" {
					t.Errorf("attach request address %v MAC %q, want 10.0.9.50/24 02:42:0a:00:09:32", got.Address, got.MAC)
				}
			})
			out, err := res.GetAsVersion(v)
			if err != nil {
				t.Fatalf("convert to %s: %v", v, err)
			}
			b, _ := json.Marshal(out)
			var back struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Version string `json:"version"`
					Address string `json:"address"`
				} `json:"ips"`
			}
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.CNIVersion != v || len(back.IPs) != 1 || back.IPs[0].Address != "10.0.9.50/24" {
				t.Errorf("result %s, want version %s and 10.0.9.50/24", b, v)
			}
			if old := v < "1.0.0"; old != (back.IPs[0].Version == "4") {
				t.Errorf("result %s: ips[].version must be set before 1.0.0 only", b)
			}
		})
	}
	t.Run("0.4.0 prevResult", func(t *testing.T) {
		c, err := parseConf([]byte(`{"cniVersion":"0.4.0","name":"test","type":"ovlsw-cni","socket":"` + d.socket + `",
			"prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"lo"}],"ips":[{"version":"4","address":"127.0.0.1/8","interface":0}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		res, err := add(c, &skel.CmdArgs{ContainerID: "c1", Netns: sandbox, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := res.GetAsVersion("0.4.0")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(out)
		if !strings.Contains(string(b), `"127.0.0.1/8"`) || strings.Count(string(b), `"name"`) != 2 {
			t.Errorf("result %s: want the previous interface and address kept", b)
		}
	})
}

func TestEndpointName(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct{ id, want string }{
		{hex, "0123456789ab/eth0"},
		{"short", "short/eth0"},
		{"my-container-with-a-long-name", "my-container-with-a-long-name/eth0"},
	} {
		if got := endpointName(&skel.CmdArgs{ContainerID: tc.id, IfName: "eth0"}); got != tc.want {
			t.Errorf("endpointName(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

func TestAddResult(t *testing.T) {
	d := newFakeDaemon(t)
	sandbox := filepath.Join(t.TempDir(), "netns") // stands in for a namespace path
	if err := os.WriteFile(sandbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.set(func() {
		d.attach = func(req control.AttachRequest) (int, any) {
			return 200, control.Endpoint{
				Name: req.Name, Network: req.Network, Netns: req.Netns, IfName: req.IfName, MAC: "02:00:00:00:00:01",
				Address: netip.MustParsePrefix("10.0.9.1/24"), Gateway: netip.MustParseAddr("10.0.9.254"), MTU: 1450,
			}
		}
	})
	args := &skel.CmdArgs{ContainerID: "c1", Netns: sandbox, IfName: "eth0", Args: "IP=10.0.9.1/24"}
	c, err := parseConf(conf(t, d.socket, `, "network": "default"`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := add(c, args)
	if err != nil {
		t.Fatal(err)
	}
	d.set(func() {
		if got, want := d.attached[0], (control.AttachRequest{
			Netns: sandbox, Network: "default", Address: netip.MustParsePrefix("10.0.9.1/24"), IfName: "eth0", Name: "c1/eth0",
			DNSName: "c1", NoResolvConf: true,
		}); !reflect.DeepEqual(got, want) {
			t.Errorf("attach request %+v, want %+v", got, want)
		}
	})
	out, err := res.GetAsVersion(c.CNIVersion) // as cmdAdd prints it
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	want := `{"cniVersion":"1.0.0","interfaces":[{"mac":"02:00:00:00:00:01","mtu":1450,"name":"eth0","sandbox":"` + sandbox + `"}],` +
		`"ips":[{"address":"10.0.9.1/24","gateway":"10.0.9.254","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"10.0.9.254"}]}`
	if string(b) != want {
		t.Errorf("result\n got %s\nwant %s", b, want)
	}
}

// TestAddNames: the container's name from CNI_ARGS K8S_POD_NAME (as
// Podman passes it) is its DNS name, the "aliases" capability adds aliases
// for this network, and the result names the network's DNS address.
func TestAddNames(t *testing.T) {
	d := newFakeDaemon(t)
	sandbox := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(sandbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.set(func() {
		d.attach = func(req control.AttachRequest) (int, any) {
			return 200, control.Endpoint{
				Name: req.Name, Network: req.Network, Netns: req.Netns, IfName: req.IfName, MAC: "02:00:00:00:00:01",
				Address: netip.MustParsePrefix("10.0.9.1/24"), MTU: 1450, DNS: netip.MustParseAddr("10.0.9.53"),
				DNSName: req.DNSName, Aliases: req.Aliases,
			}
		}
	})
	hexID := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name, args, want string
	}{
		{"pod name", "IgnoreUnknown=1;K8S_POD_NAMESPACE=web_1;K8S_POD_NAME=web_1;K8S_POD_INFRA_CONTAINER_ID=" + hexID, "web_1"},
		{"no name", "", "0123456789ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConf(conf(t, d.socket, `, "network": "web", "runtimeConfig": {"aliases": {"test": ["www", "front"], "other": ["x"]}}`))
			if err != nil {
				t.Fatal(err)
			}
			res, err := add(c, &skel.CmdArgs{ContainerID: hexID, Netns: sandbox, IfName: "eth0", Args: tc.args})
			if err != nil {
				t.Fatal(err)
			}
			d.set(func() {
				got := d.attached[len(d.attached)-1]
				if got.DNSName != tc.want || !reflect.DeepEqual(got.Aliases, []string{"www", "front"}) {
					t.Errorf("attach request names %q %q, want %q [www front]", got.DNSName, got.Aliases, tc.want)
				}
			})
			if !reflect.DeepEqual(res.DNS, types.DNS{Nameservers: []string{"10.0.9.53"}, Search: []string{"web"}}) {
				t.Errorf("result DNS %+v", res.DNS)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	d := newFakeDaemon(t)
	d.set(func() {
		d.attach = func(req control.AttachRequest) (int, any) { return 400, `attach: no network "nosuch"` }
	})
	sandbox := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(sandbox, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	args := &skel.CmdArgs{ContainerID: "c1", Netns: sandbox, IfName: "eth0"}
	down := filepath.Join(t.TempDir(), "none.sock")

	t.Run("refused", func(t *testing.T) {
		c, _ := parseConf(conf(t, d.socket, `, "network": "nosuch"`))
		_, err := add(c, args)
		if cniCode(err) != errRefused || !strings.Contains(err.Error(), `"nosuch"`) {
			t.Errorf("ADD to a missing network: %v (code %d)", err, cniCode(err))
		}
	})
	t.Run("daemon down", func(t *testing.T) {
		c, _ := parseConf(conf(t, down, ""))
		if _, err := add(c, args); cniCode(err) != types.ErrTryAgainLater {
			t.Errorf("ADD without a daemon: %v (code %d), want 11", err, cniCode(err))
		}
		a := *args
		a.StdinData = conf(t, down, "")
		if err := cmdDel(&a); err != nil {
			t.Errorf("DEL without a daemon: %v", err)
		}
		if err := cmdStatus(&a); cniCode(err) != errPluginNotAvailable {
			t.Errorf("STATUS without a daemon: %v, want code 50", err)
		}
	})
	t.Run("missing netns", func(t *testing.T) {
		c, _ := parseConf(conf(t, d.socket, ""))
		a := *args
		a.Netns = filepath.Join(t.TempDir(), "gone")
		if _, err := add(c, &a); cniCode(err) != types.ErrInvalidNetNS {
			t.Errorf("ADD into a missing netns: %v, want code 8", err)
		}
	})
	t.Run("DEL not attached", func(t *testing.T) {
		d.set(func() {
			d.detach = func(control.DetachRequest) (int, any) { return 404, "detach: nothing attached" }
		})
		a := *args
		a.StdinData = conf(t, d.socket, "")
		if err := cmdDel(&a); err != nil {
			t.Errorf("DEL of nothing: %v", err)
		}
	})
	t.Run("DEL refused", func(t *testing.T) {
		d.set(func() {
			d.detach = func(control.DetachRequest) (int, any) { return 500, "detach: boom" }
		})
		a := *args
		a.StdinData = conf(t, d.socket, "")
		if err := cmdDel(&a); cniCode(err) != types.ErrInternal || !strings.Contains(err.Error(), "boom") {
			t.Errorf("DEL with a daemon failure: %v", err)
		}
	})
	t.Run("DEL without netns finds the endpoint by name", func(t *testing.T) {
		d.set(func() {
			d.detach = func(control.DetachRequest) (int, any) { return 200, control.Endpoint{} }
			d.eps = []control.Endpoint{
				{Name: "other/eth0", Network: "default", Netns: "/run/netns/other", IfName: "eth0"},
				{Name: "c1/eth0", Network: "default", Netns: "/run/netns/c1", IfName: "eth0"},
			}
			d.detached = nil
		})
		a := *args
		a.Netns = ""
		a.StdinData = conf(t, d.socket, "")
		if err := cmdDel(&a); err != nil {
			t.Fatal(err)
		}
		d.set(func() {
			if len(d.detached) != 1 || d.detached[0].Netns != "/run/netns/c1" {
				t.Errorf("detached %+v, want c1's", d.detached)
			}
		})
	})
	t.Run("CHECK not attached", func(t *testing.T) {
		d.set(func() { d.eps = nil })
		a := *args
		a.StdinData = conf(t, d.socket, "")
		if err := cmdCheck(&a); cniCode(err) != errCheckFailed {
			t.Errorf("CHECK of nothing: %v, want code %d", err, errCheckFailed)
		}
	})
	t.Run("STATUS", func(t *testing.T) {
		a := *args
		a.StdinData = conf(t, d.socket, "")
		if err := cmdStatus(&a); err != nil {
			t.Errorf("STATUS: %v", err)
		}
		a.StdinData = conf(t, d.socket, `, "network": "nosuch"`)
		if err := cmdStatus(&a); cniCode(err) != errPluginNotAvailable {
			t.Errorf("STATUS of a missing network: %v, want code 50", err)
		}
	})
}
