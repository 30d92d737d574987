package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ovlsw/ovlsw/bench/testbed"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
)

// webNet is the network testDaemon creates.
var webNet = savedNetwork{Name: "web", VNI: 9, Subnet: netip.MustParsePrefix("10.0.9.0/24"), MTU: 1450, Flood: "flood"}

func savedEP(netns, ifname, mac, addr string) savedEndpoint {
	return savedEndpoint{
		Name: netns + "/" + ifname, Network: webNet.Name, VNI: webNet.VNI, Node: "fuzz", Netns: netns, IfName: ifname,
		MAC: mac, Address: netip.MustParsePrefix(addr), MTU: 1450, Secure: true,
		Net: webNet,
	}
}

// recordOf is the endpoint record a saved endpoint describes.
func recordOf(se savedEndpoint) endpoint {
	mac, _ := fdb.ParseMAC(se.MAC)
	return endpoint{Name: se.Name, Network: se.Network, VNI: se.VNI, Node: se.Node, Netns: se.Netns, IfName: se.IfName,
		MAC: mac, Address: se.Address, Gateway: se.Gateway, MTU: se.MTU, Secure: se.Secure}
}

func TestStateRoundTrip(t *testing.T) {
	v6 := savedEP("/run/netns/c2", "eth1", "02:00:00:00:00:02", "fd00::2/64")
	v6.Gateway, v6.Secure = netip.MustParseAddr("fd00::1"), false
	for _, tc := range []struct {
		name string
		st   stateFile
	}{
		{"empty", stateFile{Version: stateVersion, Endpoints: []savedEndpoint{}}},
		{"two", stateFile{Version: stateVersion, Endpoints: []savedEndpoint{
			savedEP("c1", "eth0", "02:00:00:00:00:01", "10.0.9.7/24"), v6,
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "ovlsw.state.json") // the directory is made
			if err := writeState(path, tc.st); err != nil {
				t.Fatal(err)
			}
			got, err := readState(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.st) {
				t.Errorf("read back (-want +got):\n-%s\n+%s", jsonOf(tc.st), jsonOf(got))
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("state file mode: %v %v, want 0600", fi.Mode(), err)
			}
		})
	}
}

func TestStateMissingIsEmpty(t *testing.T) {
	st, err := readState(filepath.Join(t.TempDir(), "none.state.json"))
	if err != nil || len(st.Endpoints) != 0 {
		t.Errorf("missing file: %+v %v, want an empty state", st, err)
	}
}

// TestStateAtomicWrite: a reader never sees a torn file while a writer
// replaces it with states of different sizes, no temporary file is left,
// and a write that fails leaves the old file as it was.
func TestStateAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "n.state.json")
	small := stateFile{Version: stateVersion, Endpoints: []savedEndpoint{savedEP("c1", "eth0", "02:00:00:00:00:01", "10.0.9.7/24")}}
	big := stateFile{Version: stateVersion}
	for i := range 100 {
		big.Endpoints = append(big.Endpoints, savedEP(fmt.Sprintf("c%d", i), "eth0", fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), "10.0.9.7/24"))
	}
	if err := writeState(path, small); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		defer close(stop)
		for i := range 100 {
			st := small
			if i%2 == 0 {
				st = big
			}
			if err := writeState(path, st); err != nil {
				t.Error(err)
				return
			}
		}
	})
	reads := 0
	for done := false; !done; reads++ {
		select {
		case <-stop:
			done = true
		default:
		}
		st, err := readState(path)
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if n := len(st.Endpoints); n != 1 && n != 100 {
			t.Fatalf("read %d: %d endpoints", reads, n)
		}
	}
	wg.Wait()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left in the directory: %v", ents)
	}

	// A write that cannot complete (the temporary file cannot be renamed
	// over a directory) changes nothing and leaves nothing.
	if err := writeState(path, small); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(dir, "blocked")
	if err := os.Mkdir(filepath.Join(blocked), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blocked, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeState(blocked, big); err == nil {
		t.Error("writing over a non-empty directory succeeded")
	}
	if st, err := readState(path); err != nil || len(st.Endpoints) != 1 {
		t.Errorf("old file after a failed write: %d endpoints, %v", len(st.Endpoints), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("files left after a failed write: %v", ents)
	}
}

// TestStateCorrupt: a state file that cannot be used is reported, set
// aside as <file>.corrupt, and the node starts with no endpoints; the next
// save writes a good file.
func TestStateCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"garbage", "\x00\x01not json", "corrupt"},
		{"truncated", `{"version":1,"endpoints":[{"name":"c1/eth0","netw`, "corrupt"},
		{"wrong type", `{"version":1,"endpoints":{}}`, "corrupt"},
		{"other version", `{"version":99,"endpoints":[]}`, "format version 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "n.state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			e := &endpoints{cfg: endpointsConfig{State: path}, log: slog.New(slog.NewTextHandler(&logs, nil)), byPort: map[int]*attached{}}
			if got := e.loadState(); len(got) != 0 {
				t.Errorf("endpoints from a corrupt file: %v", got)
			}
			out := logs.String()
			if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, tc.want) || !strings.Contains(out, path) {
				t.Errorf("log does not say what is wrong (want %q and the path):\n%s", tc.want, out)
			}
			if b, err := os.ReadFile(path + ".corrupt"); err != nil || string(b) != tc.content {
				t.Errorf("corrupt file not set aside: %q %v", b, err)
			}
			e.saveStateLocked()
			if st, err := readState(path); err != nil || len(st.Endpoints) != 0 {
				t.Errorf("state after a clean start: %+v %v", st, err)
			}
		})
	}
}

// restartDaemon is a testDaemon with the state file at path and its log
// in a buffer.
func restartDaemon(t *testing.T, path string) (*Daemon, *syncBuffer) {
	t.Helper()
	d := testDaemon(t)
	logs := new(syncBuffer)
	d.log = slog.New(slog.NewTextHandler(logs, nil))
	d.eps.mu.Lock()
	d.eps.cfg.State = path
	d.eps.log = d.log
	d.eps.mu.Unlock()
	return d, logs
}

// TestReadoptDropsVanished: endpoints whose namespace is gone, or whose
// record is unusable, are dropped, logged, and left out of the state file.
func TestReadoptDropsVanished(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.state.json")
	gone := savedEP(filepath.Join(t.TempDir(), "no-such-netns"), "eth0", "02:00:00:00:00:01", "10.0.9.7/24")
	badMAC := savedEP("c1", "eth0", "01:00:5e:00:00:01", "10.0.9.8/24") // multicast
	if err := writeState(path, stateFile{Version: stateVersion, Endpoints: []savedEndpoint{gone, badMAC}}); err != nil {
		t.Fatal(err)
	}
	d, logs := restartDaemon(t, path)
	d.eps.readopt()
	if eps := d.listEndpoints(""); len(eps) != 0 {
		t.Errorf("endpoints after re-adopting vanished ones: %+v", eps)
	}
	out := logs.String()
	for _, want := range []string{"endpoint dropped at restart", "network namespace gone", "bad record", "kept=0 dropped=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if st, err := readState(path); err != nil || len(st.Endpoints) != 0 {
		t.Errorf("state file still lists dropped endpoints: %+v %v", st, err)
	}
}

// persistentTAP creates a persistent TAP in ns and closes it, as an
// earlier daemon leaves an endpoint's TAP.
func persistentTAP(t *testing.T, tb *testbed.Bed, ns *testbed.Netns, name string, mac fdb.MAC) {
	t.Helper()
	err := tap.InNetns(ns.Path, func() error {
		dev, err := tap.Create(tap.Config{Name: name, MTU: 1450, MAC: mac, Up: true, Persist: true})
		if err != nil {
			return err
		}
		return dev.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tb.LinkExists(ns, name) {
		t.Fatalf("persistent TAP %s gone after Close", name)
	}
}

// TestReadoptTAP (root): a persistent TAP left in a namespace by an
// earlier daemon is taken back with its endpoint, port, pinned FDB entry
// and address; one whose TAP is gone is dropped. CloseForRestart leaves it
// and the state file for the next daemon; Close removes both.
func TestReadoptTAP(t *testing.T) {
	tb := testbed.New(t)
	ns, err := tb.Netns("readopt")
	if err != nil {
		t.Fatal(err)
	}
	mac := fdb.MAC{0x02, 0, 0, 0, 0, 0x42}
	persistentTAP(t, tb, ns, "eth0", mac)
	path := filepath.Join(t.TempDir(), "n.state.json")
	kept := savedEP(ns.Path, "eth0", mac.String(), "10.0.9.7/24")
	noTAP := savedEP(ns.Path, "eth1", "02:00:00:00:00:43", "10.0.9.8/24")
	if err := writeState(path, stateFile{Version: stateVersion, Endpoints: []savedEndpoint{kept, noTAP}}); err != nil {
		t.Fatal(err)
	}

	d1, logs := restartDaemon(t, path)
	d1.eps.readoptSettle(d1.eps.readopt(), d1.cluster.Load().agent)
	eps := d1.eps.list("")
	if len(eps) != 1 || eps[0] != recordOf(kept) {
		t.Fatalf("endpoints after readopt:\n%s\nwant\n%s\nlog:\n%s", jsonOf(eps), jsonOf(recordOf(kept)), logs)
	}
	e, ok := d1.fdb.Get(fdb.Key{VNI: webNet.VNI, MAC: mac})
	if !ok || !e.Pinned || e.Origin != fdb.OriginLocal || e.Port == 0 {
		t.Errorf("FDB entry of the re-adopted endpoint: %+v %v", e, ok)
	}
	if !strings.Contains(logs.String(), "kept=1 dropped=1") || !strings.Contains(logs.String(), "no such TAP") {
		t.Errorf("log:\n%s", logs)
	}
	if st, err := readState(path); err != nil || len(st.Endpoints) != 1 || !reflect.DeepEqual(st.Endpoints[0], kept) {
		t.Errorf("state after readopt: %+v %v", st, err)
	}
	if who, ok := d1.addressInUse(webNet.Name, kept.Address.Addr()); !ok {
		t.Error("the re-adopted address is free to allocate again")
	} else if !strings.Contains(who, kept.Name) {
		t.Errorf("the re-adopted address is held by %q", who)
	}

	if err := d1.CloseForRestart(); err != nil {
		t.Fatal(err)
	}
	if !tb.LinkExists(ns, "eth0") {
		t.Fatal("CloseForRestart removed the endpoint's TAP")
	}
	d2, logs := restartDaemon(t, path)
	d2.eps.readoptSettle(d2.eps.readopt(), d2.cluster.Load().agent)
	if eps := d2.eps.list(""); len(eps) != 1 || eps[0] != recordOf(kept) {
		t.Fatalf("second restart: %+v\n%s", eps, logs)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if tb.LinkExists(ns, "eth0") {
		t.Error("Close left the endpoint's TAP in its namespace")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left the state file: %v", err)
	}
}

// TestReadoptSettle (root): once gossip runs, a re-adopted endpoint whose
// network the cluster lacks gets it back from the state file; one whose
// network now has another VNI is removed, TAP included.
func TestReadoptSettle(t *testing.T) {
	tb := testbed.New(t)
	ns, err := tb.Netns("settle")
	if err != nil {
		t.Fatal(err)
	}
	db := savedNetwork{Name: "db", VNI: 11, Subnet: netip.MustParsePrefix("10.0.11.0/24"), MTU: 1400, Flood: "drop"}
	for _, tc := range []struct {
		name     string
		net      savedNetwork
		kept     bool
		networks []string
	}{
		{"network restored", db, true, []string{"db", "web"}},
		{"VNI taken over", savedNetwork{Name: "web", VNI: 12, MTU: 1450}, false, []string{"web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac := fdb.MAC{0x02, 0, 0, 0, 0, byte(tc.net.VNI)}
			persistentTAP(t, tb, ns, "eth0", mac)
			se := savedEP(ns.Path, "eth0", mac.String(), "10.0.11.7/24")
			se.Network, se.VNI, se.MTU, se.Net = tc.net.Name, tc.net.VNI, tc.net.MTU, tc.net
			path := filepath.Join(t.TempDir(), "n.state.json")
			if err := writeState(path, stateFile{Version: stateVersion, Endpoints: []savedEndpoint{se}}); err != nil {
				t.Fatal(err)
			}
			d, logs := restartDaemon(t, path)
			rs := d.eps.readopt()
			if len(rs) != 1 {
				t.Fatalf("readopt: %+v\n%s", rs, logs)
			}
			d.eps.readoptSettle(rs, d.cluster.Load().agent)
			if got := len(d.listEndpoints("")) == 1; got != tc.kept {
				t.Errorf("endpoint kept: %v, want %v\n%s", got, tc.kept, logs)
			}
			if got := tb.LinkExists(ns, "eth0"); got != tc.kept {
				t.Errorf("TAP left in the namespace: %v, want %v", got, tc.kept)
			}
			var names []string
			for _, n := range d.listNetworks() {
				names = append(names, n.Name)
			}
			if !reflect.DeepEqual(names, tc.networks) {
				t.Errorf("networks %v, want %v", names, tc.networks)
			}
			if st, err := readState(path); err != nil || (len(st.Endpoints) == 1) != tc.kept {
				t.Errorf("state file: %+v %v", st, err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if tb.LinkExists(ns, "eth0") {
				t.Error("Close left the TAP")
			}
		})
	}
}

// addressInUse reports who holds addr in the named network, as allocation
// sees it.
func (d *Daemon) addressInUse(network string, addr netip.Addr) (string, bool) {
	n, _ := d.nets.get(network)
	who := d.alloc.inUse(n, addr)
	return who, who != ""
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func jsonOf(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
