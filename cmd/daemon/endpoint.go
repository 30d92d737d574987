package daemon

// This file holds attach and detach: a TAP port created by the daemon,
// moved into a network namespace, renamed, given a MAC, the network's MTU,
// an address and a default route via the gateway, and brought up. The
// daemon keeps the TAP's file descriptor, so the port lives exactly as long
// as the daemon holds it: detach closes it, and a namespace that disappears
// takes the device with it, which the port's reader notices.

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// netnsPath turns a name into its /run/netns path; a path stays as it is.
func netnsPath(s string) string {
	if strings.ContainsRune(s, '/') {
		return filepath.Clean(s)
	}
	return filepath.Join("/run/netns", s)
}

// Attach puts a new port of a network into a network namespace.
func (d *Daemon) Attach(req control.AttachRequest) (_ control.Endpoint, reterr error) {
	if req.Netns == "" {
		return control.Endpoint{}, userErrorf("attach: --netns is required")
	}
	if req.IfName == "" {
		req.IfName = "eth0"
	}
	if len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/: \t") {
		return control.Endpoint{}, userErrorf("attach: interface name %q: at most 15 characters, no '/', ':' or spaces", req.IfName)
	}
	path := netnsPath(req.Netns)
	if _, err := os.Stat(path); err != nil {
		return control.Endpoint{}, userErrorf("attach: network namespace %s: %v (create it with `ip netns add`)", req.Netns, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[req.Network]
	if !ok {
		return control.Endpoint{}, userErrorf("attach: no network %q (see `ovlsw network ls`)", req.Network)
	}
	for _, ep := range d.endpoints {
		if netnsPath(ep.Netns) == path && ep.IfName == req.IfName {
			return control.Endpoint{}, userErrorf("attach: %s in %s is already attached to network %s", req.IfName, req.Netns, ep.Network)
		}
	}
	addr := req.Address
	if addr.IsValid() {
		if n.Subnet.IsValid() && (!n.Subnet.Contains(addr.Addr()) || addr.Bits() != n.Subnet.Bits()) {
			return control.Endpoint{}, userErrorf("attach: address %v is not in network %s's subnet %v", addr, n.Name, n.Subnet)
		}
		if who := d.addressInUseLocked(n, addr.Addr()); who != "" {
			return control.Endpoint{}, userErrorf("attach: address %v is taken by %s", addr.Addr(), who)
		}
	} else {
		var err error
		if addr, err = d.allocateLocked(n); err != nil {
			return control.Endpoint{}, err
		}
	}
	mac, err := d.endpointMAC(n.VNI, req.MAC)
	if err != nil {
		return control.Endpoint{}, err
	}
	name := req.Name
	if name == "" {
		name = req.Netns + "/" + req.IfName
	}

	dev, err := tap.Create(tap.Config{Name: "ovt%d", MTU: n.MTU, MAC: mac})
	if err != nil {
		return control.Endpoint{}, fmt.Errorf("attach: create TAP: %w", err)
	}
	defer func() {
		if reterr != nil {
			dev.Close() // removes the TAP, wherever it is by now
		}
	}()
	gw := n.Gateway
	if err := moveAndConfigure(dev.Name(), path, req.IfName, addr, gw); err != nil {
		return control.Endpoint{}, fmt.Errorf("attach: %w", err)
	}
	id, err := d.sw.AddPort(vtep.PortConfig{Name: name, VNI: n.VNI, Device: dev, MTU: n.MTU})
	if err != nil {
		return control.Endpoint{}, fmt.Errorf("attach: %w", err)
	}
	d.fdb.Set(fdb.Entry{
		Key: fdb.Key{VNI: n.VNI, MAC: mac}, Location: fdb.Location{Port: id},
		Origin: fdb.OriginLocal, IPs: []netip.Addr{addr.Addr()}, Pinned: true,
	})
	ep := &control.Endpoint{
		Name: name, Network: n.Name, VNI: n.VNI, Node: d.cfg.Name, Netns: req.Netns, IfName: req.IfName,
		MAC: mac.String(), Address: addr, Gateway: gw, MTU: n.MTU,
	}
	d.endpoints[id] = ep
	d.log.Info("attached", "endpoint", name, "network", n.Name, "address", addr, "mac", ep.MAC)
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
	path := netnsPath(req.Netns)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, ep := range d.endpoints {
		if netnsPath(ep.Netns) == path && ep.IfName == req.IfName {
			return *ep, d.removeEndpointLocked(id, "detached")
		}
	}
	return control.Endpoint{}, fmt.Errorf("detach: nothing attached as %s in %s: %w", req.IfName, req.Netns, errNotFound)
}

func (d *Daemon) removeEndpointLocked(id int, why string) error {
	ep := d.endpoints[id]
	delete(d.endpoints, id)
	err := d.sw.RemovePort(id) // closes the TAP and withdraws its MACs
	if errors.Is(err, tap.ErrClosed) {
		err = nil
	}
	d.log.Info("endpoint removed", "endpoint", ep.Name, "why", why)
	return err
}

// portStopped is the switch's word that a port's device failed: for an
// endpoint, its namespace is gone, so the endpoint goes too.
func (d *Daemon) portStopped(id int, err error) {
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.endpoints[id]; ok {
			d.removeEndpointLocked(id, "device gone: "+err.Error())
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
