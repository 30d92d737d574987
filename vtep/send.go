package vtep

// This file holds the TAP -> wire path: one goroutine per port reads a batch
// of frames, learns source MACs, and hands each frame to a local port, its
// VTEP, or (for broadcast, multicast and unknown unicast) every other port
// and member VTEP of the VNI. On a plain port the frame is read at HeaderLen
// headroom and the VXLAN header written there in place; on a port with
// virtio-net headers a frame for the wire is segmented into VXLAN datagrams
// instead (fastpath.go). Local writes and the UDP send are each one call
// per batch.

import (
	"errors"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep/offload"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

// localOut collects the frames of one batch bound for one local port.
type localOut struct {
	p    *port
	bufs [][]byte // each frame at HeaderLen offset
}

// localQueue groups a batch's local deliveries by port. Its storage is
// reused from batch to batch. lay says where the frames sit in the buffers
// queued: every buffer holds lay.frameOff bytes (the VXLAN or virtio-net
// header) before its frame and is written from lay.ioOff on.
type localQueue struct {
	outs []localOut
	lay  layout
}

func (q *localQueue) add(p *port, pkt []byte) {
	for i := range q.outs {
		if q.outs[i].p == p {
			q.outs[i].bufs = append(q.outs[i].bufs, pkt)
			return
		}
	}
	if len(q.outs) < cap(q.outs) {
		q.outs = q.outs[:len(q.outs)+1]
		o := &q.outs[len(q.outs)-1]
		o.p, o.bufs = p, append(o.bufs[:0], pkt)
		return
	}
	q.outs = append(q.outs, localOut{p: p, bufs: append(make([][]byte, 0, 64), pkt)})
}

// flushLocal writes every queued frame with one Write per port.
func (s *Switch) flushLocal(q *localQueue) {
	for i := range q.outs {
		o := &q.outs[i]
		n, err := o.p.dev.Write(o.bufs, q.lay.ioOff)
		if err != nil {
			s.warnWrite(o.p, err)
		}
		if cs := s.captures.Load(); cs != nil {
			cs.portOut(o.p, o.bufs, n, q.lay.frameOff)
		}
		bytes := 0
		for _, b := range o.bufs[:n] {
			bytes += len(b) - q.lay.frameOff
		}
		o.p.traffic.tx(n, bytes)
		s.drops.add(dropWriteError, uint64(len(o.bufs)-n))
		clear(o.bufs)
		o.p, o.bufs = nil, o.bufs[:0]
	}
	q.outs = q.outs[:0]
}

// remoteQueue collects a batch's messages, the counters of the peer each
// goes to and how many frames each carries (more than one for a UDP GSO
// message).
type remoteQueue struct {
	msgs   []Message
	ctrs   []*trafficCounters
	frames []int
	peers  []*seal.Peer // the sealing state of each message's peer (sealing.go)
}

// add queues pkt, one VXLAN datagram or (segSize > 0) frames datagrams of
// segSize bytes back to back, to peer to from the socket that flow picks.
func (q *remoteQueue) add(pkt []byte, segSize, frames int, to *peer, flow uint32) {
	q.msgs = append(q.msgs, Message{Buf: pkt, N: len(pkt), Addr: to.addr, Segment: segSize, Flow: flow})
	q.ctrs = append(q.ctrs, to.traffic)
	q.frames = append(q.frames, frames)
	q.peers = append(q.peers, to.seal)
}

// flushRemote sends every queued datagram in one WriteBatch.
func (s *Switch) flushRemote(q *remoteQueue) {
	if len(q.msgs) == 0 {
		return
	}
	s.conn.WriteBatch(q.msgs)
	if cs := s.captures.Load(); cs != nil {
		for i := range q.msgs {
			cs.peerOut(&q.msgs[i])
		}
	}
	lost := 0
	for i, m := range q.msgs {
		if !m.Sent { // skipped: the others still went
			lost += q.frames[i]
			continue
		}
		q.ctrs[i].tx(q.frames[i], m.N-q.frames[i]*HeaderLen)
	}
	s.drops.add(dropWriteError, uint64(lost))
	clear(q.msgs)
	clear(q.ctrs)
	clear(q.peers)
	q.msgs, q.ctrs, q.frames, q.peers = q.msgs[:0], q.ctrs[:0], q.frames[:0], q.peers[:0]
}

// sendScratch is a port reader's reusable storage.
type sendScratch struct {
	bufs    [][]byte
	sizes   []int
	bufSize int // of each of bufs
	local   localQueue
	remote  remoteQueue
	orphan  peer    // stands in for a VTEP that is not a peer, for counting
	one     []*peer // a single destination, as a slice

	route routeMemo // the batch's last routed destination (routing.go)

	// Offload path only (vnet layout).
	seg   offload.Segmenter
	arena arena
	hdr   offload.VirtioNetHdr
	// lazy is the port's TAP while it has virtio-net headers but no TSO
	// yet (tap.Config.LazyTSO): it gets TSO when the port is busy.
	lazy tap.TSOEnabler

	capture captureScratch // the frame in hand's capture slots (capturehook.go)
	seal    sealScratch    // encrypted networks (sealing.go)
}

// initialBatch is how many read buffers a port starts with. A port that
// fills its batch doubles it, up to the device's BatchSize: an idle
// container port holds 8 frames' worth of memory (12 KB at MTU 1450), not
// 64 (95 KB), which is most of an endpoint's cost at 1000 endpoints. A
// port with TSO reads super-frames of up to 64 KB into each buffer: it
// starts with one and grows to maxVnetBatch (1 MB of frames per read
// batch, which is ~700 wire datagrams). A port with lazy TSO starts like a
// plain one and turns TSO on when a read fills initialBatch buffers.
const (
	initialBatch      = 8
	initialVnetBatch  = 1
	maxVnetBatch      = 16
	vnetReadBufferLen = offload.VirtioNetHdrLen + offload.MaxSuperFrame + 1
)

func newSendScratch(p *port) *sendScratch {
	bs := p.dev.BatchSize()
	first := min(initialBatch, bs)
	// One byte more than the largest frame, so an oversized frame shows
	// as a full buffer rather than passing truncated.
	size := HeaderLen + maxFrameLen(p.mtu) + 1
	var lazy tap.TSOEnabler
	if p.lay.vnet {
		bs = min(bs, maxVnetBatch)
		size = offload.VirtioNetHdrLen + maxFrameLen(p.mtu) + 1
		if o := p.dev.Offloads(); o.TSO4 || o.TSO6 {
			size, first = vnetReadBufferLen, min(initialVnetBatch, bs)
		} else if te, ok := p.dev.(tap.TSOEnabler); ok {
			lazy = te
		}
	}
	sc := &sendScratch{
		sizes:   make([]int, bs),
		bufSize: size,
		remote:  remoteQueue{msgs: make([]Message, 0, bs), ctrs: make([]*trafficCounters, 0, bs), frames: make([]int, 0, bs)},
		orphan:  peer{traffic: new(trafficCounters)},
		one:     make([]*peer, 1),
		lazy:    lazy,
	}
	sc.grow(min(first, bs))
	return sc
}

// grow adds read buffers until there are n.
func (sc *sendScratch) grow(n int) {
	for len(sc.bufs) < n {
		sc.bufs = append(sc.bufs, make([]byte, sc.bufSize))
	}
}

// enableTSO turns TSO on for a lazy port, after making its read buffers
// large enough for super-frames. If the kernel refuses, the port goes on
// without (it has big buffers it does not need, nothing worse).
func (s *Switch) enableTSO(p *port, sc *sendScratch) {
	sc.bufSize = vnetReadBufferLen
	for i := range sc.bufs {
		sc.bufs[i] = make([]byte, sc.bufSize)
	}
	if o, err := sc.lazy.EnableTSO(); err != nil {
		s.log.Warn("port busy, but TSO could not be turned on", "port", p.name, "err", err)
	} else {
		s.log.Debug("port busy: TSO on", "port", p.name, "offloads", o)
	}
	sc.lazy = nil
}

// sendLoop reads queue q of port p (the device itself, or one queue of a
// multi-queue TAP) until it fails or closes.
func (s *Switch) sendLoop(p *port, q tap.Device) {
	defer s.wg.Done()
	defer p.readers.Done()
	sc := newSendScratch(p)
	for {
		n, err := q.Read(sc.bufs, sc.sizes[:len(sc.bufs)], p.lay.ioOff)
		if err != nil {
			if s.closed() || errors.Is(err, tap.ErrClosed) {
				return
			}
			if !p.err.CompareAndSwap(nil, &err) {
				return // another queue reported the port's failure
			}
			s.log.Warn("port reader stopped", "port", p.name, "err", err)
			if s.cfg.OnPortStopped != nil {
				s.cfg.OnPortStopped(p.id, err)
			}
			return
		}
		s.sendBatch(p, sc, n)
		switch {
		case n < len(sc.bufs) || n < initialBatch && sc.lazy != nil:
		case sc.lazy != nil:
			s.enableTSO(p, sc) // busy: 64 KB at a time
		case n < len(sc.sizes):
			sc.grow(min(2*n, len(sc.sizes))) // busy: batch more
		}
	}
}

// sendBatch forwards the n frames in sc.bufs read from port p.
func (s *Switch) sendBatch(p *port, sc *sendScratch, n int) {
	ports, peers, res, cs := s.ports.Load(), s.peers.Load(), s.resolver.Load(), s.captures.Load().atPort(p)
	now := s.fdb.Now().UnixNano()
	bufs, sizes, local, remote := sc.bufs, sc.sizes, &sc.local, &sc.remote
	lay := p.lay
	local.lay = lay
	sc.arena.reset()
	sc.route.valid = false // the table may have changed
	sc.seal.arena.reset()
	rxBytes := 0
	for i := range n {
		buf := bufs[i]
		end := lay.ioOff + sizes[i]
		if end < lay.frameOff {
			s.drops.add(dropShort, 1)
			continue
		}
		frame := buf[lay.frameOff:end]
		rxBytes += len(frame)
		if cs != nil {
			sc.capture.next(cs, p, frame)
		}
		h := &sc.hdr
		if lay.vnet {
			_ = h.Decode(buf)
		}
		super := lay.vnet && h.GSOType != offload.GSONone
		var c frameClass
		reason, ok := classify(frame, &c)
		if ok {
			reason, ok = p.admit(frame, &c, end == len(buf) || super && superTooBig(frame, &c, h, p.mtu), super)
		}
		if !ok {
			sc.capture.drop(&s.drops, reason)
			if reason == dropMTU {
				s.tooBig(p, sc, buf, end, &c, now) // routing.go
			}
			continue
		}
		s.fdb.Learn(fdb.Key{VNI: p.vni, MAC: c.Src}, fdb.Location{Port: p.id}, fdb.OriginLocal, now)
		if res != nil && (c.EtherType == 0x0800 || c.EtherType == 0x86dd) && !super {
			if taken, n := s.resolve(res, p, buf, lay.frameOff, len(frame)); taken {
				if n > 0 {
					clear(buf[:lay.frameOff])          // no offload asked of the answer
					local.add(p, buf[:lay.frameOff+n]) // the answer, built in place
				}
				continue
			}
		}
		q := notQuestion
		if c.EtherType == 0x0806 || c.EtherType == 0x86dd {
			var n int
			if q, n = s.proxy(p, buf, lay.frameOff, len(frame), &c); q == answered {
				clear(buf[:lay.frameOff])          // no offload asked of the reply
				local.add(p, buf[:lay.frameOff+n]) // the reply, built in place
				continue
			}
			if q == spoofed {
				sc.capture.drop(&s.drops, dropPortSecurity)
				continue
			}
		}
		if !p.secure && (c.EtherType == 0x0800 || c.EtherType == 0x86dd) {
			s.learnSourceIP(p.vni, frame, &c)
		}
		if c.Dst == RouterMAC(p.vni) && !s.route(p, sc, buf, end, &c, now) { // routing.go
			continue
		}
		// pkt is what a local port is written: the frame behind its
		// virtio-net header (vnet), or behind room for the VXLAN header
		// (plain), where it is also the datagram for the wire.
		pkt := buf[:end]
		if !lay.vnet {
			_ = Header{VNI: p.vni}.Encode(buf)
		}

		loc, found := lookupDst(s.fdb, p.vni, c.Dst)
		switch kind, dp := p.place(loc, found, IsRouterMAC(c.Src), ports); kind {
		case destRemote:
			sc.one[0] = peers.peerAt(loc.VTEP, &sc.orphan)
			s.toPeers(p, sc, pkt, frame, h, &c, sc.one)
			continue
		case destHairpin:
			sc.capture.drop(&s.drops, dropHairpin)
			continue
		case destLocal:
			local.add(dp, pkt)
			continue
		}
		// Broadcast, multicast, unknown unicast: every other port of the
		// VNI and every member VTEP (head-end replication) or the VNI's
		// group (group.go), as the VNI's flood policy allows.
		if !s.mayFlood(p.vni, &c, q) {
			sc.capture.why, sc.capture.dropped = dropPolicy, true // counted by mayFlood
			continue
		}
		if !p.floodToken(now) {
			sc.capture.why, sc.capture.dropped = dropFloodRate, true // counted by floodToken
			continue
		}
		for _, dp := range ports.byVNI[p.vni] {
			if dp != p {
				local.add(dp, pkt)
			}
		}
		s.toPeers(p, sc, pkt, frame, h, &c, peers.floodList(p.vni))
	}
	if cs != nil {
		sc.capture.flush()
	}
	p.traffic.rx(n, rxBytes)
	s.flushLocal(local)
	s.flushRemote(remote)
}

// toPeers queues frame, read from port p, for every peer in tos from the
// source port its inner flow picks: segmented into VXLAN datagrams in the
// arena (vnet layout), or as pkt, the datagram built in place (plain).
func (s *Switch) toPeers(p *port, sc *sendScratch, pkt, frame []byte, h *offload.VirtioNetHdr, c *frameClass, tos []*peer) {
	if len(tos) == 0 {
		return
	}
	flow := flowHash(frame, c)
	if sb, ok := s.encrypted(p.vni); ok {
		defer s.sealQueued(sc, sb, len(sc.remote.msgs), time.Now().UnixNano())
	}
	if p.lay.vnet {
		s.encapSegments(p, sc, frame, h, c, tos, flow)
		return
	}
	for _, to := range tos {
		sc.remote.add(pkt, 0, 1, to, flow)
	}
}

// mayFlood applies the VNI's flood policy to a frame the FDB cannot place,
// counting what it drops. Multicast other than ARP and ND always floods.
func (s *Switch) mayFlood(vni uint32, c *frameClass, q question) bool {
	act := floodAction(s.policy(vni), c, q)
	if q == unknownQuestion {
		if act == Drop {
			s.proxyCtr.dropped.Add(1)
		} else {
			s.proxyCtr.flooded.Add(1)
		}
	}
	if act == Drop {
		s.drops.add(dropPolicy, 1)
		return false
	}
	return true
}

// floodToken takes one token from the port's flood budget (a token bucket
// of FloodRate tokens a second, holding at most one second's worth) and
// reports whether there was one; without, the frame is dropped and counted
// as flood_rate. The port's readers (one per queue) share the bucket.
func (p *port) floodToken(now int64) bool {
	if p.floodRate <= 0 {
		return true
	}
	p.floodMu.Lock()
	defer p.floodMu.Unlock()
	p.floodTokens, p.floodAt = p.floodBudgetLocked(now), now
	if p.floodTokens < 1 {
		p.drops.add(dropFloodRate, 1)
		return false
	}
	p.floodTokens--
	return true
}

// floodBudgetLocked returns the tokens the port's flood budget holds at
// now, refilled since the last take, without taking one. floodMu is held.
func (p *port) floodBudgetLocked(now int64) float64 {
	if p.floodAt == 0 {
		return float64(p.floodRate)
	}
	return min(float64(p.floodRate), p.floodTokens+float64(now-p.floodAt)*float64(p.floodRate)/1e9)
}
