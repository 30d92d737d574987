// The checks of a network's values, one per value, for everything that
// takes a network from a user: the daemon's flags and API, the CLI and
// gossip (checkNetwork applies CheckSubnet, CheckGateway and CheckGroup, and the wire
// format's wider bounds to the other values).
//
// Each error names the value, never where it came from (a flag, an API
// field), and is meant to be shown as it is; callers add context such as
// the network's name. The VNI's check is fdb.CheckVNI.

package gossip

import (
	"fmt"
	"net/netip"
	"regexp"
)

// networkName is the rule for the names users give networks: short enough
// to show in a table and safe in a file name, a URL path or a log line
// unquoted. The wire format allows any 1 to 255 bytes.
var networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// minMTU is the smallest network MTU: 576 bytes, the datagram every IPv4
// host must accept (RFC 791), so any guest stack can use the network.
const minMTU = 576

// CheckNetworkName checks a network name: 1 to 64 letters, digits, '_',
// '.' and '-', starting with a letter or digit.
func CheckNetworkName(name string) error {
	if !networkName.MatchString(name) {
		return fmt.Errorf("network name %q: use 1 to 64 letters, digits, '_', '.', '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckSubnet checks a network's subnet: a valid prefix without host
// bits, or the zero Prefix for none.
func CheckSubnet(p netip.Prefix) error {
	switch {
	case p == netip.Prefix{}:
		return nil
	case !p.IsValid():
		return fmt.Errorf("subnet %v is not a valid prefix", p)
	case p != p.Masked():
		return fmt.Errorf("subnet %v has host bits set: did you mean %v?", p, p.Masked())
	}
	return nil
}

// CheckGateway checks a network's gateway: the zero Addr for none, or an
// address without a zone inside subnet (which CheckSubnet checks).
func CheckGateway(gw netip.Addr, subnet netip.Prefix) error {
	switch {
	case !gw.IsValid():
		return nil
	case gw.Zone() != "":
		return fmt.Errorf("gateway %v: give the address without a zone", gw)
	case !subnet.IsValid():
		return fmt.Errorf("gateway %v needs a subnet to be in", gw)
	case !subnet.Contains(gw):
		return fmt.Errorf("gateway %v is not in subnet %v", gw, subnet)
	}
	return nil
}

// CheckMTU checks a network's MTU against the largest the node can carry,
// max (the underlay MTU less the VXLAN overhead): 576 to max. A default
// (0) is the caller's to fill in first.
func CheckMTU(mtu, max int) error {
	if mtu < minMTU || mtu > max {
		return fmt.Errorf("MTU %d out of range %d..%d", mtu, minMTU, max)
	}
	return nil
}

// CheckGroup checks a network's underlay multicast group: the zero Addr
// for none (head-end replication), or an IPv4 or IPv6 multicast address
// (224.0.0.0/4 or ff00::/8) without a zone, IPv4 not mapped into IPv6.
// Whether it matches the underlay's family is the node's to check.
func CheckGroup(g netip.Addr) error {
	switch {
	case !g.IsValid():
		return nil
	case g.Zone() != "":
		return fmt.Errorf("multicast group %v: give the address without a zone", g)
	case g.Is4In6():
		return fmt.Errorf("multicast group %v: give an IPv4 group as %v", g, g.Unmap())
	case !g.IsMulticast():
		return fmt.Errorf("multicast group %v is not a multicast address (224.0.0.0/4 or ff00::/8)", g)
	}
	return nil
}

// CheckDNS checks a network's DNS address, where the switch answers its
// endpoints' DNS queries: none (the gateway's then), or a unicast address
// inside the subnet, so that endpoints reach it on the link.
func CheckDNS(a netip.Addr, subnet netip.Prefix) error {
	switch {
	case !a.IsValid():
		return nil
	case a.Zone() != "":
		return fmt.Errorf("DNS address %v: give the address without a zone", a)
	case !subnet.IsValid():
		return fmt.Errorf("DNS address %v needs a subnet to be in", a)
	case !subnet.Contains(a):
		return fmt.Errorf("DNS address %v is not in subnet %v", a, subnet)
	case a == subnet.Addr() || a.IsMulticast():
		return fmt.Errorf("DNS address %v is not a host address of %v", a, subnet)
	}
	return nil
}

// checkDNSOf checks n's DNS address against the subnet of n that holds it.
func checkDNSOf(n *Network) error {
	if s, ok := n.SubnetOf(n.DNS); ok {
		return CheckDNS(n.DNS, s.Prefix)
	}
	return CheckDNS(n.DNS, n.Subnet) // outside all: the error names the first
}

// CheckDNSOf checks n's DNS address: a host address of one of its subnets.
func (n Network) CheckDNSOf() error { return checkDNSOf(&n) }
