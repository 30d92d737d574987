package tap

// This file holds link setup of a port in a network namespace, shared by
// every OS so that callers compile everywhere: Placement, which says where
// and how Place sets a link up, ErrLinkExists, and NetnsID, a namespace's
// identity. link_linux.go implements Place, InNetns, NetnsIDOf, TxDropped
// and Resolving; link_other.go returns ErrUnsupported from each.

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrLinkExists is wrapped by Place when Placement.IfName already names a
// link in the namespace. Nothing was moved: the caller should pick another
// name, or remove the link that has it.
var ErrLinkExists = errors.New("tap: link already exists")

// Placement says where and how Place sets up a port's link. The link's MAC
// and MTU are set when it is created (Config) and move with it.
type Placement struct {
	// Netns is the path of the network namespace to move the link into
	// (/run/netns/NAME, /proc/PID/ns/net); required.
	Netns string

	// IfName is the link's name there (eth0); required, 1 to 15 bytes
	// without '/', ':', '%' or white space.
	IfName string

	// Addrs are added to the link, each an address with the prefix length
	// of its subnet (10.0.9.5/24), which the kernel then routes onto the
	// link. IPv6 ones are added with IFA_F_NODAD, usable at once: the
	// caller vouches they are unique (ovlsw claims them cluster-wide).
	Addrs []netip.Prefix

	// Gateway, if valid, gets a default route via it on the link, IPv4 or
	// IPv6 as it is. An address in Addrs must put it on the link's subnet.
	Gateway netip.Addr

	// Down leaves the link down (with Addrs and Gateway empty: as it was
	// made), for a runtime that moves and configures it itself, as
	// Docker does with a remote network driver's interface.
	Down bool
}

// validate checks what can be checked without the kernel.
func (p Placement) validate(link string) error {
	if err := validName(link); err != nil || strings.Contains(link, "%") {
		return fmt.Errorf("tap: place: link name %q is not an interface name", link)
	}
	if p.Netns == "" {
		return fmt.Errorf("tap: place %s: Placement.Netns is required", link)
	}
	if err := validName(p.IfName); err != nil {
		return fmt.Errorf("tap: place %s: interface name %q: %w", link, p.IfName, err)
	}
	if strings.Contains(p.IfName, "%") {
		return fmt.Errorf("tap: place %s: interface name %q: must not contain '%%'", link, p.IfName)
	}
	for _, a := range p.Addrs {
		if !a.IsValid() {
			return fmt.Errorf("tap: place %s: invalid address %v", link, a)
		}
	}
	return nil
}

// NetnsID identifies a network namespace: the device and inode of its
// nsfs file, the same for every path that names it (/run/netns/NAME,
// /proc/PID/ns/net of a process in it). It is comparable; the zero value
// means unknown. A namespace's ID is not reused while the namespace exists;
// once it is destroyed, a new namespace may get it again.
type NetnsID struct{ dev, ino uint64 }
