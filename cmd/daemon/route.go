package daemon

// This file holds routing between the subnets of a network (issue 17): the
// owner-less glue that tells the switch, for each network, the addresses
// it answers for with the router MAC and the subnets it routes between,
// and what `ovlsw routes` shows. The switch does the routing
// (vtep/routing.go); every node does it for every network it has, so a
// node that joins routes as soon as gossip hands it the network.

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// routeServer is the switch's routing side: *vtep.Switch. A networkServer
// without it (tests' fakes) routes nothing.
type routeServer interface {
	SetGatewayAddrs(vni uint32, addrs []netip.Addr)
	SetSubnets(vni uint32, subnets []vtep.Subnet)
}

var _ routeServer = (*vtep.Switch)(nil)

// gatewayAddrs returns the addresses the switch answers ARP and ND for in
// n's VNI with the router MAC when no endpoint holds them: every subnet's
// gateway, in order, then its DNS address (names.go), if it has its own,
// so that one list reaches the switch.
func gatewayAddrs(n gossip.Network) []netip.Addr {
	var out []netip.Addr
	for _, s := range n.Subnets() {
		if s.Gateway.IsValid() && !slices.Contains(out, s.Gateway) {
			out = append(out, s.Gateway)
		}
	}
	if n.DNS.IsValid() && !slices.Contains(out, n.DNS) {
		out = append(out, n.DNS)
	}
	return out
}

// routeSubnets returns n's subnets as the switch takes them.
func routeSubnets(n gossip.Network) []vtep.Subnet {
	var out []vtep.Subnet
	for _, s := range n.Subnets() {
		out = append(out, vtep.Subnet{Prefix: s.Prefix, Gateway: s.Gateway})
	}
	return out
}

// gatewayOf returns the gateway of the subnet of n that holds addr: an
// endpoint's default route. The zero Addr if there is none.
func gatewayOf(n gossip.Network, addr netip.Addr) netip.Addr {
	s, _ := n.SubnetOf(addr)
	return s.Gateway
}

// routesChangedLocked tells the switch about network n's gateways and
// subnets after it was old: either may be the zero Network (created,
// removed). list is the cluster's new list: old's VNI is cleared only if
// no network in it has that VNI now. Called with r.mu held.
func (r *networks) routesChangedLocked(old, n gossip.Network, list []gossip.Network) {
	rs, ok := r.sw.(routeServer)
	if !ok {
		return
	}
	reused := slices.ContainsFunc(list, func(o gossip.Network) bool { return o.VNI == old.VNI })
	if old.Name != "" && old.VNI != n.VNI && !reused {
		rs.SetGatewayAddrs(old.VNI, nil)
		rs.SetSubnets(old.VNI, nil)
	}
	if n.Name != "" {
		rs.SetGatewayAddrs(n.VNI, gatewayAddrs(n))
		rs.SetSubnets(n.VNI, routeSubnets(n))
	}
}

// routes returns what the node routes: every network with a gateway, its
// subnets, and the addresses in them the forwarding table knows, with the
// MAC routed frames get and where it is.
func (d *Daemon) routes() control.Routes {
	st := d.sw.RouteStats()
	out := control.Routes{Networks: []control.RoutedNetwork{}, Stats: control.RouteStats{
		Routed: st.Routed, EchoReplies: st.EchoReplies, TimeExceeded: st.TimeExceeded,
		Unreachable: st.Unreachable, TooBig: st.TooBig, Limited: st.Limited}}
	entries := d.fdb.Entries()
	now := d.fdb.Now()
	for _, n := range d.nets.list() {
		if len(gatewayAddrs(n)) == 0 {
			continue
		}
		rn := control.RoutedNetwork{Network: n.Name, VNI: n.VNI, RouterMAC: vtep.RouterMAC(n.VNI).String(), Hosts: []control.RouteHost{}}
		for _, s := range n.Subnets() {
			rn.Subnets = append(rn.Subnets, control.Subnet{Subnet: s.Prefix, Gateway: s.Gateway})
		}
		for _, e := range entries {
			if e.VNI != n.VNI {
				continue
			}
			for _, ip := range e.IPs {
				if _, ok := n.SubnetOf(ip); !ok {
					continue
				}
				fe := toControlFDBEntry(e, now, d.sw.PortName(e.Port))
				rn.Hosts = append(rn.Hosts, control.RouteHost{Address: ip, MAC: e.MAC.String(), Where: fe.Where})
			}
		}
		slices.SortFunc(rn.Hosts, func(a, b control.RouteHost) int { return a.Address.Compare(b.Address) })
		out.Networks = append(out.Networks, rn)
	}
	slices.SortFunc(out.Networks, func(a, b control.RoutedNetwork) int { return cmp.Compare(a.Network, b.Network) })
	return out
}
