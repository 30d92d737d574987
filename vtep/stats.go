package vtep

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// PortStats describes a local port and its counters.
type PortStats struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	VNI   uint32 `json:"vni"`
	MTU   int    `json:"mtu"`
	Error string `json:"error,omitempty"` // why the port stopped reading, if it did
	Traffic
}

// PeerStats describes a remote VTEP and its counters. Rx is what it sent us.
type PeerStats struct {
	Addr netip.AddrPort `json:"addr"`
	VNIs []uint32       `json:"vnis"`
	Traffic
}

// OffloadStats says which fast-path techniques are on (fast-path.md): what
// the TAPs and the VXLAN socket were granted when probed.
type OffloadStats struct {
	// TAP is the ports' offloads, e.g. "vnet_hdr,csum,tso4,tso6", or
	// "off"; empty while there is no port.
	TAP string `json:"tap"`
	// UDP is the socket's, e.g. "gso,gro,srcports=16", or "off".
	UDP string `json:"udp"`
	// GRO says whether received TCP segments are merged into super-frames
	// before the TAP write (on with virtio-net headers).
	GRO bool `json:"gro"`
}

func (o OffloadStats) String() string {
	tap, gro := o.TAP, "off"
	if tap == "" {
		tap = "(no port yet)"
	}
	if o.GRO {
		gro = "on"
	}
	return fmt.Sprintf("tap %s; udp %s; userspace gro %s", tap, o.UDP, gro)
}

// Stats is a snapshot of the switch's ports, peers and drop counters.
type Stats struct {
	Offload OffloadStats      `json:"offload"`
	Ports   []PortStats       `json:"ports"`
	Peers   []PeerStats       `json:"peers"`
	Drops   map[string]uint64 `json:"drops"`
	Proxy   ProxyStats        `json:"proxy"`
}

// Stats returns a snapshot, ports by ID and peers by address.
func (s *Switch) Stats() Stats {
	var st Stats
	ports := s.ports.Load()
	st.Offload = OffloadStats{UDP: s.conn.Offloads().String(), GRO: ports.lay.vnet && len(ports.byID) > 0}
	for _, p := range ports.byID {
		if st.Offload.TAP == "" {
			st.Offload.TAP = p.dev.Offloads().String()
		}
		ps := PortStats{ID: p.id, Name: p.name, VNI: p.vni, MTU: p.mtu, Traffic: p.traffic.snapshot()}
		if err := p.err.Load(); err != nil {
			ps.Error = (*err).Error()
		}
		st.Ports = append(st.Ports, ps)
	}
	slices.SortFunc(st.Ports, func(a, b PortStats) int { return cmp.Compare(a.ID, b.ID) })
	for _, p := range s.peers.Load().byAddr {
		if len(p.vnis) == 0 {
			continue // a member that is no VNI's peer
		}
		st.Peers = append(st.Peers, PeerStats{Addr: p.addr, VNIs: slices.Clone(p.vnis), Traffic: p.traffic.snapshot()})
	}
	slices.SortFunc(st.Peers, func(a, b PeerStats) int { return a.Addr.Compare(b.Addr) })
	st.Proxy = s.proxyCtr.snapshot()
	st.Drops = make(map[string]uint64, numDropReasons)
	for _, r := range DropReasons() {
		st.Drops[r.String()] = s.drops[r].Load()
	}
	return st
}

// dropCount returns the drop counter for one reason.
func (s *Switch) dropCount(r DropReason) uint64 { return s.drops[r].Load() }

// PortName returns the name of port id, or "" if there is none.
func (s *Switch) PortName(id int) string {
	if p := s.ports.Load().byID[id]; p != nil {
		return p.name
	}
	return ""
}
