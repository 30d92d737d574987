// A network's subnets beyond its first: routing between the subnets of
// one network (issue 17). Network.Subnet and Network.Gateway stay the
// first subnet and its gateway, so code and state files that know only
// one keep working; Network.More holds the others.
//
// Design notes: More is an array, not a slice, so that Network stays
// comparable (the registry and the agent compare networks with ==). Its
// entries are packed at the front; the zero NetSubnet ends the list.

package gossip

import (
	"fmt"
	"net/netip"
)

// MaxSubnets bounds the subnets of one network, the first included: a
// Docker network has one or two; eight keeps a network record well inside
// one gossip packet (each more subnet costs at most 35 bytes).
const MaxSubnets = 8

// NetSubnet is one subnet of a network and its gateway address (the zero
// Addr for none).
type NetSubnet struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// Subnets returns n's subnets, the first (Subnet, Gateway) first, or none
// if n has no subnet.
func (n Network) Subnets() []NetSubnet {
	if !n.Subnet.IsValid() {
		return nil
	}
	out := []NetSubnet{{n.Subnet, n.Gateway}}
	for _, s := range n.More {
		if !s.Prefix.IsValid() {
			break
		}
		out = append(out, s)
	}
	return out
}

// SetSubnets sets n's subnets: the first into Subnet and Gateway, the
// others into More. It fails, leaving n unchanged, for more than
// MaxSubnets.
func (n *Network) SetSubnets(subs []NetSubnet) error {
	if len(subs) > MaxSubnets {
		return fmt.Errorf("network %s: %d subnets, at most %d", n.Name, len(subs), MaxSubnets)
	}
	n.Subnet, n.Gateway, n.More = netip.Prefix{}, netip.Addr{}, [MaxSubnets - 1]NetSubnet{}
	if len(subs) > 0 {
		n.Subnet, n.Gateway = subs[0].Prefix, subs[0].Gateway
		copy(n.More[:], subs[1:])
	}
	return nil
}

// SubnetOf returns the subnet of n that holds addr.
func (n Network) SubnetOf(addr netip.Addr) (NetSubnet, bool) {
	for _, s := range n.Subnets() {
		if s.Prefix.Contains(addr) {
			return s, true
		}
	}
	return NetSubnet{}, false
}

// Overlap returns a subnet of n and one of o that overlap, if any do.
func (n Network) Overlap(o Network) (mine, theirs netip.Prefix, ok bool) {
	for _, a := range n.Subnets() {
		for _, b := range o.Subnets() {
			if a.Prefix.Overlaps(b.Prefix) {
				return a.Prefix, b.Prefix, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

// CheckSubnets checks n's subnets beyond the first as PutNetwork does:
// each a valid subnet with its gateway inside, packed at the front of
// More, none without a first subnet, none overlapping another of n's.
func (n Network) CheckSubnets() error { return checkSubnets(&n) }

// numMore returns how many entries of n.More are in use.
func (n *Network) numMore() int {
	for i, s := range n.More {
		if s == (NetSubnet{}) {
			return i
		}
	}
	return len(n.More)
}

// checkSubnets checks n's subnets beyond the first: each with the users'
// checks (CheckSubnet, CheckGateway), none without a first subnet, packed
// at the front of More, and no two of n's subnets overlapping.
func checkSubnets(n *Network) error {
	k := n.numMore()
	for i, s := range n.More {
		if i >= k {
			if s != (NetSubnet{}) {
				return fmt.Errorf("subnet %d of %d after an empty one", i+2, MaxSubnets)
			}
			continue
		}
		if !n.Subnet.IsValid() {
			return fmt.Errorf("subnet %v without a first subnet", s.Prefix)
		}
		if !s.Prefix.IsValid() {
			return fmt.Errorf("subnet %d: a gateway %v without a subnet", i+2, s.Gateway)
		}
		if err := CheckSubnet(s.Prefix); err != nil {
			return err
		}
		if err := CheckGateway(s.Gateway, s.Prefix); err != nil {
			return err
		}
	}
	subs := n.Subnets()
	for i, a := range subs {
		for _, b := range subs[:i] {
			if a.Prefix.Overlaps(b.Prefix) {
				return fmt.Errorf("subnets %v and %v overlap", b.Prefix, a.Prefix)
			}
		}
	}
	return nil
}
