package dns

// This file holds the stateless TCP responder: SYN -> SYN-ACK, a segment
// carrying one whole length-prefixed query -> the answer's segments ending
// in FIN, FIN -> ACK, RST and bare ACKs -> nothing.
//
// Design notes: the responder keeps no connection state, as SYN cookies
// (RFC 4987 section 3.6) do: the initial sequence number is a keyed hash of
// the 4-tuple whose low three bits carry the index of the client's MSS in
// mssTable. A query segment ACKs that number plus one, which proves the
// handshake happened and brings the MSS back. A retransmitted SYN gets the
// same SYN-ACK; a retransmitted query gets the answer again, which the
// client's TCP discards as a duplicate. What this cannot do is reassemble a
// query split over several segments or answer a second query on the same
// connection; both are dropped and counted. Resolvers send the length
// prefix and the query in one segment (glibc, dig) and one query per
// connection after a truncated UDP answer, so that is enough here.

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// mssTable lists the MSS values a cookie can carry; the client's MSS is
// rounded down to one of them (below 536, the IPv4 minimum, to 536).
var mssTable = [8]uint16{536, 1024, 1220, 1240, 1360, 1400, 1440, 1460}

// advertisedMSS is the MSS the SYN-ACK offers: queries are small, and this
// fits an IPv6 port with the 1280 minimum MTU.
const advertisedMSS = 1220

// tcpState is where a TCP answer goes in the stream: its first sequence
// number, the acknowledgement number, and the client's MSS. The zero value
// means the query came over UDP.
type tcpState struct {
	seq, ack uint32
	mss      int
}

// mssIndex returns the index of the largest mssTable entry not above mss.
func mssIndex(mss uint16) uint32 {
	i := uint32(0)
	for j, m := range mssTable {
		if m <= mss {
			i = uint32(j)
		}
	}
	return i
}

// isn returns the keyed hash of p's 4-tuple the initial sequence number
// is made from. It does not allocate.
func (r *Responder) isn(p *packet) uint32 {
	var b [36]byte
	s, d := p.src.As16(), p.dst.As16()
	copy(b[0:16], s[:])
	copy(b[16:32], d[:])
	binary.BigEndian.PutUint16(b[32:34], p.sport)
	binary.BigEndian.PutUint16(b[34:36], dnsPort)
	return uint32(maphash.Bytes(r.seed, b[:]))
}

// handleTCP answers the TCP segment p; room is the buffer from the frame's
// start to the end of its capacity.
func (r *Responder) handleTCP(port int, n *network, room []byte, p *packet) (Verdict, int) {
	rp := replyTo(p)
	hl := rp.hdrLen()
	dlen := p.end - p.pay
	switch {
	case p.flags&tcpRST != 0:
		return Dropped, 0
	case p.flags&tcpSYN != 0:
		if p.flags&tcpACK != 0 {
			r.c.dropTCPUnsupported.Add(1) // a SYN-ACK: simultaneous open
			return Dropped, 0
		}
		if !r.lim.allow(port) {
			r.c.dropRate.Add(1)
			return Dropped, 0
		}
		if len(room) < hl+4 {
			r.c.dropNoRoom.Add(1)
			return Dropped, 0
		}
		isn := r.isn(p)&^7 | mssIndex(p.mss)
		return Answered, rp.writeTCP(room, isn, p.seq+1, tcpSYN|tcpACK, advertisedMSS, 0)
	case p.flags&tcpACK == 0:
		r.c.dropTCPUnsupported.Add(1)
		return Dropped, 0
	case dlen == 0 && p.flags&tcpFIN == 0:
		return Dropped, 0 // a bare ACK: of our SYN-ACK, our answer or our FIN
	case len(room) < hl:
		r.c.dropNoRoom.Add(1)
		return Dropped, 0
	case dlen == 0:
		// The client's FIN (after ours, or closing early): ACK it.
		return Answered, rp.writeTCP(room, p.ack, p.seq+1, tcpACK, 0, 0)
	}

	// Data: it must ACK one of our SYN-ACKs.
	cookie := p.ack - 1
	if cookie&^7 != r.isn(p)&^7 {
		r.c.dropTCPStale.Add(1)
		return Answered, rp.writeTCP(room, p.ack, 0, tcpRST, 0, 0)
	}
	st := tcpState{seq: p.ack, ack: p.seq + uint32(dlen), mss: int(mssTable[cookie&7])}
	if p.flags&tcpFIN != 0 {
		st.ack++
	}
	var msgs [maxPipelined][]byte
	nq := splitQueries(room[p.pay:p.end], &msgs)
	if nq == 0 {
		r.c.dropTCPUnsupported.Add(1) // a query split over segments, or too many
		return Dropped, 0
	}
	for range nq {
		if !r.lim.allow(port) {
			r.c.dropRate.Add(1)
			return Dropped, 0
		}
	}
	r.c.tcp.Add(uint64(nq))

	// Answer what is local into the stream, and note what is not.
	sb := streamPool.Get().(*[]byte)
	defer streamPool.Put(sb)
	stream := (*sb)[:0]
	var qs [maxPipelined]query
	var fwd [maxPipelined]bool
	nfwd := 0
	for i := range nq {
		var a answer
		switch r.decide(n, msgs[i], &qs[i], &a) {
		case actDrop:
			return Dropped, 0 // counted by decide
		case actForward:
			fwd[i] = true
			nfwd++
			continue
		}
		msg, _ := buildAnswer(stream[len(stream)+2:len(stream)+2:len(stream)+2+maxTCPMessage], &qs[i], &a, r.cfg.TTL, r.cfg.MaxUDPSize)
		if msg == nil {
			r.c.dropNoRoom.Add(1)
			return Dropped, 0
		}
		stream = binary.BigEndian.AppendUint16(stream, uint16(len(msg)))
		stream = stream[:len(stream)+len(msg)]
	}
	if nfwd > 0 {
		// The answers go in the order of the queries: hand them all to
		// the job, the local ones already built.
		j := &job{port: port, rp: rp, tcp: st, parts: make([]part, nq)}
		local := stream
		for i := range nq {
			j.parts[i].q = qs[i]
			if fwd[i] {
				j.parts[i].msg = bytes.Clone(msgs[i])
				continue
			}
			l := int(binary.BigEndian.Uint16(local))
			j.parts[i].ans = bytes.Clone(local[2 : 2+l])
			local = local[2+l:]
		}
		if r.forward(j) != Forwarded {
			return Dropped, 0
		}
		// ACK the query now, so the client does not retransmit it while
		// the upstreams answer; the answer follows from st.seq.
		return Answered, rp.writeTCP(room, st.seq, st.ack, tcpACK, 0, 0)
	}
	if nf := r.sendStream(port, room, &rp, st, stream); nf > 0 {
		return Answered, nf
	}
	r.c.dropNoRoom.Add(1)
	return Dropped, 0
}

// maxPipelined is how many length-prefixed queries one segment may carry:
// glibc sends its A and AAAA queries together; 4 leaves room for others.
const maxPipelined = 4

// splitQueries splits data, the payload of one segment, into the DNS
// messages of its length-prefixed queries and returns how many there are,
// or 0 unless data is exactly 1 to maxPipelined whole ones.
func splitQueries(data []byte, msgs *[maxPipelined][]byte) int {
	n := 0
	for len(data) > 0 {
		if n == maxPipelined || len(data) < 2 {
			return 0
		}
		l := int(binary.BigEndian.Uint16(data))
		if l == 0 || len(data) < 2+l {
			return 0
		}
		msgs[n] = data[2 : 2+l]
		data = data[2+l:]
		n++
	}
	return n
}

// streamPool holds buffers for the length-prefixed answers to one
// segment's queries.
var streamPool = newBufPool(maxPipelined * (2 + maxTCPMessage))

// sendStream sends stream, the length-prefixed answer, as segments of at
// most st.mss bytes ACKing st.ack, the last with FIN set. With room not
// nil the first segment is written into room (the frame buffer the query
// came in) and its length returned, and the others go to Deliver; with
// room nil every segment goes to Deliver. It returns 0 if room cannot hold
// a segment.
func (r *Responder) sendStream(port int, room []byte, rp *reply, st tcpState, stream []byte) int {
	hl := rp.hdrLen()
	mss := max(st.mss, int(mssTable[0]))
	first := 0
	if room != nil {
		size := min(mss, len(stream), len(room)-hl)
		if size <= 0 {
			return 0
		}
		copy(room[hl:], stream[:size])
		flags := uint8(tcpACK | tcpPSH)
		if size == len(stream) {
			flags |= tcpFIN
		}
		first = rp.writeTCP(room, st.seq, st.ack, flags, 0, size)
		st.seq += uint32(size)
		stream = stream[size:]
	}
	if len(stream) == 0 {
		return first
	}
	frame := make([]byte, max(hl+min(mss, len(stream)), ethMinFrameLen))
	for len(stream) > 0 {
		size := min(mss, len(stream))
		copy(frame[hl:], stream[:size])
		flags := uint8(tcpACK | tcpPSH)
		if size == len(stream) {
			flags |= tcpFIN
		}
		fl := rp.writeTCP(frame, st.seq, st.ack, flags, 0, size)
		r.cfg.Deliver(port, frame[:fl])
		st.seq += uint32(size)
		stream = stream[size:]
	}
	return first
}
