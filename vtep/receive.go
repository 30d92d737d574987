package vtep

// This file holds the wire -> TAP path: one goroutine receives batches of
// VXLAN datagrams, drops (and counts) what is short, malformed, for a VNI
// this node does not serve or from an address that is neither a peer of the
// VNI nor an alive member of the cluster (peers.go), learns inner source
// MACs against the sending VTEP, and writes each inner frame to its port, or
// to every port of the VNI when the destination is broadcast, multicast or
// not local. Frames are written from the receive buffers in place: one
// Write per port per batch. A datagram buffer may hold several datagrams the
// kernel coalesced (UDP GRO); they are split here. Ports with virtio-net
// headers get their frames through GRO instead (fast-path.md section 4): the
// TCP segments of a flow merged into one super-frame, one TAP write per
// 64 KB rather than per 1.5 KB.

import (
	"errors"
	"net"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/offload"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

// recvScratch is the receive goroutine's reusable storage.
type recvScratch struct {
	local localQueue
	gro   *offload.GRO // made on first use by a vnet-layout switch
	memo  rxMemo       // the last frame's table work, for this batch
	// stranger stands in for a sender that is neither a peer nor a
	// member, for VNIs in multicast mode (group.go).
	stranger peer
}

// rxMemo is what the table said for the last frame received in a batch:
// its MACs (destination, source), VNI and sending VTEP, and the local port
// its destination is at (nil: flood to the VNI's ports).
type rxMemo struct {
	valid bool
	macs  [12]byte
	vni   uint32
	from  *peer
	dst   *port
}

// groFrames is how many frames one GRO pass holds before it is written
// out, and groBufferLen the size of each: a merge may reach a 64 KB IP
// packet. 64 of them are 4 MB, once per switch.
const (
	groFrames    = 64
	groBufferLen = offload.VirtioNetHdrLen + offload.MaxSuperFrame
)

// receiveLoop reads one receive queue of the conn (one of its SO_REUSEPORT
// sockets) until the conn closes. Each queue has its own loop and storage.
func (s *Switch) receiveLoop(r BatchReader) {
	defer s.wg.Done()
	msgs := make([]Message, s.conn.BatchSize())
	for i := range msgs {
		msgs[i].Buf = make([]byte, s.cfg.MaxDatagram)
	}
	var rs recvScratch
	var lastErr time.Time
	for {
		n, err := r.ReadBatch(msgs)
		if err != nil {
			if s.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// UDP read errors are transient (an ICMP error queued on
			// the socket); log at most once a second.
			if time.Since(lastErr) > time.Second {
				lastErr = time.Now()
				s.log.Warn("udp receive", "err", err)
			}
			continue
		}
		s.receiveBatch(msgs[:n], &rs)
	}
}

// receiveBatch handles one batch of messages, each one datagram or (UDP
// GRO) several of Segment bytes back to back. It is separate from the loop
// so tests and fuzzers can drive it directly.
func (s *Switch) receiveBatch(msgs []Message, rs *recvScratch) {
	ports, peers, cs := s.ports.Load(), s.peers.Load(), s.captures.Load().atPeers()
	now := s.fdb.Now().UnixNano()
	rs.local.lay = ports.lay
	rs.memo.valid = false // the table and the ports may have changed
	if ports.lay.vnet && rs.gro == nil {
		rs.gro = offload.NewGRO(groFrames, groBufferLen)
	}
	sb, st := s.sealing.Load(), seal.Time{} // encrypted networks (sealing.go)
	if sb != nil && sb.keys != nil {
		st = sb.keys.At(time.Now().UnixNano())
	}
	for i := range msgs {
		m := &msgs[i]
		b := m.Buf[:m.N]
		seg := m.Segment
		if seg <= 0 || seg > len(b) {
			seg = len(b)
		}
		from := peers.byAddr[m.Addr.Addr()]
		if from == nil {
			from = rs.strangerAt(m.Addr.Addr(), peers)
		}
		for len(b) > 0 {
			d := b[:min(seg, len(b))]
			b = b[len(d):]
			if sb != nil {
				var ok bool
				if d, ok = s.unseal(d, from, sb, st); !ok {
					continue
				}
			}
			if cs != nil {
				cs.peerIn(d, m.Addr, from, ports)
			}
			s.receiveOne(d, from, ports, now, rs)
		}
	}
	if ports.lay.vnet {
		s.flushGRO(rs, ports)
	}
	s.flushLocal(&rs.local)
}

// receiveOne handles one datagram pkt from the VTEP from (nil if it is
// neither a peer nor a member).
func (s *Switch) receiveOne(pkt []byte, from *peer, ports *portSet, now int64, rs *recvScratch) {
	vni, frame, reason, ok := decap(pkt)
	if !ok {
		s.drops.add(reason, 1)
		return
	}
	vports := ports.byVNI[vni]
	if len(vports) == 0 {
		s.drops.add(dropUnknownVNI, 1)
		return
	}
	if from == nil || !from.accepts(vni) {
		s.drops.add(dropNotMember, 1)
		return
	}
	from.traffic.rx(1, len(frame))
	var c frameClass
	if reason, ok := classify(frame, &c); !ok {
		s.drops.add(reason, 1)
		return
	}
	// The table is consulted once per run of frames between the same two
	// MACs from the same VTEP in a batch (the segments of a UDP GRO
	// buffer): now is the batch's, so learning the source again would
	// change nothing, and the destination's entry is taken as it was.
	m := &rs.memo
	if macs := [12]byte(frame[:12]); !m.valid || m.macs != macs || m.vni != vni || m.from != from {
		if !IsRouterMAC(c.Src) { // routed frames: every node's router MAC is the same (routing.go)
			s.fdb.Learn(fdb.Key{VNI: vni, MAC: c.Src}, fdb.Location{VTEP: from.addr}, fdb.OriginLearned, now)
		}
		*m = rxMemo{valid: true, macs: macs, vni: vni, from: from}
		if !c.Dst.IsMulticast() {
			if loc, ok := s.fdb.Lookup(fdb.Key{VNI: vni, MAC: c.Dst}); ok && loc.IsLocal() {
				m.dst = ports.byID[loc.Port]
			}
		}
	}
	if c.EtherType == 0x0806 || c.EtherType == 0x86dd {
		s.learnFromWire(vni, frame, &c)
	}
	if m.dst != nil {
		s.deliver(rs, ports, m.dst, pkt, frame, &c)
		return
	}
	// Broadcast, multicast, or not a local MAC: every port of the VNI,
	// never back to the underlay (split horizon).
	for _, dp := range vports {
		s.deliver(rs, ports, dp, pkt, frame, &c)
	}
}

// deliver queues frame (decapsulated from pkt) for port dp: in place, or
// through GRO into a buffer with a virtio-net header for a vnet port.
func (s *Switch) deliver(rs *recvScratch, ports *portSet, dp *port, pkt, frame []byte, c *frameClass) {
	if !fitsMTU(frame, c, dp.mtu) {
		s.drops.add(dropMTU, 1)
		return
	}
	if !ports.lay.vnet {
		rs.local.add(dp, pkt)
		return
	}
	if !rs.gro.Add(dp.id, frame) {
		s.flushGRO(rs, ports)
		if !rs.gro.Add(dp.id, frame) { // an empty GRO refuses only a frame larger than its buffers
			s.drops.add(dropMTU, 1)
		}
	}
}

// flushGRO writes what GRO holds to the ports and empties it.
func (s *Switch) flushGRO(rs *recvScratch, ports *portSet) {
	g := rs.gro
	for i := range g.Len() {
		id, buf := g.Frame(i)
		if dp := ports.byID[id]; dp != nil {
			rs.local.add(dp, buf)
		}
	}
	s.flushLocal(&rs.local)
	g.Reset()
}
