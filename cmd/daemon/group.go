package daemon

// This file holds multicast mode: for the default network (--group), the
// checks of its configuration and what it asks of the VXLAN socket and the
// switch (vtep/group.go); for networks created with a group (network
// create --group), the joins and leaves the registry asks for as the
// cluster's networks change. Head-end replication stays the default: a
// network uses a group only if the default network's flags or its own
// definition give it one. Every group is joined on one interface, the
// multicast interface (--group-dev, else the data address's), and sent
// to with --group-ttl.

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

// checkNetworkGroup checks that this node can use g as a network's group:
// of the underlay's family.
func (d *Daemon) checkNetworkGroup(g netip.Addr) error {
	if a := d.vtep.Addr().Unmap(); g.Is4() != a.Is4() {
		return fmt.Errorf("multicast group %v and the underlay address %v are of different IP families", g, a)
	}
	return nil
}

// joinNetworkGroup has the VXLAN socket receive g on the multicast
// interface and puts vni in multicast mode.
func (d *Daemon) joinNetworkGroup(vni uint32, g netip.Addr) error {
	if err := d.checkNetworkGroup(g); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(d.mcDev)
	if err != nil {
		return fmt.Errorf("multicast interface %q: %w", d.mcDev, err)
	}
	if err := d.sw.JoinGroup(g, ifc.Index, d.cfg.GroupTTL); err != nil {
		return err
	}
	if err := d.sw.SetGroup(vni, netip.AddrPortFrom(g, d.cfg.Port)); err != nil {
		_ = d.sw.LeaveGroup(g)
		return err
	}
	d.log.Info("multicast mode: floods go to the group, datagrams of the VNI accepted from any sender on the underlay",
		"vni", vni, "group", g, "interface", d.mcDev)
	return nil
}

// leaveNetworkGroup puts vni back to head-end replication and leaves g.
func (d *Daemon) leaveNetworkGroup(vni uint32, g netip.Addr) {
	_ = d.sw.SetGroup(vni, netip.AddrPort{})
	if err := d.sw.LeaveGroup(g); err != nil {
		d.log.Warn("multicast group not left", "vni", vni, "group", g, "err", err)
	}
}
