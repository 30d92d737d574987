package daemon

// This file holds the networks. They are cluster-wide: a network created
// on any node is put into the gossip agent, which carries it to every node
// and calls back (applyNetworks) with the full list wherever it changes;
// each node then serves every network: flood policy, peer lists and the
// VNIs it advertises follow the list.

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// DefaultNetwork names the network `ovlsw up --vni N` creates.
const DefaultNetwork = "default"

var networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// createNetwork validates n against the cluster's networks and puts it.
// An identical network of the same name is accepted as is (ovlsw up --vni
// on every node of a cluster).
func (d *Daemon) createNetwork(n control.Network) error {
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
	if n.Flood == "" {
		n.Flood = d.cfg.Flood
	}
	pol, err := vtep.ParseFloodPolicy(n.Flood)
	if err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	n.Flood = pol.String()
	a := d.agent.Load()
	for _, o := range a.Networks() {
		switch {
		case o.Name == n.Name && o.VNI == n.VNI && (!n.Subnet.IsValid() || o.Subnet == n.Subnet) &&
			(!n.Gateway.IsValid() || o.Gateway == n.Gateway):
			return nil // already there: a node joining with the same --vni (and --subnet, if given)
		case o.Name == n.Name:
			return userErrorf("network %s already exists (VNI %d, subnet %v)", n.Name, o.VNI, o.Subnet)
		case o.VNI == n.VNI:
			return userErrorf("VNI %d is already used by network %s", n.VNI, o.Name)
		case n.Subnet.IsValid() && o.Subnet.IsValid() && n.Subnet.Overlaps(o.Subnet):
			return userErrorf("subnet %v overlaps network %s's %v", n.Subnet, o.Name, o.Subnet)
		}
	}
	if err := a.PutNetwork(toGossip(n)); err != nil {
		return err
	}
	d.applyNetworks(a.Networks())
	d.log.Debug("network created", "network", n.Name, "vni", n.VNI, "subnet", n.Subnet, "mtu", n.MTU)
	return nil
}

func toGossip(n control.Network) gossip.Network {
	return gossip.Network{Name: n.Name, VNI: n.VNI, Subnet: n.Subnet, Gateway: n.Gateway, MTU: n.MTU, Flood: n.Flood}
}

// applyNetworks makes the node serve exactly the networks in list. The
// agent calls it whenever the cluster's list changes.
func (d *Daemon) applyNetworks(list []gossip.Network) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make(map[string]*control.Network, len(list))
	changed := map[uint32]bool{}
	for _, g := range list {
		n := &control.Network{Name: g.Name, VNI: g.VNI, Subnet: g.Subnet, Gateway: g.Gateway, MTU: g.MTU, Flood: g.Flood}
		if n.MTU == 0 || n.MTU > d.mtu {
			n.MTU = d.mtu
		}
		next[n.Name] = n
		if old, ok := d.networks[n.Name]; !ok || *old != *n {
			pol, _ := vtep.ParseFloodPolicy(n.Flood)
			d.sw.SetFloodPolicy(n.VNI, pol)
			changed[n.VNI] = true
		}
	}
	for name, old := range d.networks {
		if _, ok := next[name]; !ok {
			changed[old.VNI] = true
			for _, ep := range d.endpoints {
				if ep.Network == name {
					d.log.Warn("network removed elsewhere while an endpoint is attached here", "network", name, "endpoint", ep.Name)
				}
			}
		}
	}
	d.networks = next
	if len(changed) > 0 {
		d.networksChangedLocked(changed)
	}
}

// removeNetwork deletes a network no endpoint in the cluster uses.
func (d *Daemon) removeNetwork(name string) error {
	d.mu.Lock()
	n, ok := d.networks[name]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("network %s: %w", name, errNotFound)
	}
	var in []string
	for _, ep := range d.clusterEndpoints(n) {
		who := ep.Name
		if who == "" {
			who = ep.MAC
		}
		in = append(in, fmt.Sprintf("%s on %s (%v)", who, ep.Node, ep.Address.Addr()))
	}
	d.mu.Lock()
	if d.hostPort != 0 && name == DefaultNetwork {
		in = append(in, "the host port "+d.cfg.TAP+" on "+d.cfg.Name)
	}
	d.mu.Unlock()
	if len(in) > 0 {
		slices.Sort(in)
		return userErrorf("network %s still has endpoints attached: %s; detach them first", name, strings.Join(in, ", "))
	}
	a := d.agent.Load()
	if err := a.DeleteNetwork(name); err != nil {
		return err
	}
	d.applyNetworks(a.Networks())
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
	return control.NetworkDetail{Network: *n, Endpoints: d.clusterEndpoints(n)}, nil
}

// clusterEndpoints lists n's endpoints on every node: this node's with
// their names, the others' from their gossip bindings (node, MAC, IP). The
// host port of the default network is not an endpoint.
func (d *Daemon) clusterEndpoints(n *control.Network) []control.Endpoint {
	out := d.listEndpoints(n.Name)
	bits := n.Subnet.Bits()
	for _, e := range d.fdb.Entries() {
		if e.VNI != n.VNI || e.Origin != fdb.OriginGossip || len(e.IPs) == 0 {
			continue
		}
		ep := control.Endpoint{Network: n.Name, VNI: n.VNI, Node: e.Node, MAC: e.MAC.String(), Gateway: n.Gateway, MTU: n.MTU}
		if bits < 0 {
			bits = e.IPs[0].BitLen()
		}
		ep.Address = netip.PrefixFrom(e.IPs[0], bits)
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b control.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Address.Addr().Compare(b.Address.Addr()))
	})
	return out
}

func (d *Daemon) vnis() []uint32 {
	return slices.Clone(*d.vniSet.Load())
}
