package daemon

// This file holds the endpoints: attach and detach. An endpoint is a TAP
// port created by the node, placed into a network namespace (tap.Place:
// moved, renamed, given the network's MTU, an address and a default route
// via the gateway, and brought up). Once configured, the TAP is made
// persistent, so that it outlives the node's file descriptor and a
// restarted node can take it back (restart.go); detach makes it
// non-persistent and closes it, which removes it, and a namespace that
// disappears takes the device with it, which the port's reader notices.

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// endpoint is a port attached to a network: a TAP in a network namespace.
type endpoint struct {
	Name    string
	Network string
	VNI     uint32
	Node    string
	Netns   string // a name under /run/netns, or a path
	IfName  string
	MAC     fdb.MAC
	Address netip.Prefix
	Gateway netip.Addr
	MTU     int
	Secure  bool       // port security
	Names   *fdb.Names // its DNS names; nil for none
	DNS     netip.Addr // the network's DNS address, if it has one
	// ResolvConf says attach wrote the namespace's resolv.conf
	// (resolvconf.go) for this endpoint.
	ResolvConf bool
}

// attachRequest asks for a new endpoint.
type attachRequest struct {
	Netns   string       // a name under /run/netns, or a path
	Network string       // network name
	Address netip.Prefix // zero: allocate from the subnet
	Subnet  netip.Prefix // the network's subnet to allocate from; zero: the first with room
	IfName  string       // default eth0
	MAC     string       // default: generated
	Name    string       // default: netns/ifname
	DNSName string       // default: the namespace's name, if a valid one
	Aliases []string     // more DNS names
	Service string       // the service it is a task of
	Secure  bool         // port security
	// ResolvConf has attach write the resolv.conf of a named namespace.
	ResolvConf bool
	// Unconfigured leaves the TAP down without addresses or routes, for
	// the runtime to move and configure (control.AttachRequest).
	Unconfigured bool
}

// endpointsConfig configures the endpoints.
type endpointsConfig struct {
	Node        string        // this node's name, recorded in each endpoint
	State       string        // the state file; empty writes none (tests)
	Offload     bool          // TAP offloads (hostport.go, tapQueues, says how endpoints use them)
	FloodRate   int           // vtep.PortConfig.FloodRate of every port
	ClaimSettle time.Duration // how long an allocated address's claim waits for conflicts
	NetnsEtc    string        // where named namespaces' resolv.conf go (resolvconf.go); empty: /etc/netns
	Log         *slog.Logger
}

// endpoints owns the attached endpoints: attach, detach, the state file and
// taking them back after a restart (restart.go), and the namespace watcher
// (nswatch.go).
type endpoints struct {
	cfg   endpointsConfig
	log   *slog.Logger
	sw    *vtep.Switch
	fdb   *fdb.Table
	alloc *allocator
	nets  *networks
	names *names // nil: endpoints get no DNS names (tests)

	floodRate atomic.Int64 // cfg.FloodRate, which a reload changes (reload.go)

	// mu guards the endpoints and the state file, which is rewritten under
	// it on every change.
	mu          sync.Mutex
	byPort      map[int]*attached   // by switch port ID
	attaching   map[string]struct{} // netns path and ifname of attaches in progress
	stateLoaded bool                // readopt ran: the state file is this process's

	// The namespace watcher (nswatch.go): its stop signal, its exit.
	nsStop chan struct{}
	nsDone sync.WaitGroup
}

// attached is what is kept of an endpoint beside its record: its TAP
// (persistent) and its network as it was at attach, for the state file.
type attached struct {
	ep  endpoint
	dev tap.Device
	net gossip.Network
	ns  tap.NetnsID // the namespace it was attached in (nswatch.go)
}

func newEndpoints(cfg endpointsConfig, sw *vtep.Switch, t *fdb.Table, alloc *allocator, nets *networks) *endpoints {
	e := &endpoints{cfg: cfg, log: cfg.Log, sw: sw, fdb: t, alloc: alloc, nets: nets,
		byPort: map[int]*attached{}, attaching: map[string]struct{}{}}
	e.floodRate.Store(int64(cfg.FloodRate))
	return e
}

// attach puts a new port of a network into a network namespace. An
// allocated address is claimed cluster-wide first (see ipam.go).
func (e *endpoints) attach(req attachRequest) (endpoint, error) {
	if req.Netns == "" {
		return endpoint{}, userErrorf("attach: the network namespace is required")
	}
	if req.IfName == "" {
		req.IfName = "eth0"
	}
	if len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/: \t") {
		return endpoint{}, userErrorf("attach: interface name %q: at most 15 characters, no '/', ':' or spaces", req.IfName)
	}
	path := control.NetnsPath(req.Netns)
	if _, err := os.Stat(path); err != nil {
		return endpoint{}, userErrorf("attach: network namespace %s: %v (create it with `ip netns add`)", req.Netns, err)
	}
	n, ok := e.nets.get(req.Network)
	if !ok {
		return endpoint{}, userErrorf("attach: no network %q (see `ovlsw network ls`)", req.Network)
	}
	nm, err := endpointNames(req.DNSName, req.Netns, req.Aliases, req.Service)
	if err != nil {
		return endpoint{}, err
	}
	slot := path + "\x00" + req.IfName
	if err := e.begin(slot, req); err != nil {
		return endpoint{}, err
	}
	defer e.end(slot)
	avoid := map[netip.Addr]bool{}
	for try := 0; ; try++ {
		c, err := e.claim(req, n, nm, avoid)
		if err != nil {
			return endpoint{}, err
		}
		if e.alloc.othersAlive() {
			time.Sleep(e.cfg.ClaimSettle) // let a conflicting claim arrive
		}
		winner, lost := e.alloc.lostClaim(n.VNI, c.addr.Addr(), c.mac)
		if !lost {
			return e.finish(req, path, c)
		}
		e.abandon(c)
		if req.Address.IsValid() || try >= 8 {
			return endpoint{}, userErrorf("attach: address %v was claimed at the same moment by node %s", c.addr.Addr(), winner)
		}
		e.log.Info("address claimed concurrently elsewhere; picking another", "address", c.addr.Addr(), "winner", winner)
		avoid[c.addr.Addr()] = true
	}
}

// begin refuses an interface that is attached already or being attached,
// and marks slot as being attached until end.
func (e *endpoints) begin(slot string, req attachRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	path := control.NetnsPath(req.Netns)
	for _, a := range e.byPort {
		if control.NetnsPath(a.ep.Netns) == path && a.ep.IfName == req.IfName {
			return userErrorf("attach: %s in %s is already attached to network %s", req.IfName, req.Netns, a.ep.Network)
		}
	}
	if _, ok := e.attaching[slot]; ok {
		return userErrorf("attach: %s in %s is being attached already", req.IfName, req.Netns)
	}
	e.attaching[slot] = struct{}{}
	return nil
}

func (e *endpoints) end(slot string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.attaching, slot)
}

// claim is an endpoint being attached: its port exists and its binding is
// announced, but the namespace is not touched yet.
type claim struct {
	n    gossip.Network
	addr netip.Prefix
	mac  fdb.MAC
	dev  tap.Device
	port int
	name string
	nm   *fdb.Names
}

// claim reserves the address, picks the MAC, creates the TAP and its port,
// and announces the binding.
func (e *endpoints) claim(req attachRequest, n gossip.Network, nm *fdb.Names, avoid map[netip.Addr]bool) (_ *claim, reterr error) {
	addr, err := e.alloc.reserveIn(n, req.Subnet, req.Address, avoid)
	if err != nil {
		return nil, err
	}
	defer func() {
		if reterr != nil {
			e.alloc.release(n.VNI, addr.Addr())
		}
	}()
	mac, err := endpointMAC(e.fdb, n.VNI, req.MAC)
	if err != nil {
		return nil, err
	}
	c := &claim{n: n, addr: addr, mac: mac, name: req.Name, nm: nm}
	if c.name == "" {
		c.name = req.Netns + "/" + req.IfName
	}
	if c.dev, err = tap.Create(e.tapConfig("ovt%d", n.MTU, mac, false)); err != nil {
		return nil, fmt.Errorf("attach: create TAP: %w", err)
	}
	pc := vtep.PortConfig{Name: c.name, VNI: n.VNI, Device: c.dev, MTU: n.MTU,
		Secure: req.Secure, MAC: mac, IPs: []netip.Addr{addr.Addr()}, FloodRate: int(e.floodRate.Load())}
	if c.port, err = e.sw.AddPort(pc); err != nil {
		c.dev.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	// Pinned: known for as long as it is attached. Announced by gossip,
	// with its names.
	set := func() {
		e.fdb.Set(fdb.Entry{
			Key: fdb.Key{VNI: n.VNI, MAC: mac}, Location: fdb.Location{Port: c.port},
			Origin: fdb.OriginLocal, IPs: []netip.Addr{addr.Addr()}, Pinned: true, Names: nm,
		})
	}
	if e.names == nil {
		set()
	} else if err := e.names.take(n, mac, nm, set); err != nil {
		e.sw.RemovePort(c.port)
		return nil, err
	}
	return c, nil
}

// abandon undoes a claim that lost: the port goes, and with it the binding.
func (e *endpoints) abandon(c *claim) {
	if err := e.sw.RemovePort(c.port); err != nil {
		e.log.Warn("abandon claim", "err", err)
	}
	e.alloc.release(c.n.VNI, c.addr.Addr())
}

// finish places the claimed port into the namespace and records it.
func (e *endpoints) finish(req attachRequest, path string, c *claim) (endpoint, error) {
	gw := gatewayOf(c.n, c.addr.Addr()) // its subnet's (route.go)
	p := tap.Placement{Netns: path, IfName: req.IfName, Addrs: []netip.Prefix{c.addr}, Gateway: gw}
	if req.Unconfigured {
		p = tap.Placement{Netns: path, IfName: req.IfName, Down: true}
	}
	if err := tap.Place(c.dev.Name(), p); err != nil {
		e.abandon(c)
		if errors.Is(err, tap.ErrLinkExists) {
			return endpoint{}, userErrorf("attach: %v", err)
		}
		return endpoint{}, fmt.Errorf("attach: %w", err)
	}
	// Persistent from now on: it survives a restart of the node.
	if p, ok := c.dev.(tap.Persister); ok {
		if err := p.SetPersist(true); err != nil {
			e.abandon(c)
			return endpoint{}, fmt.Errorf("attach: %w", err)
		}
	}
	ep := endpoint{
		Name: c.name, Network: c.n.Name, VNI: c.n.VNI, Node: e.cfg.Node, Netns: req.Netns, IfName: req.IfName,
		MAC: c.mac, Address: c.addr, Gateway: gw, MTU: c.n.MTU, Secure: req.Secure,
		Names: c.nm, DNS: c.n.DNSAddr(), ResolvConf: req.ResolvConf && c.n.DNSAddr().IsValid(),
	}
	ns, _ := tap.NetnsIDOf(path) // zero if gone already: then the reader notices
	e.mu.Lock()
	a := &attached{ep: ep, dev: c.dev, net: c.n, ns: ns}
	e.byPort[c.port] = a
	if ep.ResolvConf {
		a.ep.ResolvConf = e.syncResolvConfLocked(ep.Netns)
		ep = a.ep
	}
	e.saveStateLocked()
	e.mu.Unlock()
	e.alloc.release(c.n.VNI, c.addr.Addr()) // the endpoint holds it now
	e.log.Info("attached", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address, "mac", ep.MAC)
	return ep, nil
}

// endpointMAC parses the requested MAC or makes a locally administered one
// that no entry of the VNI uses.
func endpointMAC(t *fdb.Table, vni uint32, s string) (fdb.MAC, error) {
	if s != "" {
		mac, err := fdb.ParseMAC(s)
		if err != nil {
			return mac, userErrorf("attach: MAC %q: %v", s, err)
		}
		if mac.IsMulticast() || mac.IsZero() {
			return mac, userErrorf("attach: MAC %v is not a unicast address", mac)
		}
		if vtep.IsRouterMAC(mac) {
			return mac, userErrorf("attach: MAC %v is a router MAC (02:6f:76:...), which the switch keeps for the gateways", mac)
		}
		if e, ok := t.Get(fdb.Key{VNI: vni, MAC: mac}); ok && e.Origin != fdb.OriginLearned {
			return mac, userErrorf("attach: MAC %v is already in use on this network", mac)
		}
		return mac, nil
	}
	for {
		var mac fdb.MAC
		rand.Read(mac[:])
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
		if _, ok := t.Get(fdb.Key{VNI: vni, MAC: mac}); !ok && !vtep.IsRouterMAC(mac) {
			return mac, nil
		}
	}
}

// detach removes the endpoint at netns/ifname and frees its address.
func (e *endpoints) detach(netns, ifname string) (endpoint, error) {
	if ifname == "" {
		ifname = "eth0"
	}
	path := control.NetnsPath(netns)
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, a := range e.byPort {
		if control.NetnsPath(a.ep.Netns) == path && a.ep.IfName == ifname {
			return a.ep, e.removeLocked(id, "detached", false)
		}
	}
	return endpoint{}, fmt.Errorf("detach: nothing attached as %s in %s: %w", ifname, netns, errNotFound)
}

// removeLocked removes an endpoint: its TAP (made non-persistent first, so
// that closing it removes it), its port and MACs, and its entry in the
// state file. gone says the device failed (its namespace was deleted):
// there is no TAP left to remove. Called with e.mu held.
func (e *endpoints) removeLocked(id int, why string, gone bool) error {
	a := e.byPort[id]
	var perr error
	if !gone {
		if err := unpersist(a.dev); err != nil {
			perr = fmt.Errorf("TAP of %s may be left in its namespace: %w", a.ep.Name, err)
		}
	}
	delete(e.byPort, id)
	if a.ep.ResolvConf {
		e.syncResolvConfLocked(a.ep.Netns)
	}
	err := e.sw.RemovePort(id) // closes the TAP and withdraws its MACs
	if errors.Is(err, tap.ErrClosed) {
		err = nil
	}
	e.saveStateLocked()
	e.log.Info("endpoint removed", "endpoint", a.ep.Name, "why", why)
	return errors.Join(perr, err)
}

// portStopped is the switch's word that a port's device failed: for an
// endpoint, its namespace is gone, so the endpoint goes too.
func (e *endpoints) portStopped(id int, err error) {
	go func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, ok := e.byPort[id]; ok {
			e.removeLocked(id, "device gone: "+err.Error(), true)
		}
	}()
}

// list returns the endpoints, of one network or (name "") all, by name.
func (e *endpoints) list(network string) []endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []endpoint{}
	for _, a := range e.byPort {
		if network == "" || a.ep.Network == network {
			out = append(out, a.ep)
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// holder reports which endpoint holds addr in vni, or "".
func (e *endpoints) holder(vni uint32, addr netip.Addr) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.byPort {
		if a.ep.VNI == vni && a.ep.Address.Addr() == addr {
			return "endpoint " + a.ep.Name
		}
	}
	return ""
}

// links returns where each endpoint's link is, by port ID: its namespace's
// path and its name there.
func (e *endpoints) links() map[int][2]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[int][2]string, len(e.byPort))
	for id, a := range e.byPort {
		out[id] = [2]string{control.NetnsPath(a.ep.Netns), a.ep.IfName}
	}
	return out
}

// tapConfig is the configuration of an endpoint's TAP: attach creates it
// so (named from a template, then made persistent once configured) and a
// restart adopts it so (by its name in the namespace, persistent), so
// the two open it alike. An endpoint's TAP has one queue and lazy TSO
// (hostport.go, tapQueues, says why).
func (e *endpoints) tapConfig(name string, mtu int, mac fdb.MAC, persist bool) tap.Config {
	return tap.Config{Name: name, MTU: mtu, MAC: mac, Persist: persist, Offload: e.cfg.Offload, LazyTSO: e.cfg.Offload}
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
