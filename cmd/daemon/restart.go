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
// The file is JSON, rewritten whole under d.mu on every change: written to
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
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

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

// savedEndpoint is one attached endpoint: its record as `ovlsw status`
// lists it, and its network as it was at attach.
type savedEndpoint struct {
	control.Endpoint
	Net control.Network `json:"net"`
}

// epPort is what the daemon keeps of an endpoint beside its record: its
// TAP (persistent) and its network as it was at attach, for the state file.
type epPort struct {
	dev tap.Device
	net control.Network
	ns  nsID // the namespace it was attached in (nswatch.go)
}

// DefaultStatePath is the state file of a daemon whose control socket is
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
// a restart will not know of it. An empty Config.State (tests) writes
// nothing. Called with d.mu held.
func (d *Daemon) saveStateLocked() {
	if d.cfg.State == "" {
		return
	}
	st := stateFile{Version: stateVersion, Endpoints: make([]savedEndpoint, 0, len(d.endpoints))}
	for id, ep := range d.endpoints {
		st.Endpoints = append(st.Endpoints, savedEndpoint{Endpoint: *ep, Net: d.epPorts[id].net})
	}
	slices.SortFunc(st.Endpoints, func(a, b savedEndpoint) int { return cmp.Compare(a.Name, b.Name) })
	if err := writeState(d.cfg.State, st); err != nil {
		d.log.Error("state not saved: a restart would not re-adopt the endpoints attached now", "err", err)
	}
}

// loadState returns the endpoints the state file lists. A file that cannot
// be used is logged and renamed to <file>.corrupt (kept for a post-mortem,
// and not overwritten by the next save), and the node starts clean: the
// TAPs of the endpoints it listed stay in their namespaces, unattached,
// until those are deleted.
func (d *Daemon) loadState() []savedEndpoint {
	st, err := readState(d.cfg.State)
	if err == nil {
		return st.Endpoints
	}
	aside := d.cfg.State + ".corrupt"
	if rerr := os.Rename(d.cfg.State, aside); rerr != nil {
		aside = ""
	}
	d.log.Error("state file unusable: starting without it; endpoints attached before the restart are not re-adopted",
		"err", err, "moved_to", aside)
	return nil
}

// readopted is an endpoint readopt took back, for readoptSettle.
type readopted struct {
	id  int
	ep  control.Endpoint
	net control.Network
	key fdb.Key
}

// readopt takes back the endpoints of the state file and saves the state
// with those that came back. It runs in New before gossip starts, so that
// their ports carry traffic as soon as the join has brought the peers, and
// their VNIs are in this node's first gossip message (a node that came back
// without them would be dropped from its peers' lists of the VNIs' VTEPs
// until it advertised them again). readoptSettle finishes the job once
// gossip runs.
func (d *Daemon) readopt() []readopted {
	saved := d.loadState()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stateLoaded = true
	if len(saved) == 0 {
		return nil
	}
	start := time.Now()
	var out []readopted
	vnis := d.vnis()
	for _, se := range saved {
		r, err := d.readoptLocked(se)
		if err != nil {
			d.log.Warn("endpoint dropped at restart", "endpoint", se.Name, "netns", se.Netns, "why", err)
			continue
		}
		out = append(out, r)
		if !slices.Contains(vnis, r.ep.VNI) {
			vnis = append(vnis, r.ep.VNI)
		}
	}
	slices.Sort(vnis)
	d.vniSet.Store(&vnis) // served until gossip's list of networks replaces them
	for _, r := range out {
		d.applyPeers(r.ep.VNI) // static --peer ones
	}
	d.saveStateLocked()
	d.log.Info("endpoints re-adopted", "kept", len(out), "dropped", len(saved)-len(out),
		"took", time.Since(start).Round(time.Microsecond))
	return out
}

// readoptLocked takes back one endpoint: its TAP, port and pinned FDB
// entry, and its record. Called with d.mu held.
func (d *Daemon) readoptLocked(se savedEndpoint) (readopted, error) {
	mac, err := fdb.ParseMAC(se.MAC)
	switch {
	case err != nil || mac.IsMulticast() || mac.IsZero():
		return readopted{}, fmt.Errorf("bad record: MAC %q", se.MAC)
	case se.Netns == "" || se.IfName == "" || se.Network == "" || !se.Address.IsValid() ||
		se.VNI == 0 || se.VNI > vtep.MaxVNI:
		return readopted{}, fmt.Errorf("bad record: netns %q, ifname %q, network %q, VNI %d, address %v",
			se.Netns, se.IfName, se.Network, se.VNI, se.Address)
	}
	path := control.NetnsPath(se.Netns)
	if _, err := os.Stat(path); err != nil {
		return readopted{}, fmt.Errorf("network namespace gone: %w", err)
	}
	var dev tap.Device
	cfg := d.endpointTAP(se.IfName, se.MTU, mac, true)
	err = inNetns(path, func() (err error) {
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
	id, err := d.sw.AddPort(vtep.PortConfig{Name: se.Name, VNI: se.VNI, Device: dev, MTU: se.MTU,
		Secure: se.Secure, MAC: mac, IPs: []netip.Addr{addr}, FloodRate: d.cfg.FloodRate})
	if err != nil {
		dev.Close()
		return readopted{}, fmt.Errorf("add port: %w", err)
	}
	nw := se.Net
	if nw.Name != se.Network || nw.VNI != se.VNI { // a record without its network
		nw = control.Network{Name: se.Network, VNI: se.VNI, Gateway: se.Gateway, MTU: se.MTU}
	}
	if pol, err := vtep.ParseFloodPolicy(nw.Flood); err == nil && !d.served(se.VNI) {
		d.sw.SetFloodPolicy(se.VNI, pol)
	}
	ep := se.Endpoint
	ep.Node = d.cfg.Name
	d.endpoints[id] = &ep
	ns, _ := netnsID(control.NetnsPath(se.Netns)) // zero if gone: then the reader notices
	d.epPorts[id] = epPort{dev: dev, net: nw, ns: ns}
	// As at attach: pinned, and announced by gossip (by readoptSettle if
	// gossip is not running yet).
	key := fdb.Key{VNI: se.VNI, MAC: mac}
	d.fdb.Set(fdb.Entry{Key: key, Location: fdb.Location{Port: id},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{addr}, Pinned: true})
	d.log.Info("re-adopted", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address, "mac", ep.MAC)
	return readopted{id: id, ep: ep, net: nw, key: key}, nil
}

// readoptSettle finishes readopt once gossip has joined: an endpoint whose
// network the cluster does not have (this node founded the cluster; the
// network was removed while it was down) gets it put again from the state
// file; one whose network cannot be served (its name or VNI now taken by
// another) is removed, TAP included, as a detach would; the others'
// bindings are announced. It takes d.mu only in those rare cases: the
// networks callback may hold it for a while.
func (d *Daemon) readoptSettle(rs []readopted) {
	a := d.agent.Load()
	nets := a.Networks()
	for _, r := range rs {
		err := d.settleNetwork(nets, r)
		if err != nil {
			d.mu.Lock()
			if _, ok := d.endpoints[r.id]; ok {
				if rerr := d.removeEndpointLocked(r.id, "network cannot be served", false); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			d.mu.Unlock()
			d.log.Warn("endpoint dropped at restart", "endpoint", r.ep.Name, "netns", r.ep.Netns, "why", err)
			continue
		}
		for _, c := range a.Claims(r.key.VNI, r.ep.Address.Addr()) {
			if c.MAC != r.key.MAC && c.Node != d.cfg.Name {
				d.log.Warn("re-adopted address is claimed by another node as well (handed out again while this node was down?)",
					"endpoint", r.ep.Name, "address", r.ep.Address.Addr(), "node", c.Node, "mac", c.MAC)
			}
		}
		if e, ok := d.fdb.Get(r.key); ok && e.Port == r.id {
			a.OnFDBEvent(fdb.Event{Type: fdb.Updated, Entry: e})
		}
		if err := d.wakeNeighbours(r); err != nil {
			d.log.Debug("neighbour cache of a re-adopted endpoint not read", "endpoint", r.ep.Name, "err", err)
		}
	}
}

// wakeNeighbours completes the neighbour lookups a re-adopted endpoint's
// container started while its port was down. The TAP lost its carrier
// when the old process let go of it, which made the kernel flush the
// container's neighbour cache; the ARP requests or neighbour solicitations
// sent since were lost, and the kernel retries only after retrans_time (a
// second), holding the packets meanwhile. For each address the container
// is resolving (an INCOMPLETE or FAILED entry) that the FDB knows, a
// gratuitous ARP or unsolicited neighbour advertisement on the VNI's ports
// completes the lookup at once. It runs after the join, which brought the
// cluster's bindings.
func (d *Daemon) wakeNeighbours(r readopted) error {
	ns, err := netns.GetFromPath(control.NetnsPath(r.ep.Netns))
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(r.ep.IfName)
	if err != nil {
		return err
	}
	neighs, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			continue
		}
		ip = ip.Unmap()
		if mac, ok := d.fdb.LookupIP(fdb.IPKey{VNI: r.key.VNI, IP: ip}); ok {
			d.sw.AnnounceIP(r.key.VNI, ip, mac)
		}
	}
	return nil
}

// settleNetwork checks a re-adopted endpoint's network against the
// cluster's networks nets, and puts it from the state file if missing.
func (d *Daemon) settleNetwork(nets []gossip.Network, r readopted) error {
	for _, n := range nets {
		if n.Name == r.net.Name {
			if n.VNI != r.net.VNI {
				return fmt.Errorf("network %s is now VNI %d; the endpoint was on VNI %d", n.Name, n.VNI, r.net.VNI)
			}
			return nil
		}
	}
	if err := d.createNetwork(r.net); err != nil {
		return fmt.Errorf("network %s cannot be restored: %w", r.net.Name, err)
	}
	d.log.Info("network restored from the state file", "network", r.net.Name, "vni", r.net.VNI)
	return nil
}

// endpointTAP is the configuration of an endpoint's TAP: attach creates it
// so (named from a template, then made persistent once configured) and a
// restart adopts it so (by its name in the namespace, persistent), so
// the two open it alike. An endpoint's TAP has one queue and lazy TSO
// (cmd/daemon/offload.go says why).
func (d *Daemon) endpointTAP(name string, mtu int, mac fdb.MAC, persist bool) tap.Config {
	return tap.Config{Name: name, MTU: mtu, MAC: mac, Persist: persist, Offload: d.cfg.Offload, LazyTSO: d.cfg.Offload}
}

// unpersist makes an endpoint's TAP non-persistent, so that closing it
// removes it. A device that is gone already (its namespace was deleted)
// is not an error.
func unpersist(dev tap.Device) error {
	p, ok := dev.(tap.Persister)
	if !ok {
		return nil
	}
	if err := p.SetPersist(false); err != nil && !errors.Is(err, tap.ErrClosed) {
		return err
	}
	return nil
}

// releasePorts makes every endpoint's TAP non-persistent, so that closing
// the switch removes them, and removes the state file, since nothing is
// attached any more. The file stays if this process never loaded it (New
// failed before readopt): it still describes an earlier process's
// endpoints.
func (d *Daemon) releasePorts() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, p := range d.epPorts {
		if err := unpersist(p.dev); err != nil {
			d.log.Debug("endpoint TAP not made non-persistent (gone already?)", "endpoint", d.endpoints[id].Name, "err", err)
		}
	}
	if d.stateLoaded && d.cfg.State != "" {
		if err := os.Remove(d.cfg.State); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("remove state file", "err", err)
		}
	}
}

// keepPorts logs what CloseForRestart leaves for the next start: the
// endpoints' TAPs stay persistent when the switch closes them, and the
// state file, saved on every change, lists them.
func (d *Daemon) keepPorts() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log.Info("stopping for a restart: attached endpoints keep their TAPs", "endpoints", len(d.endpoints), "state", d.cfg.State)
}

// inNetns runs fn on an OS thread moved into the network namespace at
// path, and waits for it. The thread is given back to the scheduler only
// once it is back in the daemon's namespace; if it cannot return, its
// goroutine exits still locked, which ends the thread. Files fn opens
// (a TAP) stay usable from any thread.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread() // still in orig
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		err = fn()
		if berr := netns.Set(orig); berr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave network namespace %s: %w", path, berr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
