package daemon

// This file holds attach and detach: a TAP port created by the daemon,
// moved into a network namespace, renamed, given a MAC, the network's MTU,
// an address and a default route via the gateway, and brought up. Once
// configured, the TAP is made persistent, so that it outlives the daemon's
// file descriptor and a restarted daemon can take it back (restart.go);
// detach makes it non-persistent and closes it, which removes it, and a
// namespace that disappears takes the device with it, which the port's
// reader notices.

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// Attach puts a new port of a network into a network namespace. An
// allocated address is claimed cluster-wide first (see ipam.go).
func (d *Daemon) Attach(req control.AttachRequest) (control.Endpoint, error) {
	if req.Netns == "" {
		return control.Endpoint{}, userErrorf("attach: --netns is required")
	}
	if req.IfName == "" {
		req.IfName = "eth0"
	}
	if len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/: \t") {
		return control.Endpoint{}, userErrorf("attach: interface name %q: at most 15 characters, no '/', ':' or spaces", req.IfName)
	}
	path := control.NetnsPath(req.Netns)
	if _, err := os.Stat(path); err != nil {
		return control.Endpoint{}, userErrorf("attach: network namespace %s: %v (create it with `ip netns add`)", req.Netns, err)
	}
	avoid := map[netip.Addr]bool{}
	for try := 0; ; try++ {
		c, err := d.claim(req, path, avoid)
		if err != nil {
			return control.Endpoint{}, err
		}
		if d.othersAlive() {
			time.Sleep(d.cfg.ClaimSettle) // let a conflicting claim arrive
		}
		winner, lost := d.lostClaim(c.n.VNI, c.addr.Addr(), c.mac)
		if !lost {
			return d.finishAttach(req, path, c)
		}
		d.abandon(c)
		if req.Address.IsValid() || try >= 8 {
			return control.Endpoint{}, userErrorf("attach: address %v was claimed at the same moment by node %s", c.addr.Addr(), winner)
		}
		d.log.Info("address claimed concurrently elsewhere; picking another", "address", c.addr.Addr(), "winner", winner)
		avoid[c.addr.Addr()] = true
	}
}

// claim is an endpoint being attached: its port exists and its binding is
// announced, but the namespace is not touched yet.
type claim struct {
	n    *control.Network
	addr netip.Prefix
	mac  fdb.MAC
	dev  tap.Device
	port int
	name string
}

// claim picks the address and MAC, creates the TAP and its port, and
// announces the binding.
func (d *Daemon) claim(req control.AttachRequest, path string, avoid map[netip.Addr]bool) (_ *claim, reterr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[req.Network]
	if !ok {
		return nil, userErrorf("attach: no network %q (see `ovlsw network ls`)", req.Network)
	}
	for _, ep := range d.endpoints {
		if control.NetnsPath(ep.Netns) == path && ep.IfName == req.IfName {
			return nil, userErrorf("attach: %s in %s is already attached to network %s", req.IfName, req.Netns, ep.Network)
		}
	}
	addr := req.Address
	if addr.IsValid() {
		if n.Subnet.IsValid() && (!n.Subnet.Contains(addr.Addr()) || addr.Bits() != n.Subnet.Bits()) {
			return nil, userErrorf("attach: address %v is not in network %s's subnet %v", addr, n.Name, n.Subnet)
		}
		if who := d.addressInUseLocked(n, addr.Addr()); who != "" {
			return nil, userErrorf("attach: address %v is taken by %s", addr.Addr(), who)
		}
	} else {
		var err error
		if addr, err = d.allocateLocked(n, avoid); err != nil {
			return nil, err
		}
	}
	mac, err := d.endpointMAC(n.VNI, req.MAC)
	if err != nil {
		return nil, err
	}
	c := &claim{n: n, addr: addr, mac: mac, name: req.Name}
	if c.name == "" {
		c.name = req.Netns + "/" + req.IfName
	}
	if c.dev, err = tap.Create(d.endpointTAP("ovt%d", n.MTU, mac, false)); err != nil {
		return nil, fmt.Errorf("attach: create TAP: %w", err)
	}
	pc := vtep.PortConfig{Name: c.name, VNI: n.VNI, Device: c.dev, MTU: n.MTU,
		Secure: !req.NoPortSecurity, MAC: mac, IPs: []netip.Addr{addr.Addr()}, FloodRate: d.cfg.FloodRate}
	if c.port, err = d.sw.AddPort(pc); err != nil {
		c.dev.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	d.pending[fdb.IPKey{VNI: n.VNI, IP: addr.Addr()}] = struct{}{}
	// Pinned: known for as long as it is attached. Announced by gossip.
	d.fdb.Set(fdb.Entry{
		Key: fdb.Key{VNI: n.VNI, MAC: mac}, Location: fdb.Location{Port: c.port},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{addr.Addr()}, Pinned: true,
	})
	return c, nil
}

// abandon undoes a claim that lost: the port goes, and with it the binding.
func (d *Daemon) abandon(c *claim) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, fdb.IPKey{VNI: c.n.VNI, IP: c.addr.Addr()})
	if err := d.sw.RemovePort(c.port); err != nil {
		d.log.Warn("abandon claim", "err", err)
	}
}

// finishAttach moves the claimed port into the namespace and configures it.
func (d *Daemon) finishAttach(req control.AttachRequest, path string, c *claim) (control.Endpoint, error) {
	if err := moveAndConfigure(c.dev.Name(), path, req.IfName, c.addr, c.n.Gateway); err != nil {
		d.abandon(c)
		if errors.As(err, new(*userError)) {
			return control.Endpoint{}, userErrorf("attach: %v", err)
		}
		return control.Endpoint{}, fmt.Errorf("attach: %w", err)
	}
	// Persistent from now on: it survives a restart of the daemon.
	if p, ok := c.dev.(tap.Persister); ok {
		if err := p.SetPersist(true); err != nil {
			d.abandon(c)
			return control.Endpoint{}, fmt.Errorf("attach: %w", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, fdb.IPKey{VNI: c.n.VNI, IP: c.addr.Addr()})
	ep := &control.Endpoint{
		Name: c.name, Network: c.n.Name, VNI: c.n.VNI, Node: d.cfg.Name, Netns: req.Netns, IfName: req.IfName,
		MAC: c.mac.String(), Address: c.addr, Gateway: c.n.Gateway, MTU: c.n.MTU, Secure: !req.NoPortSecurity,
	}
	d.endpoints[c.port] = ep
	ns, _ := netnsID(path) // zero if gone already: then the reader notices
	d.epPorts[c.port] = epPort{dev: c.dev, net: *c.n, ns: ns}
	d.saveStateLocked()
	d.log.Info("attached", "endpoint", ep.Name, "network", ep.Network, "address", ep.Address, "mac", ep.MAC)
	return *ep, nil
}

// endpointMAC parses the requested MAC or makes a locally administered one
// that no entry of the VNI uses.
func (d *Daemon) endpointMAC(vni uint32, s string) (fdb.MAC, error) {
	if s != "" {
		mac, err := fdb.ParseMAC(s)
		if err != nil {
			return mac, userErrorf("attach: --mac %q: %v", s, err)
		}
		if mac.IsMulticast() || mac.IsZero() {
			return mac, userErrorf("attach: --mac %v is not a unicast address", mac)
		}
		if e, ok := d.fdb.Get(fdb.Key{VNI: vni, MAC: mac}); ok && e.Origin != fdb.OriginLearned {
			return mac, userErrorf("attach: MAC %v is already in use on this network", mac)
		}
		return mac, nil
	}
	for {
		var mac fdb.MAC
		rand.Read(mac[:])
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
		if _, ok := d.fdb.Get(fdb.Key{VNI: vni, MAC: mac}); !ok {
			return mac, nil
		}
	}
}

// moveAndConfigure moves link tmp into the namespace at path as ifname,
// with addr, up, and a default route via gw if gw is set.
func moveAndConfigure(tmp, path, ifname string, addr netip.Prefix, gw netip.Addr) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	if _, err := h.LinkByName(ifname); err == nil {
		return userErrorf("%s already exists in network namespace %s", ifname, path)
	}
	link, err := netlink.LinkByName(tmp)
	if err != nil {
		return fmt.Errorf("find %s: %w", tmp, err)
	}
	if err := netlink.LinkSetNsFd(link, int(ns)); err != nil {
		return fmt.Errorf("move %s into %s: %w", tmp, path, err)
	}
	if link, err = h.LinkByName(tmp); err != nil {
		return fmt.Errorf("find %s in %s: %w", tmp, path, err)
	}
	if err := h.LinkSetName(link, ifname); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, ifname, err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
		if addr.Addr().Is6() {
			a.Flags = 0x02 // IFA_F_NODAD: the daemon vouches the address is unique
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add %v to %s: %w", addr, ifname, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", ifname, err)
	}
	if gw.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %v: %w", gw, err)
		}
	}
	return nil
}

// Detach removes the endpoint at netns/ifname and frees its address.
func (d *Daemon) Detach(req control.DetachRequest) (control.Endpoint, error) {
	if req.IfName == "" {
		req.IfName = "eth0"
	}
	path := control.NetnsPath(req.Netns)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, ep := range d.endpoints {
		if control.NetnsPath(ep.Netns) == path && ep.IfName == req.IfName {
			return *ep, d.removeEndpointLocked(id, "detached", false)
		}
	}
	return control.Endpoint{}, fmt.Errorf("detach: nothing attached as %s in %s: %w", req.IfName, req.Netns, errNotFound)
}

// removeEndpointLocked removes an endpoint: its TAP (made non-persistent
// first, so that closing it removes it), its port and MACs, and its entry
// in the state file. gone says the device failed (its namespace was
// deleted): there is no TAP left to remove.
func (d *Daemon) removeEndpointLocked(id int, why string, gone bool) error {
	ep := d.endpoints[id]
	var perr error
	if !gone {
		if err := unpersist(d.epPorts[id].dev); err != nil {
			perr = fmt.Errorf("TAP of %s may be left in its namespace: %w", ep.Name, err)
		}
	}
	delete(d.endpoints, id)
	delete(d.epPorts, id)
	err := d.sw.RemovePort(id) // closes the TAP and withdraws its MACs
	if errors.Is(err, tap.ErrClosed) {
		err = nil
	}
	d.saveStateLocked()
	d.log.Info("endpoint removed", "endpoint", ep.Name, "why", why)
	return errors.Join(perr, err)
}

// portStopped is the switch's word that a port's device failed: for an
// endpoint, its namespace is gone, so the endpoint goes too.
func (d *Daemon) portStopped(id int, err error) {
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.endpoints[id]; ok {
			d.removeEndpointLocked(id, "device gone: "+err.Error(), true)
		}
	}()
}

// listEndpoints returns the endpoints, of one network or (name "") all.
func (d *Daemon) listEndpoints(network string) []control.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []control.Endpoint{}
	for _, ep := range d.endpoints {
		if network == "" || ep.Network == network {
			out = append(out, *ep)
		}
	}
	slices.SortFunc(out, func(a, b control.Endpoint) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// queueDrops fills in each port's QueueDrops: the TX drops of its TAP as
// the kernel counts them (frames the container or host sent that the TAP
// queue could not hold until ovlsw read them). Endpoints' links are read
// in their namespaces. Errors leave the figure zero.
func (d *Daemon) queueDrops(ports []vtep.PortStats) {
	d.mu.Lock()
	where := make(map[int][2]string, len(d.endpoints)+1)
	for id, ep := range d.endpoints {
		where[id] = [2]string{control.NetnsPath(ep.Netns), ep.IfName}
	}
	if d.hostPort != 0 {
		where[d.hostPort] = [2]string{"", d.cfg.TAP}
	}
	d.mu.Unlock()
	for i := range ports {
		w, ok := where[ports[i].ID]
		if !ok {
			continue
		}
		if n, err := txDropped(w[0], w[1]); err == nil {
			ports[i].QueueDrops = n
		}
	}
}

// txDropped reads a link's TX drop counter, in the namespace at path ("":
// the daemon's own).
func txDropped(path, ifname string) (uint64, error) {
	h := &netlink.Handle{}
	if path != "" {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return 0, err
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return 0, err
		}
		defer h.Close()
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		return 0, err
	}
	if s := link.Attrs().Statistics; s != nil {
		return s.TxDropped, nil
	}
	return 0, nil
}
