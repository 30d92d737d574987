package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// LAN joins hosts to one underlay segment: a namespace holding a Linux
// bridge with a veth to each host. Host i gets interface ul0 with address
// the i+1th host of subnet (192.168.91.0/24 gives .1, .2, ...), which LAN
// returns in order.
func (b *Bed) LAN(subnet netip.Prefix, hosts ...*Netns) ([]netip.Addr, error) {
	sw, err := b.Netns("lan")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sw.Run(ctx, "ip", "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	// A plain switch: multicast floods to every port. IGMP snooping would
	// forward a group only to ports that reported it, and without a
	// querier on the segment that depends on timing.
	if _, err := sw.Run(ctx, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return nil, err
	}
	if _, err := sw.Run(ctx, "ip", "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	a := subnet.Masked().Addr()
	for i, h := range hosts {
		a = a.Next()
		if !subnet.Contains(a) {
			return nil, fmt.Errorf("testbed: LAN: subnet %v too small for %d hosts", subnet, len(hosts))
		}
		port := fmt.Sprintf("p%d", i)
		if err := b.Veth(h, "ul0", netip.PrefixFrom(a, subnet.Bits()), sw, port, netip.Prefix{}, 0); err != nil {
			return nil, err
		}
		if _, err := sw.Run(ctx, "ip", "link", "set", port, "master", "br0"); err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}
