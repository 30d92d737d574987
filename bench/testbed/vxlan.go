// The Linux kernel's vxlan device: a bare VTEP (KernelVXLAN), the interop
// peer for ovlsw, and the Docker-overlay wiring of a vxlan device on a
// bridge with a container behind a veth (KernelOverlay), the benchmark's
// kernel baseline.

package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

const (
	// DefaultVXLANPort is the IANA VXLAN port. The Linux driver uses 8472
	// unless told `dstport 4789`, so KernelVXLAN always says it.
	DefaultVXLANPort = 4789

	// underlayMTU is the MTU of the veth underlay the default overlay MTU
	// is derived from (the kernel's default for a veth).
	underlayMTU = 1500

	// vxlanOverhead4 is what VXLAN adds over IPv4: inner Ethernet 14 +
	// VXLAN 8 + UDP 8 + IPv4 20 = 50 bytes; over IPv6 the outer header is
	// 40 bytes, 70 in total.
	vxlanOverhead4 = 50
	vxlanOverhead6 = 70
)

// VXLANOpts configures a kernel vxlan device.
type VXLANOpts struct {
	// Name is the interface name, at most 15 bytes (at most 12 for
	// KernelOverlay, whose bridge is named "br-"+Name).
	Name string
	// VNI is the 24-bit VXLAN network identifier.
	VNI uint32
	// Local is the underlay address the device sends from and listens on.
	Local netip.Addr
	// Remotes are the peer VTEPs. Each gets an all-zeros MAC fdb entry, so
	// broadcast, multicast and unknown unicast are replicated to all of
	// them (head-end replication).
	Remotes []netip.Addr
	// Learning enables the driver's data-plane MAC learning. The zero value
	// configures `nolearning`, the static-fdb setup ovlsw interoperates with.
	Learning bool
	// Address is the overlay address: on the vxlan device for KernelVXLAN,
	// on the container's eth0 for KernelOverlay. Invalid means none.
	Address netip.Prefix
	// MTU is the overlay MTU. 0 means the 1500-byte underlay MTU minus the
	// VXLAN overhead: 1450 when Local is IPv4, 1430 when it is IPv6.
	MTU int
	// Port is the UDP port, source and destination. 0 means 4789.
	Port int
	// Group, if valid, puts the device in group mode (`group GROUP dev
	// Dev`): broadcast and unknown traffic go to the multicast group, and
	// it takes what is sent there. Dev is the underlay interface.
	Group netip.Addr
	Dev   string
}

// withDefaults validates o and fills in MTU and Port.
func (o VXLANOpts) withDefaults() (VXLANOpts, error) {
	if err := checkIfName(o.Name); err != nil {
		return o, err
	}
	if o.VNI >= 1<<24 {
		return o, fmt.Errorf("testbed: VNI %d does not fit 24 bits", o.VNI)
	}
	if !o.Local.IsValid() {
		return o, errors.New("testbed: vxlan needs a Local underlay address")
	}
	o.Local = o.Local.Unmap()
	if o.MTU == 0 {
		o.MTU = underlayMTU - vxlanOverhead4
		if o.Local.Is6() {
			o.MTU = underlayMTU - vxlanOverhead6
		}
	}
	if o.MTU < 68 {
		return o, fmt.Errorf("testbed: vxlan MTU %d < 68", o.MTU)
	}
	if o.Port == 0 {
		o.Port = DefaultVXLANPort
	}
	if o.Port < 1 || o.Port > 65535 {
		return o, fmt.Errorf("testbed: vxlan port %d out of range", o.Port)
	}
	return o, nil
}

// KernelVXLAN configures a kernel vxlan device in ns exactly as a user
// would:
//
//	ip link add NAME type vxlan id VNI dstport PORT local LOCAL [nolearning]
//	ip link set dev NAME mtu MTU
//	bridge fdb append 00:00:00:00:00:00 dev NAME dst REMOTE   # per remote
//	ethtool -K NAME tx off
//	ip addr add ADDRESS dev NAME; ip link set dev NAME up
//
// The ethtool step works around a trap of veth test benches, not of real
// networks. With transmit checksum offload on, the vxlan device leaves the
// inner TCP/UDP checksum for "hardware" to fill in (CHECKSUM_PARTIAL) and
// the veth underlay passes the packet along still marked that way. A kernel
// receiver trusts the mark, so kernel-to-kernel works, but a userspace VTEP
// such as ovlsw receives a plain UDP payload whose inner checksum was never
// completed: ping works and TCP stalls. With `tx off` the kernel computes the
// checksum in software before encapsulating; on a real NIC the hardware does
// it and the step is unnecessary.
func KernelVXLAN(ns *Netns, opts VXLANOpts) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	b := ns.bed
	argv := []string{"ip", "-n", ns.Name, "link", "add", o.Name, "type", "vxlan",
		"id", strconv.FormatUint(uint64(o.VNI), 10), "dstport", strconv.Itoa(o.Port),
		"local", o.Local.String()}
	if o.Group.IsValid() {
		argv = append(argv, "group", o.Group.String(), "dev", o.Dev)
	}
	if !o.Learning {
		argv = append(argv, "nolearning")
	}
	if _, err := b.setup(argv...); err != nil {
		return err
	}
	if _, err := b.setup("ip", "-n", ns.Name, "link", "set", "dev", o.Name, "mtu", strconv.Itoa(o.MTU)); err != nil {
		return err
	}
	for _, r := range o.Remotes {
		if _, err := b.setup("bridge", "-n", ns.Name, "fdb", "append", "00:00:00:00:00:00",
			"dev", o.Name, "dst", r.Unmap().String()); err != nil {
			return err
		}
	}
	if _, err := b.setup(ns.execArgv([]string{"ethtool", "-K", o.Name, "tx", "off"})...); err != nil {
		return err
	}
	return ns.linkUp(o.Name, o.Address)
}

// KernelOverlay wires the kernel data path the way Docker's overlay driver
// does: in host, a vxlan device (KernelVXLAN without an address) enslaved to
// a bridge named "br-"+opts.Name, and a veth from that bridge to container,
// whose end is named eth0 and gets opts.Address and the overlay MTU. If the
// vxlan device already exists in host, only the container is attached, so
// calling KernelOverlay again with the same opts and another container puts
// both on one bridge (do not do that concurrently for one host).
func KernelOverlay(host, container *Netns, opts VXLANOpts) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if container == nil || container.bed != host.bed {
		return errors.New("testbed: KernelOverlay: container is nil or belongs to another bed")
	}
	b := host.bed
	br := "br-" + o.Name
	if err := checkIfName(br); err != nil {
		return fmt.Errorf("testbed: KernelOverlay: vxlan name %q too long for the bridge name: %w", o.Name, err)
	}
	if !b.LinkExists(host, o.Name) {
		vx := o
		vx.Address = netip.Prefix{}
		if err := KernelVXLAN(host, vx); err != nil {
			return err
		}
		if _, err := b.setup("ip", "-n", host.Name, "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		if _, err := b.setup("ip", "-n", host.Name, "link", "set", "dev", o.Name, "master", br); err != nil {
			return err
		}
		if err := host.linkUp(br, netip.Prefix{}); err != nil {
			return err
		}
	}
	hostIf := b.nextIfName("veth")
	if err := b.Veth(host, hostIf, netip.Prefix{}, container, "eth0", o.Address, o.MTU); err != nil {
		return err
	}
	_, err = b.setup("ip", "-n", host.Name, "link", "set", "dev", hostIf, "master", br)
	return err
}
