package tap

// This file holds Config and its validation, shared by every OS so that
// callers compile everywhere.

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxQueues is the most queues a TAP can have: MAX_TAP_QUEUES in the
// kernel's drivers/net/tun.c.
const maxQueues = 256

// ifNameMax is the longest interface name Linux accepts: IFNAMSIZ (16)
// less the terminating NUL.
const ifNameMax = 15

// Config describes the TAP port Create makes, or the existing one Adopt
// attaches to. Adopt uses only Name, Persist, Offload and Queues (and
// leaves the link's MTU, MAC, addresses and state as they are).
type Config struct {
	// Name is the interface name; required. Linux allows 1 to 15 bytes
	// without '/', ':' or white space. One "%d" in it lets the kernel pick
	// the lowest free number ("ovl%d" becomes "ovl0"); Device.Name
	// reports the name it got. For Create the name must not exist yet:
	// Create never attaches to an existing (persistent) TAP. For Adopt it
	// is the existing TAP's exact name, without "%d".
	Name string

	// MTU is the link MTU in bytes, 68 to 65535. 0 leaves the kernel
	// default (1500); Device.MTU reports the MTU the link has.
	MTU int

	// MAC is the link's Ethernet address. It must be unicast (low bit of
	// the first byte clear). The zero value keeps the random, locally
	// administered address the kernel gives a new TAP.
	MAC [6]byte

	// Addresses are added to the link, each an address with the prefix
	// length of its subnet (10.0.0.1/24), which the kernel then routes
	// onto the link. IPv4 and IPv6 may be mixed; nil adds none.
	Addresses []netip.Prefix

	// Up brings the link up once it is configured. A link that is down
	// passes no frames.
	Up bool

	// Persist makes the TAP persistent (TUNSETPERSIST): the link outlives
	// the Device and the process, and Close only closes the file. Adopt
	// attaches to it again; Persister.SetPersist(false) before Close
	// removes it. Adopt sets persistence to Persist too, so a TAP adopted
	// with Persist false disappears when the adopting Device is closed.
	Persist bool

	// Offload opens the TAP with virtio-net headers (IFF_VNET_HDR) and asks
	// for checksum and TCP segmentation offload (TUN_F_CSUM, TUN_F_TSO4,
	// TUN_F_TSO6), taking less where the kernel refuses; Device.Offloads
	// reports what it granted. Every frame read and written then starts
	// with a VnetHdrLen-byte header, and Read returns TCP super-frames:
	// size read buffers to MaxOffloadFrame. Without Offload, Adopt turns
	// off any offloads a former owner left on the TAP.
	Offload bool

	// LazyTSO, with Offload, opens the TAP with virtio-net headers and
	// checksum offload but without TSO, so frames are at most MTU-sized
	// and read buffers can be small, until the owner calls
	// TSOEnabler.EnableTSO (when the port gets busy). Only for single-queue
	// TAPs: TSO belongs to the link, so every queue's reader would need big
	// buffers first.
	LazyTSO bool

	// Queues is the number of queues, each its own fd (IFF_MULTI_QUEUE),
	// 0 to 256 (the kernel's limit); 0 or 1 makes a single-queue TAP. The
	// kernel spreads the frames it sends over the queues by flow;
	// MultiQueue.Queues returns them, each with its own Read. Adopt takes
	// this many queues of a multi-queue TAP (at least one).
	Queues int
}

// DefaultConfig returns the configuration of a typical ovlsw port.
func DefaultConfig() Config {
	return Config{
		Name: "ovl%d", // the kernel picks the first free ovlN
		MTU:  1450,    // a 1500-byte underlay less 50 bytes of VXLAN over IPv4 (RFC 7348)
		Up:   true,    // a port is there to pass frames
	}
}

// validate checks what can be checked without the kernel, so that the
// common mistakes get a clear message rather than an errno.
func (c Config) validate() error {
	if err := validName(c.Name); err != nil {
		return fmt.Errorf("tap: interface name %q: %w", c.Name, err)
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return fmt.Errorf("tap: %s: MTU %d out of range [68, 65535] (0 keeps the default)", c.Name, c.MTU)
	}
	if c.MAC[0]&1 != 0 {
		return fmt.Errorf("tap: %s: MAC %02x:%02x:%02x:%02x:%02x:%02x is multicast; a port needs a unicast address",
			c.Name, c.MAC[0], c.MAC[1], c.MAC[2], c.MAC[3], c.MAC[4], c.MAC[5])
	}
	if err := c.validQueues(); err != nil {
		return err
	}
	if c.LazyTSO && c.Queues > 1 {
		return fmt.Errorf("tap: %s: LazyTSO needs a single-queue TAP, not %d queues", c.Name, c.Queues)
	}
	for _, p := range c.Addresses {
		if !p.IsValid() {
			return fmt.Errorf("tap: %s: invalid address %v", c.Name, p)
		}
	}
	return nil
}

// validQueues checks Queues.
func (c Config) validQueues() error {
	if c.Queues < 0 || c.Queues > maxQueues {
		return fmt.Errorf("tap: %s: %d queues out of range [0, %d]", c.Name, c.Queues, maxQueues)
	}
	return nil
}

// validName applies the kernel's dev_valid_name rules.
func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty (Config.Name is required)")
	case len(name) > ifNameMax:
		return fmt.Errorf("%d bytes long; Linux allows at most %d", len(name), ifNameMax)
	case name == "." || name == "..":
		return fmt.Errorf("not a valid interface name")
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("must not contain '/', ':' or white space")
	case strings.Count(name, "%") > 1 || (strings.Contains(name, "%") && !strings.Contains(name, "%d")):
		return fmt.Errorf("may hold one %%d and no other '%%'")
	}
	return nil
}
