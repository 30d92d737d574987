package vtep

// This file holds the wire -> TAP path: one goroutine receives batches of
// VXLAN datagrams, drops (and counts) what is short, malformed, for a VNI
// this node does not serve or from an address that is not a member VTEP of
// the VNI, learns inner source MACs against the sending VTEP, and writes
// each inner frame to its port, or to every port of the VNI when the
// destination is broadcast, multicast or not local. Frames are written from
// the receive buffers in place: one Write per port per batch.

import (
	"errors"
	"net"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

func (s *Switch) receiveLoop() {
	defer s.wg.Done()
	msgs := make([]Message, s.conn.BatchSize())
	for i := range msgs {
		msgs[i].Buf = make([]byte, s.cfg.MaxDatagram)
	}
	var local localQueue
	var lastErr time.Time
	for {
		n, err := s.conn.ReadBatch(msgs)
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
		s.receiveBatch(msgs[:n], &local)
	}
}

// receiveBatch handles one batch of datagrams. It is separate from the loop
// so tests and fuzzers can drive it directly.
func (s *Switch) receiveBatch(msgs []Message, local *localQueue) {
	ports, peers := s.ports.Load(), s.peers.Load()
	now := s.fdb.Now().UnixNano()
	for i := range msgs {
		m := &msgs[i]
		pkt := m.Buf[:m.N]
		vni, frame, reason, ok := Decap(pkt)
		if !ok {
			s.drops.add(reason, 1)
			continue
		}
		vports := ports.byVNI[vni]
		if len(vports) == 0 {
			s.drops.add(DropUnknownVNI, 1)
			continue
		}
		from := peers.byAddr[m.Addr.Addr()]
		if from == nil || !from.serves(vni) {
			s.drops.add(DropNotMember, 1)
			continue
		}
		from.traffic.rx(1, len(frame))
		var c FrameClass
		if reason, ok := Classify(frame, &c); !ok {
			s.drops.add(reason, 1)
			continue
		}
		s.fdb.Learn(fdb.Key{VNI: vni, MAC: c.Src}, fdb.Location{VTEP: from.addr}, fdb.OriginLearned, now)
		if c.EtherType == 0x0806 || c.EtherType == 0x86dd {
			s.learnFromWire(vni, frame, &c)
		}
		if !c.Dst.IsMulticast() {
			if loc, ok := s.fdb.Lookup(fdb.Key{VNI: vni, MAC: c.Dst}); ok && loc.IsLocal() {
				if dp := ports.byID[loc.Port]; dp != nil {
					s.deliver(local, dp, pkt, frame, &c)
					continue
				}
			}
		}
		// Broadcast, multicast, or not a local MAC: every port of the VNI,
		// never back to the underlay (split horizon).
		for _, dp := range vports {
			s.deliver(local, dp, pkt, frame, &c)
		}
	}
	s.flushLocal(local)
}

func (s *Switch) deliver(q *localQueue, dp *port, pkt, frame []byte, c *FrameClass) {
	if !fitsMTU(frame, c, dp.mtu) {
		s.drops.add(DropMTU, 1)
		return
	}
	q.add(dp, pkt)
}
