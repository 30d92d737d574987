package daemon

// This file holds restarts that keep attached containers: the state file,
// which lists every endpoint, and re-adopting those endpoints when `ovlsw
// up` starts again after an upgrade stop (CloseForRestart, SIGUSR2), a
// crash or SIGKILL.
//
// Design notes: an endpoint's TAP is made persistent once it is configured
// in its namespace, so it outlives the daemon's file descriptor: the
// container keeps its eth0, MAC, addresses and routes, and sees no carrier
// while no process holds the TAP. Only Close (SIGTERM, SIGINT), detach and
// a vanished namespace make a TAP non-persistent before closing it, which
// removes it. On start, before gossip, each endpoint the state file lists
// is taken back (readopt): the daemon enters its namespace, attaches to the
// TAP by name there (tap.Adopt), re-creates the switch port (VNI, MAC,
// address, port security) and the pinned FDB entry, and restores the
// endpoint record, from which address allocation follows; its VNI is
// advertised from the first gossip message on. Endpoints whose namespace or
// TAP is gone are dropped and logged. Once gossip has joined
// (readoptSettle), the bindings are announced again under the new
// process's generation, a network the cluster lacks is put again from the
// copy the file keeps with each endpoint (this node founded the cluster;
// the network was removed while the node was down), and the neighbour
// lookups the container started while its port was down are answered (see
// wakeNeighbours: without that, the kernel's one-second ARP retry was most
// of the gap).
//
// An upgrade stop does not leave the gossip cluster: leaving would withdraw
// this node's bindings everywhere. Without a leave, peers keep forwarding to
// this VTEP; the restarted node joins again, refutes its old incarnation,
// and its new bindings replace the old ones (gossip orders an owner's
// records across restarts by generation). The traffic gap is the time from
// the stop to the join after the re-adoption (tens of milliseconds on a
// LAN: TestE2ERestart measures it).
//
// The file is JSON, rewritten whole under the endpoints' lock on every change: written to
// a temporary file in the same directory and renamed over the old one, so
// a reader (the next process, after a crash) sees the old or the new file,
// never a torn one. It is not fsynced: it has to outlive the process, not
// the machine (persistent TAPs do not survive a reboot either, and its
// default directory, /run, is a tmpfs).

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// stateVersion is the state file's format. A file of another version is
// not re-adopted from (it is set aside like a corrupt one).
const stateVersion = 1

// stateFile is the content of the state file.
type stateFile struct {
	Version   int             `json:"version"`
	Endpoints []savedEndpoint `json:"endpoints"`
}

// savedEndpoint is one attached endpoint in the state file: its record,
// with the same fields as the control API's, and its network as it was at
// attach. The MAC stays text, so that one bad record does not make the
// whole file unreadable.
type savedEndpoint struct {
	Name    string       `json:"name"`
	Network string       `json:"network"`
	VNI     uint32       `json:"vni"`
	Node    string       `json:"node"`
	Netns   string       `json:"netns,omitempty"`
	IfName  string       `json:"ifname"`
	MAC     string       `json:"mac"`
	Address netip.Prefix `json:"address,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	MTU     int          `json:"mtu"`
	Secure  bool         `json:"port_security"`
	Net     savedNetwork `json:"net"`
	// The endpoint's DNS names, its network's DNS address, and whether
	// attach wrote its namespace's resolv.conf.
	DNSName    string     `json:"dns_name,omitempty"`
	Aliases    []string   `json:"aliases,omitempty"`
	Service    string     `json:"service,omitempty"`
	DNS        netip.Addr `json:"dns,omitzero"`
	ResolvConf bool       `json:"resolv_conf,omitempty"`
}

// savedNetwork is a network in the state file.
type savedNetwork struct {
	Name    string       `json:"name"`
	VNI     uint32       `json:"vni"`
	Subnet  netip.Prefix `json:"subnet,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	MTU     int          `json:"mtu"`
	Flood   string       `json:"flood,omitempty"`
	DNS     netip.Addr   `json:"dns,omitzero"`
	// More is the subnets after the first (route.go), packed at the front;
	// absent for one. An array, so that saved records stay comparable.
	More [gossip.MaxSubnets - 1]control.Subnet `json:"more_subnets,omitzero"`
}

func saveEndpoint(a *attached) savedEndpoint {
	ep, n := a.ep, a.net
	se := savedEndpoint{
		Name: ep.Name, Network: ep.Network, VNI: ep.VNI, Node: ep.Node, Netns: ep.Netns, IfName: ep.IfName,
		MAC: ep.MAC.String(), Address: ep.Address, Gateway: ep.Gateway, MTU: ep.MTU, Secure: ep.Secure,
		Net: savedNetwork{Name: n.Name, VNI: n.VNI, Subnet: n.Subnet, Gateway: n.Gateway, MTU: n.MTU, Flood: n.Flood, DNS: n.DNS},
		DNS: ep.DNS, ResolvConf: ep.ResolvConf,
	}
	if nm := ep.Names; nm != nil {
		se.DNSName, se.Aliases, se.Service = nm.Name, nm.Aliases, nm.Service
	}
	if subs := n.Subnets(); len(subs) > 1 {
		for i, s := range subs[1:] {
			se.Net.More[i] = control.Subnet{Subnet: s.Prefix, Gateway: s.Gateway}
		}
	}
	return se
}

// DefaultStatePath is the state file of a node whose control socket is
// socket, unless Config.State names another: beside the socket, named
// like it with ".state.json" for ".sock" (/run/ovlsw/ovlsw.state.json).
func DefaultStatePath(socket string) string {
	return strings.TrimSuffix(socket, ".sock") + ".state.json"
}

// writeState replaces the file at path with st, atomically (temporary file
// and rename), mode 0600; its directory is created if missing.
func writeState(path string, st stateFile) (reterr error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	defer func() {
		if reterr != nil {
			os.Remove(f.Name())
		}
	}()
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return nil
}

// readState reads the state file at path. A missing file is an empty
// state; an unreadable, corrupt or other-version one is an error.
func readState(path string) (stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("read state file: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return stateFile{}, fmt.Errorf("state file %s is corrupt: %w", path, err)
	}
	if st.Version != stateVersion {
		return stateFile{}, fmt.Errorf("state file %s has format version %d; this ovlsw reads version %d", path, st.Version, stateVersion)
	}
	return st, nil
}

// saveStateLocked writes the state file from the endpoints. A failure is
// logged, not returned: the attach or detach it follows has happened; only
// a restart will not know of it. An empty endpointsConfig.State (tests)
// writes nothing. Called with e.mu held.
func (e *endpoints) saveStateLocked() {
	if e.cfg.State == "" {
		return
	}
	st := stateFile{Version: stateVersion, Endpoints: make([]savedEndpoint, 0, len(e.byPort))}
	for _, a := range e.byPort {
		st.Endpoints = append(st.Endpoints, saveEndpoint(a))
	}
	slices.SortFunc(st.Endpoints, func(a, b savedEndpoint) int { return cmp.Compare(a.Name, b.Name) })
	if err := writeState(e.cfg.State, st); err != nil {
		e.log.Error("state not saved: a restart would not re-adopt the endpoints attached now", "err", err)
	}
}

// loadState returns the endpoints the state file lists. A file that cannot
// be used is logged and renamed to <file>.corrupt (kept for a post-mortem,
// and not overwritten by the next save), and the node starts clean: the
// TAPs of the endpoints it listed stay in their namespaces, unattached,
// until those are deleted.
func (e *endpoints) loadState() []savedEndpoint {
	st, err := readState(e.cfg.State)
	if err == nil {
		return st.Endpoints
	}
	aside := e.cfg.State + ".corrupt"
	if rerr := os.Rename(e.cfg.State, aside); rerr != nil {
		aside = ""
	}
	e.log.Error("state file unusable: starting without it; endpoints attached before the restart are not re-adopted",
		"err", err, "moved_to", aside)
	return nil
}

// readopted is an endpoint readopt took back, for readoptSettle.
type readopted struct {
	id  int
	ep  endpoint
	net gossip.Network
}

// readopt takes back the endpoints of the state file and saves the state
// with those that came back. It runs in New before gossip starts, so that
// their ports carry traffic as soon as the join has brought the peers, and
// their VNIs are in this node's first gossip message (a node that came back
// without them would be dropped from its peers' lists of the VNIs' VTEPs
// until it advertised them again). readoptSettle finishes the job once
// gossip runs.
func (e *endpoints) readopt() []readopted {
	saved := e.loadState()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stateLoaded = true
	if len(saved) == 0 {
		return nil
	}
	start := time.Now()
	var out []readopted
	for _, se := range saved {
		r, err := e.readoptLocked(se)
		if err != nil {
			e.log.Warn("endpoint dropped at restart", "endpoint", se.Name, "netns", se.Netns, "why", err)
			continue
		}
		out = append(out, r)
	}
	e.saveStateLocked()
	e.log.Info("endpoints re-adopted", "kept", len(out), "dropped", len(saved)-len(out),
		"took", time.Since(start).Round(time.Microsecond))
	return out
}

// readoptLocked takes back one endpoint: its TAP, port and pinned FDB
// entry, and its record; its VNI is served (with the static peers) until
// gossip's list of networks replaces it. Called with e.mu held.
func (e *endpoints) readoptLocked(se savedEndpoint) (readopted, error) {
	mac, err := fdb.ParseMAC(se.MAC)
	switch {
	case err != nil || mac.IsMulticast() || mac.IsZero():
		return readopted{}, fmt.Errorf("bad record: MAC %q", se.MAC)
	case se.Netns == "" || se.IfName == "" || se.Network == "" || !se.Address.IsValid() || fdb.CheckVNI(se.VNI) != nil:
		return readopted{}, fmt.Errorf("bad record: netns %q, ifname %q, network %q, VNI %d, address %v",
			se.Netns, se.IfName, se.Network, se.VNI, se.Address)
	}
	path := control.NetnsPath(se.Netns)
	if _, err := os.Stat(path); err != nil {
		return readopted{}, fmt.Errorf("network namespace gone: %w", err)
	}
	var dev tap.Device
	cfg := e.tapConfig(se.IfName, se.MTU, mac, true)
	err = tap.InNetns(path, func() (err error) {
		dev, err = tap.Adopt(cfg)
		if err != nil && cfg.Queues > 1 && !errors.Is(err, tap.ErrNotFound) {
			cfg.Queues = 1 // a single-queue TAP, made by an ovlsw that gave endpoints one queue
			dev, err = tap.Adopt(cfg)
		}
		return err
	})
	if err != nil {
		if dev != nil {
			dev.Close() // still persistent: a later start may take it back
		}
		return readopted{}, fmt.Errorf("take back TAP %s: %w", se.IfName, err)
	}
	addr := se.Address.Addr()
	id, err := e.sw.AddPort(vtep.PortConfig{Name: se.Name, VNI: se.VNI, Device: dev, MTU: se.MTU,
		Secure: se.Secure, MAC: mac, IPs: []netip.Addr{addr}, FloodRate: int(e.floodRate.Load())})
	if err != nil {
		dev.Close()
		return readopted{}, fmt.Errorf("add port: %w", err)
	}
	nw := gossip.Network{Name: se.Net.Name, VNI: se.Net.VNI, Subnet: se.Net.Subnet, Gateway: se.Net.Gateway, MTU: se.Net.MTU, Flood: se.Net.Flood, DNS: se.Net.DNS}
	for i, s := range se.Net.More {
		nw.More[i] = gossip.NetSubnet{Prefix: s.Subnet, Gateway: s.Gateway}
	}
	if nw.Name != se.Network || nw.VNI != se.VNI { // a record without its network
		nw = gossip.Network{Name: se.Network, VNI: se.VNI, Gateway: se.Gateway, MTU: se.MTU}
	}
	if pol, err := vtep.ParseFloodPolicy(nw.Flood); err == nil {
		e.nets.serveEarly(se.VNI, pol)
	}
	ep := endpoint{
		Name: se.Name, Network: se.Network, VNI: se.VNI, Node: e.cfg.Node, Netns: se.Netns, IfName: se.IfName,
		MAC: mac, Address: se.Address, Gateway: se.Gateway, MTU: se.MTU, Secure: se.Secure,
		DNS: se.DNS, ResolvConf: se.ResolvConf,
	}
	if se.DNSName != "" {
		ep.Names = &fdb.Names{Name: se.DNSName, Aliases: se.Aliases, Service: se.Service}
	}
	ns, _ := tap.NetnsIDOf(path) // zero if gone: then the reader notices
	e.byPort[id] = &attached{ep: ep, dev: dev, net: nw, ns: ns}
	// As at attach: pinned, and announced by gossip (by readoptSettle if
	// gossip is not running yet).
	e.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: se.VNI, MAC: mac}, Location: fdb.Location{Port: id},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{addr}, Pinned: true, Names: ep.Names})
	e.log.Info("re-adopted", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address, "mac", ep.MAC)
	return readopted{id: id, ep: ep, net: nw}, nil
}

// settleView is what readoptSettle needs of the cluster: *gossip.Agent.
type settleView interface {
	Networks() []gossip.Network
	Claims(vni uint32, ip netip.Addr) []gossip.Binding
	OnFDBEvent(fdb.Event)
}

var _ settleView = (*gossip.Agent)(nil)

// readoptSettle finishes readopt once gossip has joined: an endpoint whose
// network the cluster does not have (this node founded the cluster; the
// network was removed while it was down) gets it put again from the state
// file; one whose network cannot be served (its name or VNI now taken by
// another) is removed, TAP included, as a detach would; the others'
// bindings are announced.
func (e *endpoints) readoptSettle(rs []readopted, c settleView) {
	nets := c.Networks()
	for _, r := range rs {
		err := e.settleNetwork(nets, r)
		if err != nil {
			e.mu.Lock()
			if _, ok := e.byPort[r.id]; ok {
				if rerr := e.removeLocked(r.id, "network cannot be served", false); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			e.mu.Unlock()
			e.log.Warn("endpoint dropped at restart", "endpoint", r.ep.Name, "netns", r.ep.Netns, "why", err)
			continue
		}
		for _, cl := range c.Claims(r.ep.VNI, r.ep.Address.Addr()) {
			if cl.MAC != r.ep.MAC && cl.Node != e.cfg.Node {
				e.log.Warn("re-adopted address is claimed by another node as well (handed out again while this node was down?)",
					"endpoint", r.ep.Name, "address", r.ep.Address.Addr(), "node", cl.Node, "mac", cl.MAC)
			}
		}
		if en, ok := e.fdb.Get(fdb.Key{VNI: r.ep.VNI, MAC: r.ep.MAC}); ok && en.Port == r.id {
			c.OnFDBEvent(fdb.Event{Type: fdb.Updated, Entry: en})
		}
		if err := e.wakeNeighbours(r); err != nil {
			e.log.Debug("neighbour cache of a re-adopted endpoint not read", "endpoint", r.ep.Name, "err", err)
		}
	}
}

// wakeNeighbours completes the neighbour lookups a re-adopted endpoint's
// container started while its port was down. The TAP lost its carrier
// when the old process let go of it, which made the kernel flush the
// container's neighbour cache; the ARP requests or neighbour solicitations
// sent since were lost, and the kernel retries only after retrans_time (a
// second), holding the packets meanwhile. For each address the container
// is resolving that the FDB knows, a gratuitous ARP or unsolicited
// neighbour advertisement on the VNI's ports completes the lookup at once.
// It runs after the join, which brought the cluster's bindings.
func (e *endpoints) wakeNeighbours(r readopted) error {
	ips, err := tap.Resolving(control.NetnsPath(r.ep.Netns), r.ep.IfName)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if mac, ok := e.fdb.LookupIP(fdb.IPKey{VNI: r.ep.VNI, IP: ip}); ok {
			e.sw.AnnounceIP(r.ep.VNI, ip, mac)
		}
	}
	return nil
}

// settleNetwork checks a re-adopted endpoint's network against the
// cluster's networks nets, and puts it from the state file if missing.
func (e *endpoints) settleNetwork(nets []gossip.Network, r readopted) error {
	for _, n := range nets {
		if n.Name == r.net.Name {
			if n.VNI != r.net.VNI {
				return fmt.Errorf("network %s is now VNI %d; the endpoint was on VNI %d", n.Name, n.VNI, r.net.VNI)
			}
			return nil
		}
	}
	if err := e.nets.create(r.net); err != nil {
		return fmt.Errorf("network %s cannot be restored: %w", r.net.Name, err)
	}
	e.log.Info("network restored from the state file", "network", r.net.Name, "vni", r.net.VNI)
	return nil
}

// release makes every endpoint's TAP non-persistent, so that closing the
// switch removes them, and removes the state file, since nothing is
// attached any more. The file stays if this process never loaded it (New
// failed before readopt): it still describes an earlier process's
// endpoints.
func (e *endpoints) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removeResolvConfsLocked()
	for _, a := range e.byPort {
		if err := unpersist(a.dev); err != nil {
			e.log.Debug("endpoint TAP not made non-persistent (gone already?)", "endpoint", a.ep.Name, "err", err)
		}
	}
	if e.stateLoaded && e.cfg.State != "" {
		if err := os.Remove(e.cfg.State); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("remove state file", "err", err)
		}
	}
}

// keep logs what CloseForRestart leaves for the next start: the endpoints'
// TAPs stay persistent when the switch closes them, and the state file,
// saved on every change, lists them.
func (e *endpoints) keep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log.Info("stopping for a restart: attached endpoints keep their TAPs", "endpoints", len(e.byPort), "state", e.cfg.State)
}

// count returns how many endpoints are attached.
func (e *endpoints) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.byPort)
}
