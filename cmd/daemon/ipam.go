package daemon

// This file holds address allocation: cluster-wide, with no central
// store.
//
// Design notes: an address is claimed by announcing it. Every endpoint's
// binding (VNI, MAC, IPs) travels by gossip, so each node knows the
// addresses every other node holds (gossip.Agent.UsedIPs), including those
// of a node that died, for TombstoneTTL (the grace period before its
// addresses are reused). To allocate, a node picks a free address, starting
// its search at an offset in the subnet derived from its name so that nodes
// allocating at the same moment rarely pick the same one, announces it with
// the new endpoint's MAC, and waits ClaimSettle for a conflicting claim to
// arrive. If another node claimed the same address, the claim of the node
// with the lower name wins everywhere; the loser withdraws and picks
// another. Only then is the address configured in the container. The rule
// holds as long as a claim reaches the other nodes within ClaimSettle (a few
// gossip rounds on a LAN); a partition longer than that can hand out an
// address twice, which the FDB then shows as an address moving between MACs
// and the daemon logs.

import (
	"hash/fnv"
	"math/big"
	"net/netip"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
)

// maxScan bounds how many addresses one allocation looks at (an IPv6 /64
// is not scanned to its end).
const maxScan = 1 << 16

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
	if _, ok := d.pending[fdb.IPKey{VNI: n.VNI, IP: addr}]; ok {
		return "an attach in progress"
	}
	if n.Name == DefaultNetwork {
		for _, a := range d.cfg.Address {
			if a.Addr() == addr {
				return "the host port " + d.cfg.TAP
			}
		}
	}
	if cs := d.agent.Load().Claims(n.VNI, addr); len(cs) > 0 {
		return "MAC " + cs[0].MAC.String() + " on node " + cs[0].Node
	}
	if mac, ok := d.fdb.LookupIP(fdb.IPKey{VNI: n.VNI, IP: addr}); ok {
		return "MAC " + mac.String()
	}
	return ""
}

// allocateLocked picks a free address of n's subnet, searching from this
// node's offset and wrapping, skipping the network (or IPv6 subnet-router
// anycast) address, the IPv4 broadcast address and those in avoid.
func (d *Daemon) allocateLocked(n *control.Network, avoid map[netip.Addr]bool) (netip.Prefix, error) {
	if !n.Subnet.IsValid() {
		return netip.Prefix{}, userErrorf("network %s has no subnet to allocate from: pass --ip", n.Name)
	}
	used := d.agent.Load().UsedIPs(n.VNI)
	hostBits := n.Subnet.Addr().BitLen() - n.Subnet.Bits()
	size := uint64(maxScan)
	if hostBits < 17 {
		size = 1 << hostBits
	}
	h := fnv.New32a()
	h.Write([]byte(d.cfg.Name))
	start := uint64(h.Sum32()) % size
	for i := range size {
		a := nth(n.Subnet, (start+i)%size)
		if a == n.Subnet.Addr() || (a.Is4() && hostBits > 1 && (start+i)%size == size-1) {
			continue // network address, broadcast address
		}
		if _, taken := used[a]; taken || avoid[a] {
			continue
		}
		if d.addressInUseLocked(n, a) == "" {
			return netip.PrefixFrom(a, n.Subnet.Bits()), nil
		}
	}
	return netip.Prefix{}, userErrorf("network %s: no free address left in %v", n.Name, n.Subnet)
}

// nth returns the i-th address of p.
func nth(p netip.Prefix, i uint64) netip.Addr {
	b := new(big.Int).SetBytes(p.Addr().AsSlice())
	b.Add(b, new(big.Int).SetUint64(i))
	buf := make([]byte, p.Addr().BitLen()/8)
	b.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

// lostClaim reports whether another node claims addr in vni for a MAC
// other than mac and wins: the lower node name wins.
func (d *Daemon) lostClaim(vni uint32, addr netip.Addr, mac fdb.MAC) (string, bool) {
	for _, c := range d.agent.Load().Claims(vni, addr) {
		if c.MAC != mac && c.Node != d.cfg.Name && c.Node < d.cfg.Name {
			return c.Node, true
		}
	}
	return "", false
}

// othersAlive reports whether any other member is alive, i.e. whether a
// claim can conflict at all.
func (d *Daemon) othersAlive() bool {
	for _, m := range d.agent.Load().Members() {
		if m.Name != d.cfg.Name && (m.State == "alive" || m.State == "suspect") {
			return true
		}
	}
	return false
}
