// Package vteptest provides an in-memory UDP network for tests of code that
// uses a vtep.Conn, needing no root and no sockets.
//
// A Network is a hub of Conns, each bound to an address. WriteBatch copies
// every datagram to the queue of the Conn bound at its destination, which
// sees the sender's bound address as the source. Like UDP, delivery never
// blocks: a datagram for an address nobody listens on, or for a full queue,
// is dropped and counted. Tests can inject datagrams from any address with
// Send, and capture what is sent to an address with Tap.
//
// Offloads are modelled where a switch sees them: a message with Segment > 0
// is cut into its datagrams on the way, as the kernel does for a receiver
// without GRO. A Conn can also coalesce datagrams from one sender into one
// message with Segment set, as the kernel does with UDP_GRO, but only this
// package's tests turn that on (setGRO); otherwise a Conn reports GRO off.
// Message.Flow is ignored: a Conn has one address.
package vteptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/vtep"
)

const (
	// batchSize is the largest batch a Conn's ReadBatch returns, as in
	// vtep.DefaultConnConfig.
	batchSize = 64

	// queueLen is how many datagrams wait for a Conn (or a Tap) before
	// more are dropped: four batches, like a small socket buffer.
	queueLen = 4 * batchSize

	// firstPort is where ports for Listen with port 0 start (the IANA
	// dynamic range).
	firstPort = 49152
)

// Datagram is one UDP datagram in flight: Data went from From (the
// sender's bound address) to To. Data is the network's own copy.
type Datagram struct {
	From, To netip.AddrPort
	Data     []byte
}

// dropCounts counts datagrams the network dropped, by reason.
type dropCounts struct {
	NoListener uint64 // no Conn or Tap at the destination, or an invalid one
	QueueFull  uint64 // the receiver's queue was full
}

// Network is an in-memory UDP network. Its methods are safe for concurrent
// use.
type Network struct {
	mu       sync.Mutex
	conns    map[netip.AddrPort]*Conn         // guarded by mu
	taps     map[netip.AddrPort]chan Datagram // guarded by mu
	nextPort uint16                           // guarded by mu

	noListener, queueFull atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		conns:    make(map[netip.AddrPort]*Conn),
		taps:     make(map[netip.AddrPort]chan Datagram),
		nextPort: firstPort,
	}
}

// Listen binds a Conn to addr. Port 0 picks an unused port. It panics if
// addr is invalid or already has a Conn or a Tap: that is a bug in the test.
func (n *Network) Listen(addr netip.AddrPort) *Conn {
	if !addr.Addr().IsValid() {
		panic(fmt.Sprintf("vteptest: Listen on invalid address %v", addr))
	}
	addr = unmap(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	for addr.Port() == 0 {
		if a := netip.AddrPortFrom(addr.Addr(), n.nextPort); !n.boundLocked(a) {
			addr = a
		}
		n.nextPort++
		if n.nextPort == 0 {
			n.nextPort = firstPort
		}
	}
	if n.boundLocked(addr) {
		panic(fmt.Sprintf("vteptest: %v is already bound", addr))
	}
	c := &Conn{
		net:   n,
		addr:  addr,
		queue: make(chan Datagram, queueLen),
		done:  make(chan struct{}),
	}
	n.conns[addr] = c
	return c
}

// Tap returns a channel that receives every datagram sent to addr, for a
// test to check what a switch sends to a VTEP that is not a Conn. Up to
// queueLen datagrams wait in the channel; more are dropped as QueueFull.
// Calling Tap again for the same address returns the same channel. It
// panics if a Conn is bound to addr.
func (n *Network) Tap(addr netip.AddrPort) <-chan Datagram {
	addr = unmap(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.taps[addr]; ok {
		return ch
	}
	if n.conns[addr] != nil {
		panic(fmt.Sprintf("vteptest: Tap on %v, where a Conn is bound", addr))
	}
	ch := make(chan Datagram, queueLen)
	n.taps[addr] = ch
	return ch
}

// Send delivers a copy of b from any address, bound or not, to the Conn or
// Tap at to. It reports whether the datagram was queued; if not it was
// dropped and counted, as WriteBatch does.
func (n *Network) Send(from, to netip.AddrPort, b []byte) bool {
	return n.deliver(unmap(from), unmap(to), b)
}

// drops returns how many datagrams the network has dropped so far.
func (n *Network) drops() dropCounts {
	return dropCounts{NoListener: n.noListener.Load(), QueueFull: n.queueFull.Load()}
}

func (n *Network) boundLocked(addr netip.AddrPort) bool {
	_, tapped := n.taps[addr]
	return n.conns[addr] != nil || tapped
}

func (n *Network) deliver(from, to netip.AddrPort, b []byte) bool {
	n.mu.Lock()
	c, tap := n.conns[to], n.taps[to]
	n.mu.Unlock()
	var q chan Datagram
	switch {
	case c != nil:
		q = c.queue
	case tap != nil:
		q = tap
	default:
		n.noListener.Add(1)
		return false
	}
	select {
	case q <- Datagram{From: from, To: to, Data: append([]byte(nil), b...)}:
		return true
	default:
		n.queueFull.Add(1)
		return false
	}
}

// unmap turns an IPv4-mapped IPv6 address into IPv4, as the kernel reports
// sources.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Conn is a vtep.Conn on a Network.
type Conn struct {
	net   *Network
	addr  netip.AddrPort
	queue chan Datagram // datagrams for this Conn; never closed
	gro   atomic.Bool   // coalesce on read (setGRO)

	// Read side, used only by the single ReadBatch caller: a datagram
	// taken from queue that did not fit the message being coalesced.
	pending    Datagram
	hasPending bool

	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

var _ vtep.Conn = (*Conn)(nil)

var (
	errClosed  = fmt.Errorf("vteptest: %w", net.ErrClosed) // what a closed Conn returns
	errInvalid = errors.New("invalid message")
)

// ReadBatch implements vtep.Conn: it blocks until a datagram is queued or
// the Conn is closed, then also takes whatever else is queued, up to
// len(msgs) and batchSize. A datagram longer than its buffer is truncated.
// With setGRO, consecutive datagrams from one sender are coalesced as
// vtep.Message.Segment describes: all of one size but a shorter last, at
// most vtep.MaxSegments of them and what fits in Buf. After Close it
// returns an error that errors.Is net.ErrClosed.
func (c *Conn) ReadBatch(msgs []vtep.Message) (int, error) {
	msgs = msgs[:min(len(msgs), batchSize)]
	if len(msgs) == 0 {
		return 0, nil
	}
	select {
	case <-c.done:
		return 0, errClosed
	default:
	}
	d, ok := c.next(true)
	if !ok {
		return 0, errClosed
	}
	gro := c.gro.Load()
	n := 0
	for {
		m := &msgs[n]
		m.N = copy(m.Buf, d.Data)
		m.Addr, m.Segment = d.From, 0
		if gro {
			c.coalesce(m, len(d.Data))
		}
		n++
		if n == len(msgs) {
			return n, nil
		}
		if d, ok = c.next(false); !ok {
			return n, nil
		}
	}
}

// next returns the pending datagram, or one from the queue, waiting for it
// if wait. It reports false if there is none, or the Conn closed while it
// waited.
func (c *Conn) next(wait bool) (Datagram, bool) {
	if c.hasPending {
		c.hasPending = false
		return c.pending, true
	}
	if !wait {
		select {
		case d := <-c.queue:
			return d, true
		default:
			return Datagram{}, false
		}
	}
	select {
	case d := <-c.queue:
		return d, true
	case <-c.done:
		return Datagram{}, false
	}
}

// coalesce appends to m, holding a first datagram of size bytes, the queued
// datagrams that UDP GRO would merge with it; the first that does not fit
// is kept pending for the next message.
func (c *Conn) coalesce(m *vtep.Message, size int) {
	if size == 0 || m.N < size { // empty, or truncated
		return
	}
	segs, last := 1, size
	for last == size && segs < vtep.MaxSegments {
		d, ok := c.next(false)
		if !ok {
			break
		}
		if d.From != m.Addr || len(d.Data) == 0 || len(d.Data) > size || m.N+len(d.Data) > len(m.Buf) {
			c.pending, c.hasPending = d, true
			break
		}
		m.N += copy(m.Buf[m.N:], d.Data)
		segs, last = segs+1, len(d.Data)
	}
	if segs > 1 {
		m.Segment = size
	}
}

// WriteBatch implements vtep.Conn: it delivers a copy of each
// msgs[i].Buf[:msgs[i].N] to msgs[i].Addr, cut into datagrams of Segment
// bytes if Segment > 0, and never blocks. As with UDP, a datagram is sent
// even if nobody receives it (it is dropped and counted in Network.drops).
// A message with an invalid address, port 0, N outside Buf, a negative
// Segment, or more than vtep.MaxSegments segments or
// vtep.MaxSegmentedPayload bytes is not sent. n counts messages, and each
// message's Sent says whether it went. err is nil
// if n > 0; if nothing was sent, n is 0 and err says why (net.ErrClosed
// after Close). Safe for concurrent use.
func (c *Conn) WriteBatch(msgs []vtep.Message) (int, error) {
	select {
	case <-c.done:
		if len(msgs) == 0 {
			return 0, nil
		}
		return 0, errClosed
	default:
	}
	sent := 0
	var first error
	for i := range msgs {
		m := &msgs[i]
		m.Sent = false
		to := unmap(m.Addr)
		if !to.Addr().IsValid() || to.Port() == 0 || m.N < 0 || m.N > len(m.Buf) || m.Segment < 0 ||
			m.Segment > 0 && m.N > m.Segment && (m.N > vtep.MaxSegmentedPayload || (m.N+m.Segment-1)/m.Segment > vtep.MaxSegments) {
			if first == nil {
				first = fmt.Errorf("vteptest: write %d bytes of %d in segments of %d to %v: %w", m.N, len(m.Buf), m.Segment, m.Addr, errInvalid)
			}
			continue
		}
		p := m.Buf[:m.N]
		for m.Segment > 0 && len(p) > m.Segment {
			c.net.deliver(c.addr, to, p[:m.Segment])
			p = p[m.Segment:]
		}
		c.net.deliver(c.addr, to, p)
		m.Sent = true
		sent++
	}
	if sent == 0 && first != nil {
		return 0, first
	}
	return sent, nil
}

// LocalAddr implements vtep.Conn.
func (c *Conn) LocalAddr() netip.AddrPort { return c.addr }

// BatchSize implements vtep.Conn.
func (c *Conn) BatchSize() int { return batchSize }

// Readers implements vtep.Conn: a Conn has one receive queue, itself.
func (c *Conn) Readers() []vtep.BatchReader { return []vtep.BatchReader{c} }

// Offloads implements vtep.Conn. GSO is on: a Conn takes segmented
// messages whole, as a conn with GSO does (the receiver sees datagrams
// either way). GRO is as setGRO left it. There is no source-port pool.
func (c *Conn) Offloads() vtep.ConnOffloads {
	return vtep.ConnOffloads{GSO: true, GRO: c.gro.Load()}
}

// setGRO turns coalescing of received datagrams on or off (see ReadBatch).
// It takes effect at the next ReadBatch. Only this package's tests use it;
// export it again when a test of code that splits coalesced messages needs
// it.
func (c *Conn) setGRO(on bool) { c.gro.Store(on) }

// Close implements vtep.Conn: it unbinds the address (later datagrams to it
// are dropped as NoListener) and unblocks a pending ReadBatch.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.net.mu.Lock()
		if c.net.conns[c.addr] == c {
			delete(c.net.conns, c.addr)
		}
		c.net.mu.Unlock()
		close(c.done)
	})
	return nil
}
