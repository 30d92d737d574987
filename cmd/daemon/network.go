package daemon

// This file holds the node's networks and address allocation. Networks are
// local to the node for now; the gossip control plane will carry them
// cluster-wide.

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep"
)

// DefaultNetwork names the network `ovlsw up --vni N` creates.
const DefaultNetwork = "default"

var networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (d *Daemon) createNetwork(n control.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.createNetworkLocked(n)
}

// createNetworkLocked validates and adds a network. Two networks never share
// a name, a VNI or overlapping subnets.
func (d *Daemon) createNetworkLocked(n control.Network) error {
	if !networkName.MatchString(n.Name) {
		return userErrorf("network name %q: use 1 to 64 letters, digits, '_', '.', '-'", n.Name)
	}
	if n.VNI < 1 || n.VNI > vtep.MaxVNI {
		return userErrorf("network %s: VNI %d out of range 1..%d", n.Name, n.VNI, vtep.MaxVNI)
	}
	if n.Subnet.IsValid() && n.Subnet != n.Subnet.Masked() {
		return userErrorf("network %s: subnet %v has host bits set: did you mean %v?", n.Name, n.Subnet, n.Subnet.Masked())
	}
	if n.Gateway.IsValid() && !n.Subnet.Contains(n.Gateway) {
		return userErrorf("network %s: gateway %v is not in subnet %v", n.Name, n.Gateway, n.Subnet)
	}
	if n.MTU == 0 {
		n.MTU = d.mtu
	}
	if n.MTU < 576 || n.MTU > d.mtu {
		return userErrorf("network %s: MTU %d out of range 576..%d (the underlay MTU minus 50)", n.Name, n.MTU, d.mtu)
	}
	for _, o := range d.networks {
		switch {
		case o.Name == n.Name:
			return userErrorf("network %s already exists", n.Name)
		case o.VNI == n.VNI:
			return userErrorf("VNI %d is already used by network %s", n.VNI, o.Name)
		case n.Subnet.IsValid() && o.Subnet.IsValid() && n.Subnet.Overlaps(o.Subnet):
			return userErrorf("subnet %v overlaps network %s's %v", n.Subnet, o.Name, o.Subnet)
		}
	}
	if n.Flood == "" {
		n.Flood = d.cfg.Flood
	}
	pol, err := vtep.ParseFloodPolicy(n.Flood)
	if err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	n.Flood = pol.String()
	d.networks[n.Name] = &n
	d.sw.SetFloodPolicy(n.VNI, pol)
	d.networksChangedLocked(n.VNI)
	d.log.Debug("network created", "network", n.Name, "vni", n.VNI, "subnet", n.Subnet, "mtu", n.MTU)
	return nil
}

// removeNetwork deletes a network with no endpoints.
func (d *Daemon) removeNetwork(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.networks[name]
	if !ok {
		return fmt.Errorf("network %s: %w", name, errNotFound)
	}
	var in []string
	for _, ep := range d.endpoints {
		if ep.Network == name {
			in = append(in, ep.Name)
		}
	}
	if d.hostPort != 0 && name == DefaultNetwork {
		in = append(in, d.cfg.TAP+" (the host port)")
	}
	if len(in) > 0 {
		slices.Sort(in)
		return userErrorf("network %s still has endpoints attached: %s; detach them first", name, strings.Join(in, ", "))
	}
	delete(d.networks, name)
	d.networksChangedLocked(n.VNI)
	d.log.Info("network removed", "network", name)
	return nil
}

func (d *Daemon) listNetworks() []control.Network {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]control.Network, 0, len(d.networks))
	for _, n := range d.networks {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b control.Network) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (d *Daemon) inspectNetwork(name string) (control.NetworkDetail, error) {
	d.mu.Lock()
	n, ok := d.networks[name]
	d.mu.Unlock()
	if !ok {
		return control.NetworkDetail{}, fmt.Errorf("network %s: %w", name, errNotFound)
	}
	return control.NetworkDetail{Network: *n, Endpoints: d.listEndpoints(name)}, nil
}

func (d *Daemon) vnis() []uint32 {
	return slices.Clone(*d.vniSet.Load())
}

// addressInUseLocked reports who holds addr in network n, or "".
func (d *Daemon) addressInUseLocked(n *control.Network, addr netip.Addr) string {
	if addr == n.Gateway {
		return "the gateway"
	}
	for _, ep := range d.endpoints {
		if ep.VNI == n.VNI && ep.Address.Addr() == addr {
			return "endpoint " + ep.Name
		}
	}
	if n.Name == DefaultNetwork {
		for _, a := range d.cfg.Address {
			if a.Addr() == addr {
				return "the host port " + d.cfg.TAP
			}
		}
	}
	if mac, ok := d.fdb.LookupIP(fdb.IPKey{VNI: n.VNI, IP: addr}); ok {
		return "MAC " + mac.String()
	}
	return ""
}

// allocateLocked picks the lowest free address of n's subnet, skipping the
// network (or IPv6 subnet-router anycast) and broadcast addresses.
func (d *Daemon) allocateLocked(n *control.Network) (netip.Prefix, error) {
	if !n.Subnet.IsValid() {
		return netip.Prefix{}, userErrorf("network %s has no subnet to allocate from: pass --ip", n.Name)
	}
	for a := n.Subnet.Addr().Next(); n.Subnet.Contains(a); a = a.Next() {
		if a.Is4() && !n.Subnet.Contains(a.Next()) {
			break // the broadcast address
		}
		if d.addressInUseLocked(n, a) == "" {
			return netip.PrefixFrom(a, n.Subnet.Bits()), nil
		}
	}
	return netip.Prefix{}, userErrorf("network %s: no free address left in %v", n.Name, n.Subnet)
}
