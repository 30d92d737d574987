package daemon

// This file is the one place where the control API's wire types
// (cmd/control) and the node's own types meet: every conversion between
// them is here.

import (
	"net/netip"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

func toControlNetwork(n gossip.Network) control.Network {
	c := control.Network{Name: n.Name, VNI: n.VNI, Subnet: n.Subnet, Gateway: n.Gateway, MTU: n.MTU, Flood: n.Flood, Group: n.Group, DNS: n.DNSAddr(), Encrypted: n.Encrypted}
	for _, s := range n.Subnets() {
		c.Subnets = append(c.Subnets, control.Subnet{Subnet: s.Prefix, Gateway: s.Gateway})
	}
	if len(gatewayAddrs(n)) > 0 {
		c.RouterMAC = vtep.RouterMAC(n.VNI).String()
	}
	return c
}

// fromControlNetwork converts n; Subnets, if given, replace Subnet and
// Gateway (an error if both are given and disagree, or too many).
func fromControlNetwork(n control.Network) (gossip.Network, error) {
	g := gossip.Network{Name: n.Name, VNI: n.VNI, Subnet: n.Subnet, Gateway: n.Gateway, MTU: n.MTU, Flood: n.Flood, Group: n.Group, Encrypted: n.Encrypted}
	if n.DNS != n.Gateway && (len(n.Subnets) == 0 || n.DNS != n.Subnets[0].Gateway) {
		g.DNS = n.DNS // the default, the first gateway, is kept out of the record
	}
	if len(n.Subnets) == 0 {
		return g, nil
	}
	if n.Subnet.IsValid() && n.Subnet != n.Subnets[0].Subnet || n.Gateway.IsValid() && n.Gateway != n.Subnets[0].Gateway {
		return g, userErrorf("network %s: subnet %v and gateway %v disagree with the first of subnets", n.Name, n.Subnet, n.Gateway)
	}
	subs := make([]gossip.NetSubnet, len(n.Subnets))
	for i, s := range n.Subnets {
		subs[i] = gossip.NetSubnet{Prefix: s.Subnet, Gateway: s.Gateway}
	}
	if err := g.SetSubnets(subs); err != nil {
		return g, userErrorf("%v", err)
	}
	return g, nil
}

func toControlEndpoint(ep endpoint) control.Endpoint {
	out := control.Endpoint{
		Name: ep.Name, Network: ep.Network, VNI: ep.VNI, Node: ep.Node, Netns: ep.Netns, IfName: ep.IfName,
		MAC: ep.MAC.String(), Address: ep.Address, Gateway: ep.Gateway, MTU: ep.MTU, Secure: ep.Secure,
		DNS: ep.DNS,
	}
	if nm := ep.Names; nm != nil {
		out.DNSName, out.Aliases, out.Service = nm.Name, nm.Aliases, nm.Service
	}
	return out
}

func fromControlAttach(r control.AttachRequest) attachRequest {
	return attachRequest{Netns: r.Netns, Network: r.Network, Address: r.Address, Subnet: r.Subnet, IfName: r.IfName,
		MAC: r.MAC, Name: r.Name, DNSName: r.DNSName, Aliases: r.Aliases, Service: r.Service, Secure: !r.NoPortSecurity,
		ResolvConf: !r.NoResolvConf, Unconfigured: r.Unconfigured}
}

func toControlName(network string, r dns.Record, node string) control.Name {
	return control.Name{Network: network, Name: r.Name, Aliases: r.Aliases, Service: r.Service,
		IPs: r.IPs, MAC: r.Owner.String(), Node: node}
}

func toControlDNS(s dns.Stats, ups []netip.AddrPort) *control.DNS {
	out := &control.DNS{
		Answered: s.Answered + s.NoData, NoData: s.NoData, NXDomain: s.NXDomain, Forwarded: s.Forwarded,
		Upstream: s.UpstreamAnswered, ServFail: s.ServFail, Refused: s.Refused, FormErr: s.FormErr,
		Truncated: s.Truncated, TCP: s.TCP, Upstreams: []string{},
		Dropped: map[string]uint64{
			"rate": s.Dropped.Rate, "malformed": s.Dropped.Malformed, "fragment": s.Dropped.Fragment,
			"not_unicast": s.Dropped.NotUnicast, "in_flight": s.Dropped.InFlight,
			"tcp_unsupported": s.Dropped.TCPUnsupported, "tcp_stale": s.Dropped.TCPStale,
			"no_room": s.Dropped.NoRoom, "closed": s.Dropped.Closed,
		},
	}
	out.Queries = out.Answered + s.NXDomain + s.Forwarded + s.Refused + s.FormErr + s.NotImp
	for _, u := range ups {
		out.Upstreams = append(out.Upstreams, u.String())
	}
	return out
}

func toControlMember(m gossip.MemberInfo) control.Member {
	return control.Member{Name: m.Name, Addr: m.Addr, VTEP: m.VTEP, VNIs: m.VNIs, State: m.State, Bindings: m.Bindings}
}

func toControlGossip(st gossip.Stats, addr netip.AddrPort, encrypted bool) *control.Gossip {
	return &control.Gossip{
		Addr: addr, LocalBindings: st.LocalBindings, RemoteBindings: st.RemoteBindings,
		MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, Malformed: st.Malformed,
		Encrypted: encrypted,
	}
}

func toControlTraffic(t vtep.Traffic) control.Traffic {
	return control.Traffic{RxFrames: t.RxFrames, RxBytes: t.RxBytes, TxFrames: t.TxFrames, TxBytes: t.TxBytes}
}

func toControlStats(s vtep.Stats) control.Stats {
	out := control.Stats{
		Offload: control.Offload{TAP: s.Offload.TAP, UDP: s.Offload.UDP, GRO: s.Offload.GRO},
		Drops:   s.Drops,
		Proxy: control.Proxy{ARPAnswered: s.Proxy.ARPAnswered, NDAnswered: s.Proxy.NDAnswered,
			Flooded: s.Proxy.Flooded, Dropped: s.Proxy.Dropped, GratuitousSent: s.Proxy.GratuitousSent},
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, control.Port{ID: p.ID, Name: p.Name, VNI: p.VNI, MTU: p.MTU, Error: p.Error,
			Traffic: toControlTraffic(p.Traffic)})
	}
	for _, p := range s.Peers {
		out.Peers = append(out.Peers, control.Peer{Addr: p.Addr, VNIs: p.VNIs, Traffic: toControlTraffic(p.Traffic)})
	}
	return out
}

// toControlFDBEntry converts e; port is the name of its port, if local.
func toControlFDBEntry(e fdb.Entry, now time.Time, port string) control.FDBEntry {
	fe := control.FDBEntry{
		VNI: e.VNI, MAC: e.MAC.String(), IPs: e.IPs, Origin: e.Origin.String(),
		Node: e.Node, Seq: e.Seq, Age: now.Sub(e.Seen).Round(time.Second).Seconds(), Dup: e.Duplicate,
	}
	if e.IsLocal() {
		fe.Port = port
		fe.Where = "port " + fe.Port
	} else {
		fe.VTEP = e.VTEP.String()
		fe.Where = "vtep " + fe.VTEP
	}
	return fe
}
