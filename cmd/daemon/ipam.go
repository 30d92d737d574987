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
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// maxScan bounds how many addresses one allocation looks at (an IPv6 /64
// is not scanned to its end).
const maxScan = 1 << 16

// claimView is what allocation reads of the cluster: *gossip.Agent.
type claimView interface {
	Claims(vni uint32, ip netip.Addr) []gossip.Binding
	UsedIPs(vni uint32) map[netip.Addr]struct{}
	Members() []gossip.MemberInfo
}

var _ claimView = (*gossip.Agent)(nil)

// allocator hands out addresses and reserves them while an attach is in
// progress. It asks holder who holds an address on this node (endpoints,
// the host port), the cluster's claims (once gossip runs) and the FDB.
type allocator struct {
	node   string
	fdb    *fdb.Table
	holder func(vni uint32, addr netip.Addr) string // this node's holder of addr, or ""
	view   atomic.Pointer[claimView]                // nil until gossip runs

	// mu guards pending: addresses reserved by attaches in progress.
	// Lock order: mu before whatever holder takes.
	mu      sync.Mutex
	pending map[fdb.IPKey]struct{}
}

func newAllocator(node string, t *fdb.Table, holder func(uint32, netip.Addr) string) *allocator {
	return &allocator{node: node, fdb: t, holder: holder, pending: map[fdb.IPKey]struct{}{}}
}

// setView hands the allocator the cluster's claims once gossip runs.
func (a *allocator) setView(v claimView) { a.view.Store(&v) }

func (a *allocator) claims() claimView {
	if v := a.view.Load(); v != nil {
		return *v
	}
	return nil
}

// inUse reports who holds addr in network n, or "".
func (a *allocator) inUse(n gossip.Network, addr netip.Addr) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inUseLocked(n, addr)
}

func (a *allocator) inUseLocked(n gossip.Network, addr netip.Addr) string {
	if slices.Contains(gatewayAddrs(n), addr) {
		return "the gateway"
	}
	if addr == n.DNS {
		return "the network's DNS address"
	}
	if who := a.holder(n.VNI, addr); who != "" {
		return who
	}
	if _, ok := a.pending[fdb.IPKey{VNI: n.VNI, IP: addr}]; ok {
		return "an attach in progress"
	}
	if v := a.claims(); v != nil {
		if cs := v.Claims(n.VNI, addr); len(cs) > 0 {
			return "MAC " + cs[0].MAC.String() + " on node " + cs[0].Node
		}
	}
	if mac, ok := a.fdb.LookupIP(fdb.IPKey{VNI: n.VNI, IP: addr}); ok {
		return "MAC " + mac.String()
	}
	return ""
}

// reserve checks and reserves want in n, or, if want is zero, picks a free
// address of n's subnet, searching from this node's offset and wrapping,
// skipping the network (or IPv6 subnet-router anycast) address, the IPv4
// broadcast address and those in avoid. release gives it back.
func (a *allocator) reserve(n gossip.Network, want netip.Prefix, avoid map[netip.Addr]bool) (netip.Prefix, error) {
	return a.reserveIn(n, netip.Prefix{}, want, avoid)
}

// reserveIn is reserve for a network with several subnets: want must be in
// one of them (with its prefix length); without want, the address comes
// from subnet if given, else from the first subnet with room.
func (a *allocator) reserveIn(n gossip.Network, subnet, want netip.Prefix, avoid map[netip.Addr]bool) (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr := want
	subs := n.Subnets()
	if subnet.IsValid() {
		if !slices.ContainsFunc(subs, func(s gossip.NetSubnet) bool { return s.Prefix == subnet }) {
			return netip.Prefix{}, userErrorf("attach: network %s has no subnet %v (it has %v)", n.Name, subnet, prefixes(subs))
		}
		if want.IsValid() && !subnet.Contains(want.Addr()) {
			return netip.Prefix{}, userErrorf("attach: address %v is not in subnet %v", want, subnet)
		}
	}
	if want.IsValid() {
		if s, ok := n.SubnetOf(want.Addr()); len(subs) > 0 && (!ok || want.Bits() != s.Prefix.Bits()) {
			if len(subs) == 1 {
				return netip.Prefix{}, userErrorf("attach: address %v is not in network %s's subnet %v", want, n.Name, n.Subnet)
			}
			return netip.Prefix{}, userErrorf("attach: address %v is not in any of network %s's subnets %v", want, n.Name, prefixes(subs))
		}
		if who := a.inUseLocked(n, want.Addr()); who != "" {
			return netip.Prefix{}, userErrorf("attach: address %v is taken by %s", want.Addr(), who)
		}
	} else {
		var err error
		if addr, err = a.allocateAnyLocked(n, subnet, avoid); err != nil {
			return netip.Prefix{}, err
		}
	}
	a.pending[fdb.IPKey{VNI: n.VNI, IP: addr.Addr()}] = struct{}{}
	return addr, nil
}

// release ends the reservation of addr in vni: the attach finished (the
// endpoint now holds it) or gave up.
func (a *allocator) release(vni uint32, addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, fdb.IPKey{VNI: vni, IP: addr})
}

// allocateAnyLocked allocates from subnet of n, or if that is zero from
// the first of n's subnets with room.
func (a *allocator) allocateAnyLocked(n gossip.Network, subnet netip.Prefix, avoid map[netip.Addr]bool) (netip.Prefix, error) {
	subs := n.Subnets()
	if len(subs) <= 1 && !subnet.IsValid() {
		return a.allocateLocked(n, avoid)
	}
	var err error
	for _, s := range subs {
		if subnet.IsValid() && s.Prefix != subnet {
			continue
		}
		one := n
		one.Subnet, one.Gateway = s.Prefix, s.Gateway
		var addr netip.Prefix
		if addr, err = a.allocateLocked(one, avoid); err == nil {
			return addr, nil
		}
	}
	return netip.Prefix{}, err
}

// prefixes lists the subnets' prefixes, for messages.
func prefixes(subs []gossip.NetSubnet) []netip.Prefix {
	out := make([]netip.Prefix, len(subs))
	for i, s := range subs {
		out[i] = s.Prefix
	}
	return out
}

// allocateLocked allocates from n.Subnet.
func (a *allocator) allocateLocked(n gossip.Network, avoid map[netip.Addr]bool) (netip.Prefix, error) {
	if !n.Subnet.IsValid() {
		return netip.Prefix{}, userErrorf("network %s has no subnet to allocate from: give an address", n.Name)
	}
	var used map[netip.Addr]struct{}
	if v := a.claims(); v != nil {
		used = v.UsedIPs(n.VNI)
	}
	hostBits := n.Subnet.Addr().BitLen() - n.Subnet.Bits()
	size := uint64(maxScan)
	if hostBits < 17 {
		size = 1 << hostBits
	}
	h := fnv.New32a()
	h.Write([]byte(a.node))
	start := uint64(h.Sum32()) % size
	for i := range size {
		addr := nth(n.Subnet, (start+i)%size)
		if addr == n.Subnet.Addr() || (addr.Is4() && hostBits > 1 && (start+i)%size == size-1) {
			continue // network address, broadcast address
		}
		if _, taken := used[addr]; taken || avoid[addr] {
			continue
		}
		if a.inUseLocked(n, addr) == "" {
			return netip.PrefixFrom(addr, n.Subnet.Bits()), nil
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
func (a *allocator) lostClaim(vni uint32, addr netip.Addr, mac fdb.MAC) (string, bool) {
	v := a.claims()
	if v == nil {
		return "", false
	}
	for _, c := range v.Claims(vni, addr) {
		if c.MAC != mac && c.Node != a.node && c.Node < a.node {
			return c.Node, true
		}
	}
	return "", false
}

// othersAlive reports whether any other member is alive, i.e. whether a
// claim can conflict at all.
func (a *allocator) othersAlive() bool {
	v := a.claims()
	if v == nil {
		return false
	}
	for _, m := range v.Members() {
		if m.Name != a.node && (m.State == "alive" || m.State == "suspect") {
			return true
		}
	}
	return false
}
