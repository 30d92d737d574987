package vtep

// This file holds the switch's side of the offload fast path (see
// ../shared/docs/fast-path.md): where frames sit in a port's buffers, the
// segmentation of a TAP's TCP super-frames into VXLAN datagrams sent as UDP
// GSO messages, the hash of the inner flow that picks the outer source
// port, and the arena the segments are written to.
//
// Design notes: a port whose TAP has virtio-net headers (tap.Offloads
// VnetHdr) reads each frame at offset 0 as [virtio_net_hdr 10][frame]. A
// frame for a local port is written on unchanged, header and all, so a 64
// KB super-frame crosses between two local ports as one write and the
// kernel completes its checksum. A frame for the wire is segmented (or, if
// it is no super-frame, copied with its checksum completed: VXLAN carries no
// offload metadata) into the arena as VXLAN datagrams of equal size back to
// back, which the conn sends as one UDP GSO message per 64 segments. The
// copy is the price of a header that differs per segment; it is one memcpy
// of what the kernel would otherwise copy per datagram anyway.

import (
	"github.com/ovlsw/ovlsw/vtep/offload"
)

// layout says where frames sit in a port's buffers. Every port of a switch
// has the same layout (AddPort refuses a mix), so the receive path can write
// any port's frames the same way.
type layout struct {
	vnet bool
	// frameOff is where the Ethernet frame starts in a buffer: after room
	// for the VXLAN header (plain), or after the virtio-net header (vnet).
	frameOff int
	// ioOff is the offset at which Device.Read places and Device.Write
	// takes a frame: the frame itself (plain), or the virtio-net header
	// in front of it (vnet).
	ioOff int
}

var (
	plainLayout = layout{frameOff: HeaderLen, ioOff: HeaderLen}
	vnetLayout  = layout{vnet: true, frameOff: offload.VirtioNetHdrLen, ioOff: 0}
)

// arenaChunk is the size of one arena chunk: one full GSO message.
const arenaChunk = MaxSegmentedPayload

// arena hands out pieces of a few reused chunks for the datagrams of one
// batch. Chunks are made on first need and kept, so a busy port reaches a
// steady state that allocates nothing.
type arena struct {
	chunks   [][]byte
	cur, off int
}

// take returns n bytes (n <= arenaChunk) that stay valid until reset.
func (a *arena) take(n int) []byte {
	for {
		if a.cur == len(a.chunks) {
			a.chunks = append(a.chunks, make([]byte, arenaChunk))
		}
		if a.off+n <= len(a.chunks[a.cur]) {
			b := a.chunks[a.cur][a.off : a.off+n : a.off+n]
			a.off += n
			return b
		}
		a.cur, a.off = a.cur+1, 0
	}
}

// extend grows b, the last piece take returned, by n bytes if they are
// free right behind it in the same chunk, and reports whether it did.
func (a *arena) extend(b []byte, n int) ([]byte, bool) {
	if a.cur == len(a.chunks) || a.off+n > len(a.chunks[a.cur]) {
		return b, false
	}
	c := a.chunks[a.cur]
	start := a.off - len(b)
	if start < 0 || len(b) == 0 || &c[start] != &b[0] {
		return b, false
	}
	a.off += n
	return c[start:a.off:a.off], true
}

func (a *arena) reset() { a.cur, a.off = 0, 0 }

// encapSegments segments frame (with its virtio-net header h, read from
// port p) into VXLAN datagrams in sc's arena and queues them to every peer
// in tos. It counts and drops a frame the segmenter refuses, and one whose
// segments would not fit the port's MTU.
func (s *Switch) encapSegments(p *port, sc *sendScratch, frame []byte, h *offload.VirtioNetHdr, c *frameClass, tos []*peer, flow uint32) {
	seg := &sc.seg
	if err := seg.Reset(frame, h); err != nil {
		s.drops.add(dropOffload, 1)
		return
	}
	full := seg.FullLen()
	if full-c.L2Len > p.mtu {
		s.drops.add(dropMTU, 1)
		return
	}
	stride := HeaderLen + full
	if seg.Count() == 1 && len(tos) == 1 && sc.remote.appendDatagram(&sc.arena, p.vni, seg, stride, tos[0], flow) {
		return
	}
	perMsg := max(1, min(MaxSegments, MaxSegmentedPayload/stride))
	for left := seg.Count(); left > 0; {
		k := min(left, perMsg)
		buf := sc.arena.take(k * stride)
		used := 0
		for range k {
			used += putDatagram(buf[used:], p.vni, seg)
		}
		left -= k
		segSize := 0
		if k > 1 {
			segSize = stride
		}
		for _, to := range tos {
			sc.remote.add(buf[:used], segSize, k, to, flow)
		}
	}
}

// putDatagram writes seg's next segment at b behind a VXLAN header for vni
// and returns the datagram's length.
func putDatagram(b []byte, vni uint32, seg *offload.Segmenter) int {
	n := seg.Next(b[HeaderLen:])
	_ = Header{VNI: vni}.Encode(b)
	return HeaderLen + n
}

// appendDatagram writes seg's one segment (stride bytes with its VXLAN
// header) into the arena right behind the last message queued, if that
// message goes to the same peer from the same flow, its datagrams are all
// stride bytes long, and one more fits a GSO message: then a run of small
// datagrams of one flow (64-byte UDP, TCP ACKs) leaves as one UDP GSO
// message rather than one message each. It reports whether it did.
func (q *remoteQueue) appendDatagram(a *arena, vni uint32, seg *offload.Segmenter, stride int, to *peer, flow uint32) bool {
	last := len(q.msgs) - 1
	if last < 0 {
		return false
	}
	m := &q.msgs[last]
	size := m.Segment
	if size == 0 {
		size = m.N
	}
	if m.Addr != to.addr || m.Flow != flow || size != stride || m.N%size != 0 || q.ctrs[last] != to.traffic ||
		q.frames[last] >= MaxSegments || m.N+stride > MaxSegmentedPayload {
		return false
	}
	buf, ok := a.extend(m.Buf[:m.N], stride)
	if !ok {
		return false
	}
	m.Buf, m.N, m.Segment = buf, m.N+putDatagram(buf[m.N:], vni, seg), size
	q.frames[last]++
	return true
}

// flowHash hashes what identifies an inner flow: the IP addresses and, for
// TCP and UDP, the ports (FNV-1a); for other frames the MAC addresses. It
// picks the outer UDP source port (RFC 7348 section 5), so one flow always
// leaves from one socket, in order, and different flows spread over the
// receiver's queues.
func flowHash(frame []byte, c *frameClass) uint32 {
	const prime = 16777619
	h := uint32(2166136261)
	mix := func(b []byte) {
		for _, x := range b {
			h = (h ^ uint32(x)) * prime
		}
	}
	l3 := frame[c.L2Len:]
	switch {
	case c.EtherType == 0x0800 && len(l3) >= 20:
		mix(l3[12:20])
		if ihl := int(l3[0]&0x0f) * 4; (l3[9] == 6 || l3[9] == 17) && ihl >= 20 && len(l3) >= ihl+4 && l3[6]&0x3f|l3[7] == 0 {
			mix(l3[ihl : ihl+4])
		}
	case c.EtherType == 0x86dd && len(l3) >= 40:
		mix(l3[8:40])
		if (l3[6] == 6 || l3[6] == 17) && len(l3) >= 44 {
			mix(l3[40:44])
		}
	default:
		mix(frame[0:12])
	}
	return h
}
