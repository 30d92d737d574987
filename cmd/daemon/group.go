package daemon

// This file holds multicast mode for the default network (--group): the
// checks of its configuration and what it asks of the VXLAN socket and the
// switch (vtep/group.go). Head-end replication stays the default; other
// networks use it whatever the default network does.

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// validateGroup checks the multicast settings without touching the host.
func (c *Config) validateGroup() error {
	if !c.Group.IsValid() {
		if c.GroupDev != "" || c.GroupTTL != 0 {
			return configErrorf("multicast interface and TTL belong to a multicast group: give the group too")
		}
		return nil
	}
	switch {
	case c.VNI == 0:
		return configErrorf("multicast group %v is the default network's: give its VNI too", c.Group)
	case gossip.CheckGroup(c.Group) != nil:
		return configErrorf("%v", gossip.CheckGroup(c.Group))
	case c.Group.Is4() != c.dataAddr().Is4():
		return configErrorf("multicast group %v and %s %v are of different IP families", c.Group, c.dataAddrName(), c.dataAddr())
	case c.GroupTTL < 0 || c.GroupTTL > 255:
		return configErrorf("multicast TTL %d out of range [1, 255]", c.GroupTTL)
	}
	return nil
}

// groupConn asks the VXLAN socket to join the group on the multicast
// interface (the one holding the data address, dataDev, unless told).
func (c *Config) groupConn(dataDev string, cc *vtep.ConnConfig) error {
	if !c.Group.IsValid() {
		return nil
	}
	dev := c.GroupDev
	if dev == "" {
		dev = dataDev
	}
	ifc, err := net.InterfaceByName(dev)
	if err != nil {
		return configErrorf("multicast interface %q: %v", dev, err)
	}
	if ifc.Flags&net.FlagMulticast == 0 {
		return configErrorf("multicast interface %q has no MULTICAST flag: `ip link set %s multicast on`", dev, dev)
	}
	cc.Group, cc.GroupInterface, cc.GroupTTL = c.Group, ifc.Index, c.GroupTTL
	return nil
}

// setGroup puts the default network's VNI in multicast mode.
func (d *Daemon) setGroup() error {
	if !d.cfg.Group.IsValid() {
		return nil
	}
	if err := d.sw.SetGroup(d.cfg.VNI, netip.AddrPortFrom(d.cfg.Group, d.cfg.Port)); err != nil {
		return fmt.Errorf("multicast group: %w", err)
	}
	d.log.Info("multicast mode: floods go to the group, datagrams of the VNI accepted from any sender on the underlay",
		"vni", d.cfg.VNI, "group", d.cfg.Group)
	return nil
}
