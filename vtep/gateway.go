package vtep

// This file holds the addresses the switch itself answers for in a VNI: its
// networks' gateway and DNS addresses. Every node answers ARP and neighbour
// solicitations for them with one router MAC derived from the VNI, the same
// on every node (a distributed anycast gateway, as EVPN fabrics have), so a
// container's traffic to them never leaves its node. An endpoint that holds
// such an address itself (a host port configured with the gateway address,
// say) is answered for first: the FDB's vouched binding wins.

import (
	"net/netip"
	"slices"

	"github.com/ovlsw/ovlsw/fdb"
)

// RouterMAC returns the MAC the switch answers for vni's gateway and DNS
// addresses with: locally administered unicast, "ov" then the 24-bit VNI,
// so every node derives the same one and no two VNIs share it.
func RouterMAC(vni uint32) fdb.MAC {
	return fdb.MAC{0x02, 'o', 'v', byte(vni >> 16), byte(vni >> 8), byte(vni)}
}

// IsRouterMAC reports whether mac is some VNI's router MAC.
func IsRouterMAC(mac fdb.MAC) bool {
	return mac[0] == 0x02 && mac[1] == 'o' && mac[2] == 'v'
}

// SetGatewayAddrs sets the addresses the switch answers ARP and neighbour
// solicitations for in vni with RouterMAC(vni) when no endpoint holds
// them. Nil or empty removes vni's.
func (s *Switch) SetGatewayAddrs(vni uint32, addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	storeVNI(&s.gateways, vni, slices.Clone(addrs), len(addrs) == 0)
}

// gatewayAddr reports whether ip is one of vni's gateway addresses.
func (s *Switch) gatewayAddr(vni uint32, ip netip.Addr) bool {
	return slices.Contains((*s.gateways.Load())[vni], ip)
}

// proxyTarget returns the MAC to answer a question about ip in vni with:
// the binding the FDB vouches for, or the router MAC for a gateway address
// nobody holds.
func (s *Switch) proxyTarget(vni uint32, ip netip.Addr) (fdb.MAC, bool) {
	if mac, ok := s.fdb.LookupIPVouched(fdb.IPKey{VNI: vni, IP: ip}); ok {
		return mac, true
	}
	if s.gatewayAddr(vni, ip) {
		return RouterMAC(vni), true
	}
	return fdb.MAC{}, false
}
