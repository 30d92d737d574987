package dns

// This file holds forwarding: a query for a name outside the networks goes,
// off the data path, to the upstream resolvers, and their answer (or
// SERVFAIL) comes back to the client through Deliver.
//
// Design notes: each forwarded query runs in its own goroutine with its own
// connected UDP socket, so the kernel picks a fresh random source port and
// drops datagrams from anyone but the upstream; the query goes out with a
// fresh random ID, and an answer counts only if its ID, QR bit and question
// match (anything else is ignored, and the wait goes on). The upstreams are
// tried in order, each given an equal share of what remains of
// Config.Timeout, so the client hears back within Timeout whatever the
// upstreams do. A semaphore bounds the goroutines; Close cancels them all.

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// errNoAnswer is what an exchange returns when no upstream answered.
var errNoAnswer = errors.New("dns: no upstream answered")

// job is what one frame asks that needs the upstreams: over UDP one
// query; over TCP the queries of one segment (glibc pipelines its A and
// AAAA queries), some of which may have been answered locally already.
type job struct {
	port  int
	rp    reply
	tcp   tcpState // zero for a UDP client
	parts []part
}

// part is one query of a job and its answer.
type part struct {
	q   query
	msg []byte // the query as the client sent it; nil when answered locally
	ans []byte // the answer, its ID the client's; nil until there is one
}

// newBufPool returns a pool of *[]byte of length size.
func newBufPool(size int) *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
}

// forward starts j, whose parts with a msg go upstream, and reports the
// verdict: Forwarded, or Dropped (and counted) when too many jobs are in
// flight or the responder is closed.
func (r *Responder) forward(j *job) Verdict {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		r.c.dropClosed.Add(1)
		return Dropped
	}
	select {
	case r.sem <- struct{}{}:
	default:
		r.mu.RUnlock()
		r.c.dropInFlight.Add(1)
		return Dropped
	}
	r.wg.Add(1)
	r.mu.RUnlock()
	for i := range j.parts {
		if j.parts[i].msg != nil {
			r.c.forwarded.Add(1)
		}
	}
	go r.run(j)
	return Forwarded
}

// run forwards the parts of j that need it, at once, and delivers the
// answers.
func (r *Responder) run(j *job) {
	defer func() {
		<-r.sem
		r.wg.Done()
	}()
	if len(j.parts) == 1 {
		r.resolveUpstream(&j.parts[0])
	} else {
		var wg sync.WaitGroup
		for i := range j.parts {
			if pt := &j.parts[i]; pt.msg != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.resolveUpstream(pt)
				}()
			}
		}
		wg.Wait()
	}
	if r.ctx.Err() != nil {
		return // closed: deliver nothing
	}
	if j.tcp.mss != 0 {
		n := 0
		for _, pt := range j.parts {
			n += 2 + len(pt.ans)
		}
		stream := make([]byte, 0, n)
		for _, pt := range j.parts {
			stream = binary.BigEndian.AppendUint16(stream, uint16(len(pt.ans)))
			stream = append(stream, pt.ans...)
		}
		r.sendStream(j.port, nil, &j.rp, j.tcp, stream)
		return
	}
	r.replyUDP(j, &j.parts[0])
}

// resolveUpstream asks the upstreams pt's query and sets pt.ans to their
// answer, or to SERVFAIL.
func (r *Responder) resolveUpstream(pt *part) {
	ans, err := r.exchange(pt)
	if r.ctx.Err() != nil {
		return
	}
	if err != nil {
		r.c.servfail.Add(1)
		r.logUpstreamFailure(err)
		b := make([]byte, 0, minUDPSize) // header, question, OPT: at most 282 bytes
		pt.ans, _ = buildAnswer(b, &pt.q, &answer{rcode: dnsmessage.RCodeServerFailure}, r.cfg.TTL, r.cfg.MaxUDPSize)
		return
	}
	r.c.upstreamAnswered.Add(1)
	binary.BigEndian.PutUint16(ans[0:2], pt.q.hdr.ID)
	pt.ans = ans
}

// upstreamLogEvery is how often at most a failing upstream is logged: the
// SERVFAIL counter has every failure.
const upstreamLogEvery = 30 * time.Second

// logUpstreamFailure logs err, at most once per upstreamLogEvery.
func (r *Responder) logUpstreamFailure(err error) {
	now := time.Now().UnixNano()
	last := r.lastUpstreamLog.Load()
	if now-last < int64(upstreamLogEvery) || !r.lastUpstreamLog.CompareAndSwap(last, now) {
		return
	}
	r.log.Warn("dns: upstreams failed, answering SERVFAIL", "upstreams", r.cfg.Upstreams, "err", err,
		"servfail_total", r.c.servfail.Load())
}

// replyUDP delivers pt's answer to j's client over UDP; one larger than
// the client takes goes truncated.
func (r *Responder) replyUDP(j *job, pt *part) {
	if len(pt.ans) < dnsHeaderLen {
		return
	}
	hl := j.rp.hdrLen()
	limit := min(pt.q.udpSize, r.cfg.MaxUDPSize)
	frame := make([]byte, max(hl+limit, ethMinFrameLen))
	var msg []byte
	if len(pt.ans) <= limit {
		msg = frame[hl : hl+copy(frame[hl:], pt.ans)]
	} else {
		// Too big: header and question with TC set, so the client asks
		// again over TCP.
		var p dnsmessage.Parser
		h, err := p.Start(pt.ans)
		if err != nil {
			return
		}
		msg, _ = buildAnswer(frame[hl:hl:hl+limit], &pt.q, &answer{rcode: h.RCode, auth: h.Authoritative, tc: true}, r.cfg.TTL, r.cfg.MaxUDPSize)
		if msg == nil {
			return
		}
		r.c.truncated.Add(1)
	}
	n := j.rp.writeUDP(frame, len(msg))
	r.cfg.Deliver(j.port, frame[:n])
}

// exchange asks the upstreams pt's query in turn within Config.Timeout
// and returns the first valid answer. A UDP answer with TC set is asked
// again over TCP of the same upstream; if that fails, the truncated answer
// stands (the client then retries over TCP itself). An answer SERVFAIL or
// REFUSED gives way to the next upstream's, and is returned only if no
// later upstream answers at all.
func (r *Responder) exchange(pt *part) ([]byte, error) {
	deadline := time.Now().Add(r.cfg.Timeout)
	ctx, cancel := context.WithDeadline(r.ctx, deadline)
	defer cancel()
	out := slices.Clone(pt.msg)
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(out[0:2], id)
	ups := r.cfg.Upstreams
	err := errNoAnswer
	var fallback []byte
	for i, up := range ups {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		try := time.Now().Add(left / time.Duration(len(ups)-i))
		var ans []byte
		var h dnsmessage.Header
		ans, h, err = exchangeUDP(ctx, up, out, id, &pt.q, try)
		if err != nil {
			continue
		}
		if h.Truncated {
			if full, fh, err := exchangeTCP(ctx, up, out, id, &pt.q, try); err == nil {
				ans, h = full, fh
			}
		}
		if h.RCode == dnsmessage.RCodeServerFailure || h.RCode == dnsmessage.RCodeRefused {
			fallback = ans
			continue
		}
		return ans, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, err
}

// exchangeUDP sends out to up over UDP and waits until deadline for a
// valid answer, which it returns with its header.
func exchangeUDP(ctx context.Context, up netip.AddrPort, out []byte, id uint16, q *query, deadline time.Time) ([]byte, dnsmessage.Header, error) {
	var h dnsmessage.Header
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		return nil, h, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, h, err
	}
	if _, err := c.Write(out); err != nil {
		return nil, h, err
	}
	buf := make([]byte, maxTCPMessage)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, h, err // timeout, or ICMP unreachable (a dead upstream)
		}
		if h, ok := validAnswer(buf[:n], id, q); ok {
			return buf[:n], h, nil
		}
	}
}

// exchangeTCP sends out to up over TCP and reads one answer until
// deadline, which it returns with its header.
func exchangeTCP(ctx context.Context, up netip.AddrPort, out []byte, id uint16, q *query, deadline time.Time) ([]byte, dnsmessage.Header, error) {
	var h dnsmessage.Header
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, h, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, h, err
	}
	b := make([]byte, 2+len(out))
	binary.BigEndian.PutUint16(b, uint16(len(out)))
	copy(b[2:], out)
	if _, err := c.Write(b); err != nil {
		return nil, h, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, h, err
	}
	ans := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, ans); err != nil {
		return nil, h, err
	}
	h, ok := validAnswer(ans, id, q)
	if !ok {
		return nil, h, errors.New("dns: upstream answer over TCP does not match the query")
	}
	return ans, h, nil
}

// validAnswer reports whether ans answers the query q sent with ID id: its
// ID, QR bit, opcode and single question (the name compared
// case-insensitively) match.
func validAnswer(ans []byte, id uint16, q *query) (dnsmessage.Header, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(ans)
	if err != nil || h.ID != id || !h.Response || h.OpCode != q.hdr.OpCode || binary.BigEndian.Uint16(ans[4:6]) != 1 {
		return h, false
	}
	aq, err := p.Question()
	if err != nil || aq.Type != q.q.Type || aq.Class != q.q.Class || aq.Name.Length != q.q.Name.Length {
		return h, false
	}
	for i := 0; i < int(aq.Name.Length); i++ {
		if lower(aq.Name.Data[i]) != lower(q.q.Name.Data[i]) {
			return h, false
		}
	}
	return h, true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
