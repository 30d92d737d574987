package vtep

import "sync/atomic"

// DropReason says why the switch dropped a frame or datagram.
type DropReason int

// Drop reasons. Each has its own counter, visible in ovlsw status.
const (
	DropShort        DropReason = iota // shorter than the VXLAN header plus an Ethernet header
	DropBadHeader                      // VXLAN I flag clear
	DropUnknownVNI                     // a VNI this node does not serve
	DropNotMember                      // sent by an address that is not a member VTEP of the VNI
	DropMTU                            // inner frame larger than the port MTU (never fragmented)
	DropBadSource                      // multicast or zero source MAC
	DropHairpin                        // destination is the port the frame came from
	DropWriteError                     // the TAP or socket refused the write
	DropPolicy                         // unknown unicast, broadcast or ARP/ND the VNI's flood policy drops
	DropPortSecurity                   // a secure port's frame with another source MAC, or ARP/NA for another address
	DropFloodRate                      // a port's broadcast/unknown frames beyond its flood rate
	DropOffload                        // a TAP super-frame the segmenter refused (malformed or unsupported offload)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropShort:        "short",
	DropBadHeader:    "bad_header",
	DropUnknownVNI:   "unknown_vni",
	DropNotMember:    "not_member",
	DropMTU:          "mtu",
	DropBadSource:    "bad_source",
	DropHairpin:      "hairpin",
	DropWriteError:   "write_error",
	DropPolicy:       "flood_policy",
	DropPortSecurity: "port_security",
	DropFloodRate:    "flood_rate",
	DropOffload:      "bad_offload",
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
