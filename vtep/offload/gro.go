package offload

// This file holds the receive-path GRO: the inner frames of a batch of
// VXLAN datagrams, on their way to TAPs opened with IFF_VNET_HDR, are copied
// into a few large buffers, the TCP segments of a flow merged into one
// super-frame with a virtio_net_hdr (fast-path.md section 4), so that a TAP
// gets one write per 64 KB rather than one per 1.5 KB.
//
// Design notes: the merge rules are those of the kernel's inet_gro_receive,
// ipv6_gro_receive and tcp_gro_receive, made stricter where that keeps the
// code simple: untagged Ethernet, IPv4 without options or fragmentation and
// with DF (so the ids do not matter), IPv6 without extension headers; equal
// Ethernet header, TOS/traffic class, flow label, TTL/hop limit, ACK number,
// window, urgent pointer and TCP option bytes; only ACK set, PSH allowed on
// the segment that closes a merge; exact sequence adjacency; every segment
// gso_size bytes but the last. Each segment's checksums are verified before
// it is merged (a segment with a bad checksum is passed through for the
// stack to drop), so the merged frame can carry NEEDS_CSUM with only the
// pseudo-header sum.
//
// Order: a frame only ever joins the newest output of its flow (same key,
// addresses and ports), and only while that output is open, so merging moves
// a segment ahead of other flows' frames but never ahead of a frame of its
// own flow. The flow table is open addressing over 2n slots at most half
// full, emptied by Reset in O(1) with a generation number.

import (
	"bytes"
	"encoding/binary"
)

// GRO merges the frames of a receive batch, per destination key (a port
// id), into as few TAP writes as possible. It belongs to one goroutine;
// nothing it does per frame allocates.
type GRO struct {
	bufs    [][]byte  // n output buffers of bufSize bytes, one slab
	bufSize int       // len of each buffer
	outs    []groOut  // outputs in use, in the order they were started
	table   []groSlot // flow -> newest output of the flow
	gen     uint32    // the table's live generation; other slots are empty
	mask    uint32    // len(table)-1
}

// groOut is the state of one output buffer.
type groOut struct {
	key      int
	n        int    // bytes of the buffer in use: virtio_net_hdr and frame
	tracked  bool   // untagged TCP with ports: in the flow table
	open     bool   // more segments may join
	v6       bool   // tracked: IPv6, else IPv4
	l4       int    // tracked: TCP header offset in the frame
	hdrLen   int    // open: Ethernet, IP and TCP headers
	gsoSize  int    // open: payload bytes of the first segment
	nextSeq  uint32 // open: the sequence number a joining segment needs
	segs     int    // segments merged into the frame
	psh      bool   // the last segment merged had PSH
	finished int    // segs when finish last ran
}

// groSlot is one slot of the flow table.
type groSlot struct {
	gen  uint32 // live when equal to GRO.gen
	hash uint32
	out  int32 // index into outs
}

// tcpSeg is what Add learns about a frame.
type tcpSeg struct {
	v6        bool
	l4        int // TCP header offset
	hdrLen    int // Ethernet, IP and TCP headers
	payload   int // TCP payload bytes
	seq       uint32
	flags     uint8
	candidate bool // may start or join a merge: shape and checksums checked
}

// NewGRO preallocates n output buffers of bufSize bytes each (n*bufSize
// bytes in all). bufSize >= VirtioNetHdrLen + MaxSuperFrame lets any merge
// reach a 64 KB IP packet; smaller buffers merge less. It panics if n < 1
// or bufSize < VirtioNetHdrLen.
func NewGRO(n, bufSize int) *GRO {
	if n < 1 || bufSize < VirtioNetHdrLen {
		panic("offload: NewGRO needs n >= 1 and bufSize >= VirtioNetHdrLen")
	}
	g := &GRO{bufs: make([][]byte, n), bufSize: bufSize, outs: make([]groOut, 0, n), gen: 1}
	slab := make([]byte, n*bufSize)
	for i := range g.bufs {
		g.bufs[i] = slab[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
	}
	size := 16
	for size < 2*n {
		size *= 2
	}
	g.table = make([]groSlot, size)
	g.mask = uint32(size - 1)
	return g
}

// Len returns the number of outputs, each one TAP write.
func (g *GRO) Len() int { return len(g.outs) }

// Frame returns output i (0 <= i < Len()): its key and buf, a virtio_net_hdr
// at buf[0:VirtioNetHdrLen] and the frame after it. A merged frame has
// Flags FlagNeedsCsum, GSOType GSOTCPv4 or GSOTCPv6, GSOSize the payload of
// its first segment, HdrLen its headers' length, CsumStart the TCP header's
// offset from the Ethernet header and CsumOffset 16, its IP lengths and IPv4
// header checksum fixed and the TCP checksum field holding the folded
// pseudo-header sum. Any other frame is byte-identical to the one added,
// behind an all-zero header, or FlagDataValid alone when Add verified its
// checksums. buf is valid until Reset.
func (g *GRO) Frame(i int) (key int, buf []byte) {
	o := &g.outs[i]
	if o.segs > 1 && o.finished != o.segs {
		g.finish(i)
	}
	return o.key, g.bufs[i][:o.n]
}

// Reset empties g for the next batch, keeping its buffers.
func (g *GRO) Reset() {
	g.outs = g.outs[:0]
	g.gen++
	if g.gen == 0 { // after 2^32 batches: the old generations must go
		clear(g.table)
		g.gen = 1
	}
}

// Add copies frame, an Ethernet frame, into the output for key: appended
// to the newest output of its TCP flow and key when the merge rules allow,
// else into a new output. It returns false, taking nothing, when all
// buffers are in use (the caller writes the outputs out, calls Reset and
// Adds again) and for a frame longer than bufSize-VirtioNetHdrLen, which no
// buffer holds; an empty GRO takes every other frame. frame is not kept.
func (g *GRO) Add(key int, frame []byte) bool {
	if len(frame) > g.bufSize-VirtioNetHdrLen {
		return false
	}
	var seg tcpSeg
	if !parseTCP(frame, &seg) {
		if len(g.outs) == cap(g.outs) {
			return false
		}
		g.start(key, frame, nil)
		return true
	}
	h := flowHash(key, frame, &seg)
	slot := h & g.mask
	for {
		sl := &g.table[slot]
		if sl.gen != g.gen {
			break // empty: a flow not seen in this batch
		}
		if sl.hash == h && g.sameFlow(int(sl.out), key, frame, &seg) {
			if seg.candidate && g.join(int(sl.out), frame, &seg) {
				return true
			}
			break
		}
		slot = (slot + 1) & g.mask
	}
	if len(g.outs) == cap(g.outs) {
		return false
	}
	g.table[slot] = groSlot{gen: g.gen, hash: h, out: int32(len(g.outs))}
	g.start(key, frame, &seg)
	return true
}

// start copies frame into a new output; seg is nil for a frame that is not
// tracked (not untagged TCP).
func (g *GRO) start(key int, frame []byte, seg *tcpSeg) {
	i := len(g.outs)
	g.outs = g.outs[:i+1]
	o := &g.outs[i]
	*o = groOut{key: key, n: VirtioNetHdrLen + len(frame), segs: 1}
	buf := g.bufs[i]
	clear(buf[:VirtioNetHdrLen])
	copy(buf[VirtioNetHdrLen:], frame)
	if seg == nil {
		return
	}
	o.tracked, o.v6, o.l4 = true, seg.v6, seg.l4
	if !seg.candidate {
		return
	}
	buf[0] = FlagDataValid // Add verified the checksums
	if seg.flags&tcpPSH == 0 {
		o.open = true
		o.hdrLen = seg.hdrLen
		o.gsoSize = seg.payload
		o.nextSeq = seg.seq + uint32(seg.payload)
	}
}

// sameFlow reports whether output i holds a frame of the flow (key,
// addresses, ports) of frame.
func (g *GRO) sameFlow(i, key int, frame []byte, seg *tcpSeg) bool {
	o := &g.outs[i]
	if o.key != key || !o.tracked || o.v6 != seg.v6 {
		return false
	}
	of := g.bufs[i][VirtioNetHdrLen:o.n]
	if !bytes.Equal(of[o.l4:o.l4+4], frame[seg.l4:seg.l4+4]) {
		return false
	}
	if seg.v6 {
		return bytes.Equal(of[ethHeaderLen+8:ethHeaderLen+40], frame[ethHeaderLen+8:ethHeaderLen+40])
	}
	return bytes.Equal(of[ethHeaderLen+12:ethHeaderLen+20], frame[ethHeaderLen+12:ethHeaderLen+20])
}

// join merges the candidate segment frame into output i, the newest of its
// flow, if the rules allow, and reports whether it did.
func (g *GRO) join(i int, frame []byte, seg *tcpSeg) bool {
	o := &g.outs[i]
	if !o.open || seg.hdrLen != o.hdrLen || seg.seq != o.nextSeq || seg.payload > o.gsoSize {
		return false
	}
	ipLen := o.n - VirtioNetHdrLen - ethHeaderLen // IPv4 total length; 40 + payload length for IPv6
	if ipLen+seg.payload > maxIPLen || o.n+seg.payload > g.bufSize {
		return false
	}
	buf := g.bufs[i]
	of := buf[VirtioNetHdrLen:o.n]
	// Ethernet header; then IPv4 version/IHL, TOS, and flags/fragment
	// offset, TTL, protocol (the id may differ, DF being set); or IPv6
	// version, traffic class, flow label, and next header, hop limit.
	// (Fixed-size array compares: the compiler inlines them.)
	if [ethHeaderLen + 2]byte(of) != [ethHeaderLen + 2]byte(frame) {
		return false
	}
	if seg.v6 {
		if [2]byte(of[ethHeaderLen+2:]) != [2]byte(frame[ethHeaderLen+2:]) ||
			[2]byte(of[ethHeaderLen+6:]) != [2]byte(frame[ethHeaderLen+6:]) {
			return false
		}
	} else if [4]byte(of[ethHeaderLen+6:]) != [4]byte(frame[ethHeaderLen+6:]) {
		return false
	}
	// TCP: ACK number, data offset, window, urgent pointer (meaningless
	// without URG, which no candidate has, but a segment re-cut from the
	// merge gets the first one's), options.
	l4 := o.l4
	ot, ft := of[l4:o.hdrLen], frame[l4:seg.hdrLen]
	if [5]byte(ot[8:]) != [5]byte(ft[8:]) || [2]byte(ot[14:]) != [2]byte(ft[14:]) ||
		[2]byte(ot[18:]) != [2]byte(ft[18:]) || !bytes.Equal(ot[tcpMinHeaderLen:], ft[tcpMinHeaderLen:]) {
		return false
	}

	copy(buf[o.n:], frame[seg.hdrLen:])
	o.n += seg.payload
	o.segs++
	o.nextSeq += uint32(seg.payload)
	o.psh = seg.flags&tcpPSH != 0
	if seg.payload < o.gsoSize || o.psh {
		o.open = false
	}
	return true
}

// finish writes the headers of output i once segments have joined it: the
// IP lengths (and IPv4 header checksum), PSH if the last segment had it,
// the TCP checksum field as the pseudo-header sum, and the virtio_net_hdr.
// Frame calls it; doing it once per output rather than per join keeps it
// off the per-segment path.
func (g *GRO) finish(i int) {
	o := &g.outs[i]
	buf := g.bufs[i]
	of := buf[VirtioNetHdrLen:o.n]
	l4 := o.l4
	ip := of[ethHeaderLen:l4]
	tcp := of[l4:]
	if o.psh {
		tcp[13] |= tcpPSH
	}
	gso := uint8(GSOTCPv4)
	if o.v6 {
		gso = GSOTCPv6
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(tcp)))
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)+len(tcp)))
		setIPv4Checksum(ip)
	}
	binary.BigEndian.PutUint16(tcp[tcpChecksumField:], fold64(tcpPseudo(ip, o.v6, len(tcp))))
	h := VirtioNetHdr{
		Flags:      FlagNeedsCsum,
		GSOType:    gso,
		HdrLen:     uint16(o.hdrLen),
		GSOSize:    uint16(o.gsoSize),
		CsumStart:  uint16(l4),
		CsumOffset: tcpChecksumField,
	}
	h.Encode(buf)
	o.finished = o.segs
}

// parseTCP fills seg and reports whether frame is TCP over IPv4 or IPv6
// behind an untagged Ethernet header, with its ports inside the frame. It
// sets seg.candidate when the segment may be merged: IPv4 with IHL 5, DF
// and no fragmentation or IPv6 with TCP as next header, IP length matching
// the frame, a payload, only ACK (and maybe PSH) set, and correct IPv4
// header and TCP checksums.
func parseTCP(frame []byte, seg *tcpSeg) bool {
	if len(frame) < ethHeaderLen {
		return false
	}
	ip := frame[ethHeaderLen:]
	var ipLen int // from the IP header, to compare with the frame's
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherTypeIPv4:
		if len(ip) < ipv4MinHeaderLen || ip[0]>>4 != 4 || ip[9] != protoTCP {
			return false
		}
		ihl := int(ip[0]&0x0f) * 4
		frag := binary.BigEndian.Uint16(ip[6:8])
		if ihl < ipv4MinHeaderLen || frag&0x1fff != 0 { // a later fragment has no ports
			return false
		}
		seg.l4 = ethHeaderLen + ihl
		if len(frame) < seg.l4+4 {
			return false
		}
		if ihl != ipv4MinHeaderLen || frag != ipv4FlagDF {
			return true
		}
		ipLen = int(binary.BigEndian.Uint16(ip[2:4]))
	case etherTypeIPv6:
		if len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 || ip[6] != protoTCP {
			return false
		}
		seg.v6 = true
		seg.l4 = ethHeaderLen + ipv6HeaderLen
		if len(frame) < seg.l4+4 {
			return false
		}
		ipLen = ipv6HeaderLen + int(binary.BigEndian.Uint16(ip[4:6]))
	default:
		return false
	}
	if ethHeaderLen+ipLen != len(frame) || len(frame) < seg.l4+tcpMinHeaderLen {
		return true
	}
	tcp := frame[seg.l4:]
	doff := int(tcp[12]>>4) * 4
	seg.hdrLen = seg.l4 + doff
	seg.flags = tcp[13]
	if doff < tcpMinHeaderLen || seg.hdrLen >= len(frame) || seg.flags&^tcpPSH != tcpACK {
		return true
	}
	if !seg.v6 && Checksum(ip[:ipv4MinHeaderLen], 0) != 0xffff {
		return true
	}
	if Checksum(tcp, tcpPseudo(ip, seg.v6, len(tcp))) != 0xffff {
		return true
	}
	seg.payload = len(frame) - seg.hdrLen
	seg.seq = binary.BigEndian.Uint32(tcp[4:8])
	seg.candidate = true
	return true
}

// flowHash hashes key, the IP addresses and the TCP ports of frame.
func flowHash(key int, frame []byte, seg *tcpSeg) uint32 {
	x := uint64(key)*0x9e3779b97f4a7c15 ^ uint64(binary.BigEndian.Uint32(frame[seg.l4:]))
	ip := frame[ethHeaderLen:]
	if seg.v6 {
		x ^= binary.LittleEndian.Uint64(ip[8:]) ^ binary.LittleEndian.Uint64(ip[16:])<<1 ^
			binary.LittleEndian.Uint64(ip[24:])<<2 ^ binary.LittleEndian.Uint64(ip[32:])<<3
	} else {
		x ^= binary.LittleEndian.Uint64(ip[12:]) << 7
	}
	x *= 0xbf58476d1ce4e5b9 // splitmix64's finalizer
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return uint32(x)
}
