package vtep

import "sync/atomic"

// DropReason says why the switch dropped a frame or datagram.
type DropReason int

// Drop reasons. Each has its own counter, visible in ovlsw status.
const (
	dropShort        DropReason = iota // shorter than the VXLAN header plus an Ethernet header
	dropBadHeader                      // VXLAN I flag clear
	dropUnknownVNI                     // a VNI this node does not serve
	dropNotMember                      // sent by an address that is not a member VTEP of the VNI
	dropMTU                            // inner frame larger than the port MTU (never fragmented)
	dropBadSource                      // multicast or zero source MAC
	dropHairpin                        // destination is the port the frame came from
	dropWriteError                     // the TAP or socket refused the write
	dropPolicy                         // unknown unicast, broadcast or ARP/ND the VNI's flood policy drops
	dropPortSecurity                   // a secure port's frame with another source MAC, or ARP/NA for another address
	dropFloodRate                      // a port's broadcast/unknown frames beyond its flood rate
	dropOffload                        // a TAP super-frame the segmenter refused (malformed or unsupported offload)
	dropNoRoute                        // to the router MAC: no endpoint holds the address, or not a routable packet (routing.go)
	dropTTL                            // to the router MAC with TTL or hop limit 1 or 0 (routing.go)
	dropPlaintext                      // a plaintext VXLAN datagram of an encrypted network (sealing.go)
	dropAuth                           // a sealed datagram that failed authentication
	dropReplay                         // a sealed datagram whose counter was already accepted, or is older than the replay window
	dropKeyExpired                     // a sealed datagram of an epoch no longer (or not yet) accepted
	dropNoKey                          // no key for the VTEP: not sealed to it, or not opened from it
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropShort:        "short",
	dropBadHeader:    "bad_header",
	dropUnknownVNI:   "unknown_vni",
	dropNotMember:    "not_member",
	dropMTU:          "mtu",
	dropBadSource:    "bad_source",
	dropHairpin:      "hairpin",
	dropWriteError:   "write_error",
	dropPolicy:       "flood_policy",
	dropPortSecurity: "port_security",
	dropFloodRate:    "flood_rate",
	dropOffload:      "bad_offload",
	dropNoRoute:      "no_route",
	dropTTL:          "ttl_exceeded",
	dropPlaintext:    "plaintext",
	dropAuth:         "auth_failed",
	dropReplay:       "replay",
	dropKeyExpired:   "key_expired",
	dropNoKey:        "no_key",
}

// String is the reason's name as ovlsw status prints it.
func (r DropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason in order.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// dropCounters counts drops by reason.
type dropCounters [numDropReasons]atomic.Uint64

func (d *dropCounters) add(r DropReason, n uint64) {
	if n != 0 {
		d[r].Add(n)
	}
}

// trafficCounters counts frames and bytes in each direction.
type trafficCounters struct {
	rxFrames, rxBytes atomic.Uint64
	txFrames, txBytes atomic.Uint64
}

// Traffic is a snapshot of trafficCounters.
type Traffic struct {
	RxFrames uint64 `json:"rx_frames"`
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
}

func (c *trafficCounters) snapshot() Traffic {
	return Traffic{
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(),
		TxFrames: c.txFrames.Load(), TxBytes: c.txBytes.Load(),
	}
}

func (c *trafficCounters) rx(frames, bytes int) {
	if frames != 0 {
		c.rxFrames.Add(uint64(frames))
		c.rxBytes.Add(uint64(bytes))
	}
}

func (c *trafficCounters) tx(frames, bytes int) {
	if frames != 0 {
		c.txFrames.Add(uint64(frames))
		c.txBytes.Add(uint64(bytes))
	}
}
