package dns

// This file holds the Responder: its Config and lifecycle, and Handle, the
// entry point from the data path, with the UDP path and the decision every
// query goes through (answer locally, or forward).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Config configures a Responder.
type Config struct {
	// Table holds the names the responder answers. Required.
	Table *Table
	// Upstreams are the resolvers names outside the networks are
	// forwarded to, tried in order. Empty: such names are answered
	// REFUSED.
	Upstreams []netip.AddrPort
	// Timeout bounds a forwarded query, in total across the upstreams it
	// tries; after it the client gets SERVFAIL. Zero means the default.
	Timeout time.Duration
	// TTL is the TTL of the records the responder answers itself.
	TTL uint32
	// RatePerPort is how many queries per second a port may send on
	// average, and Burst how many at once (the token bucket's size; zero
	// means RatePerPort). Beyond them, queries are dropped and counted.
	// TCP SYNs and TCP query segments draw from the same bucket. Zero
	// RatePerPort means no limit.
	RatePerPort float64
	Burst       int
	// MaxInFlight bounds the forwarding jobs at once (a job is a UDP
	// query, or the queries of one TCP segment, at most 4); beyond it
	// queries to forward are dropped and counted (the client retries).
	// Zero means the default.
	MaxInFlight int
	// MaxUDPSize is the largest DNS message the responder sends over UDP,
	// whatever the client's EDNS0 payload size; larger answers go with TC
	// set so the client retries over TCP. Zero means the default; less
	// than 512 means 512.
	MaxUDPSize int
	// Deliver writes frame (a complete Ethernet frame) to port port of the
	// switch. It is called from the responder's goroutines with forwarded
	// answers, and from within Handle with the second and later TCP
	// segments of an answer larger than one segment (which may thus reach
	// the client before the first, written in place: TCP reorders them).
	// It may be called concurrently, must not block for long and must
	// not retain frame after it returns. Required.
	Deliver func(port int, frame []byte)
	// Logger receives the responder's few log lines; nothing per query
	// is logged. Nil discards them.
	Logger *slog.Logger
	// Now is the rate limiter's clock. Nil means time.Now; tests inject
	// their own.
	Now func() time.Time
}

// DefaultConfig returns a Config with the defaults; the caller sets Table,
// Upstreams and Deliver.
func DefaultConfig() Config {
	return Config{
		Timeout:     2 * time.Second, // glibc's resolver retries after 5 s; answer SERVFAIL well before
		TTL:         0,               // names move with containers: let no cache hold a stale one
		RatePerPort: 1000,            // far above what a container resolves, well below a flood
		Burst:       200,             // a start-up burst of lookups (A and AAAA for a few dozen names)
		MaxInFlight: 256,             // each is a goroutine and a socket; a healthy upstream answers in ms
		MaxUDPSize:  1232,            // DNS flag day 2020: fits an IPv6 minimum MTU of 1280 unfragmented
	}
}

// Verdict is what Handle did with a frame.
type Verdict uint8

// Verdicts.
const (
	// NotDNS: the frame is not for the resolver; the switch forwards it as
	// usual.
	NotDNS Verdict = iota
	// Answered: the reply frame sits in the buffer for the switch to write
	// back to the port.
	Answered
	// Forwarded: the query went upstream; its answer will come through
	// Deliver. The switch does nothing more with the frame. (A query
	// over TCP that goes upstream is Answered instead, with a bare ACK of
	// its segment, so the client does not retransmit it meanwhile.)
	Forwarded
	// Dropped: the frame was for the resolver and needs nothing sent back
	// (a TCP ACK or RST), or was dropped and counted. The switch does
	// nothing more with it.
	Dropped
)

// String returns the verdict's name: not-dns, answered, forwarded or
// dropped.
func (v Verdict) String() string {
	switch v {
	case NotDNS:
		return "not-dns"
	case Answered:
		return "answered"
	case Forwarded:
		return "forwarded"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Responder answers the DNS queries ports send to their network's DNS
// address. Handle and Stats are safe for concurrent use.
type Responder struct {
	cfg  Config
	log  *slog.Logger
	lim  *limiter
	seed maphash.Seed // keys the TCP initial sequence numbers
	c    counters

	// Forwarding: sem bounds the queries in flight; mu guards closed and
	// orders wg.Add before Close's wg.Wait.
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	// lastUpstreamLog is when an upstream failure was last logged, in
	// Unix nanoseconds.
	lastUpstreamLog atomic.Int64
}

// New returns a Responder configured by cfg, whose zero fields take the
// defaults where documented.
func New(cfg Config) (*Responder, error) {
	def := DefaultConfig()
	if cfg.Table == nil {
		return nil, errors.New("dns: Config.Table is nil")
	}
	if cfg.Deliver == nil {
		return nil, errors.New("dns: Config.Deliver is nil")
	}
	for _, u := range cfg.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return nil, fmt.Errorf("dns: upstream %v: not an address and port", u)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = def.MaxInFlight
	}
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = def.MaxUDPSize
	}
	cfg.MaxUDPSize = min(max(cfg.MaxUDPSize, minUDPSize), maxTCPMessage)
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.RatePerPort))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{
		cfg:  cfg,
		log:  log,
		lim:  newLimiter(cfg.RatePerPort, cfg.Burst, cfg.Now),
		seed: maphash.MakeSeed(),
		sem:  make(chan struct{}, cfg.MaxInFlight),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	log.Debug("dns responder started", "upstreams", cfg.Upstreams, "timeout", cfg.Timeout)
	return r, nil
}

// Close stops every goroutine of the responder, abandoning the queries
// upstream (their sockets are closed and nothing more is delivered). It is
// idempotent.
func (r *Responder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// ForgetPort drops the rate limiter state of a removed port.
func (r *Responder) ForgetPort(port int) {
	r.lim.forget(port)
}

// Handle looks at the Ethernet frame buf[off:off+size] that port port of
// VNI vni sent. If it is a DNS query (UDP or TCP to port 53) to vni's DNS
// address, it handles it: Answered means the reply frame now sits in
// buf[off:off+n] (written within len(buf)) for the switch to write back to
// the same port; Forwarded and Dropped mean the switch does nothing more
// with the frame. NotDNS means the frame is not for the resolver and the
// switch forwards it as usual; that check looks at the EtherType, the
// protocol, the port and the destination address, in that order, first.
//
// Handle is safe for concurrent use. Answering a local name over UDP does
// not allocate.
func (r *Responder) Handle(port int, vni uint32, buf []byte, off, size int) (Verdict, int) {
	if off < 0 || size < 0 || off > len(buf) || size > len(buf)-off {
		return NotDNS, 0
	}
	var p packet
	c, n := classify(buf[off:off+size], r.cfg.Table, vni, &p)
	switch c {
	case notOurs:
		return NotDNS, 0
	case malformed:
		r.c.dropMalformed.Add(1)
		return Dropped, 0
	case fragment:
		r.c.dropFragment.Add(1)
		return Dropped, 0
	}
	if !unicastSource(&p, n) {
		r.c.dropNotUnicast.Add(1)
		return Dropped, 0
	}
	room := buf[off:]
	if p.tcp {
		return r.handleTCP(port, n, room, &p)
	}
	if !r.lim.allow(port) {
		r.c.dropRate.Add(1)
		return Dropped, 0
	}
	rp := replyTo(&p)
	var q query
	var a answer
	switch r.decide(n, room[p.pay:p.end], &q, &a) {
	case actDrop:
		return Dropped, 0
	case actForward:
		return r.forward(&job{port: port, rp: rp, parts: []part{{q: q, msg: bytes.Clone(room[p.pay:p.end])}}}), 0
	}
	hl := rp.hdrLen()
	limit := min(q.udpSize, r.cfg.MaxUDPSize, len(room)-hl)
	if limit < dnsHeaderLen {
		r.c.dropNoRoom.Add(1)
		return Dropped, 0
	}
	msg, tc := buildAnswer(room[hl:hl:hl+limit], &q, &a, r.cfg.TTL, r.cfg.MaxUDPSize)
	if msg == nil {
		r.c.dropNoRoom.Add(1)
		return Dropped, 0
	}
	if tc {
		r.c.truncated.Add(1)
	}
	return Answered, rp.writeUDP(room, len(msg))
}

// action is what decide says to do with a query.
type action uint8

const (
	actAnswer  action = iota // answer with the answer decide filled in
	actForward               // ask the upstreams
	actDrop                  // drop (counted)
)

// decide parses the DNS message msg into q and says what to do with it,
// filling in a when the responder answers itself, and counts the outcome
// (but for forwarding, counted when it happens). It does not allocate.
func (r *Responder) decide(n *network, msg []byte, q *query, a *answer) action {
	switch parseQuery(msg, q) {
	case parsedDrop:
		r.c.dropMalformed.Add(1)
		return actDrop
	case parsedFormErr:
		r.c.formerr.Add(1)
		q.opt = false
		*a = answer{rcode: dnsmessage.RCodeFormatError, noQuestion: true}
		return actAnswer
	case parsedNotImp:
		r.c.notimp.Add(1)
		*a = answer{rcode: dnsmessage.RCodeNotImplemented, noQuestion: true}
		return actAnswer
	}
	if q.badVers {
		r.c.formerr.Add(1)
		*a = answer{rcode: rcodeBadVers}
		return actAnswer
	}
	res := n.resolve(&q.q.Name)
	switch res.kind {
	case resAddrs:
		*a = answer{auth: true, set: res.t.set, shuffle: res.t.shuffle}
	case resPTR:
		*a = answer{auth: true, ptr: res.ptr}
	case resApex:
		*a = answer{auth: true}
	case resNXDomain:
		r.c.nxdomain.Add(1)
		*a = answer{auth: true, rcode: dnsmessage.RCodeNameError}
		return actAnswer
	default:
		if len(r.cfg.Upstreams) == 0 {
			r.c.refused.Add(1)
			*a = answer{rcode: dnsmessage.RCodeRefused}
			return actAnswer
		}
		return actForward
	}
	if n4, n6, ptr := a.records(q); n4+n6 > 0 || ptr {
		r.c.answered.Add(1)
	} else {
		r.c.nodata.Add(1)
	}
	return actAnswer
}
