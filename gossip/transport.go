// The gossip port's streams: memberlist's TCP listener, shared with the
// join service.
//
// Design notes: a joiner has no gossip keys yet, so it asks a member for
// the cluster secret (gossip/join) before it starts memberlist, and it
// asks on the gossip port, the one address it knows and the one port a
// firewall already lets through. memberlist owns that port's listener, so
// we build its NetTransport ourselves, as memberlist.Create would (same
// bind address and port, retries when the port is 0, logger), and wrap it
// in muxTransport, which memberlist then uses as its Transport. Packets,
// dials and the advertise address pass straight through to the
// NetTransport; only accepted streams are sorted. For each, in a goroutine
// of its own, muxTransport reads the first byte (with a read deadline of
// memberlist's TCPTimeout, the bound memberlist itself puts on a stream,
// then cleared): join.Magic, which memberlist never sends first, goes to
// Config.JoinServer; any other byte goes to memberlist on StreamCh, with
// that byte still unread. Reading it in the accepting goroutine instead
// would let one silent client stall every stream behind it.
//
// Shutdown (memberlist calls it first in its own Shutdown) stops the
// NetTransport's listeners while our accept loop still drains its stream
// channel (its listener goroutine blocks sending on it), then closes the
// streams still being sorted, served by JoinServer or waiting for
// memberlist, and waits for every goroutine it started. Streams already
// handed to memberlist are memberlist's.

package gossip

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/gossip/join"
)

// muxTransport is memberlist's NetTransport with its incoming streams
// sorted by first byte between memberlist and the join service.
type muxTransport struct {
	*memberlist.NetTransport
	join        func(net.Conn) // nil: join streams are closed
	peekTimeout time.Duration
	streams     chan net.Conn // to memberlist, unbuffered like NetTransport's
	done        chan struct{} // closed by Shutdown
	wg          sync.WaitGroup
	shutdown    sync.Once

	// mu guards conns, the streams accepted and not yet handed to
	// memberlist, which Shutdown closes, and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

var _ memberlist.NodeAwareTransport = (*muxTransport)(nil)

// newTransport builds the UDP/TCP transport for mc as memberlist.Create
// would for a Config without a Transport, wrapped in a muxTransport
// serving join streams with joinServer. If mc.BindPort is 0 it sets
// mc.BindPort, and mc.AdvertisePort unless one is given, to the port
// picked, as Create does.
func newTransport(mc *memberlist.Config, joinServer func(net.Conn)) (*muxTransport, error) {
	logger := mc.Logger
	if logger == nil {
		out := mc.LogOutput
		if out == nil {
			out = os.Stderr
		}
		logger = log.New(out, "", log.LstdFlags)
	}
	nc := &memberlist.NetTransportConfig{
		BindAddrs:    []string{mc.BindAddr},
		BindPort:     mc.BindPort,
		Logger:       logger,
		MetricLabels: mc.MetricLabels,
	}
	// Binding UDP and TCP to the same kernel-picked port races with other
	// processes; memberlist retries 10 times, and so do we.
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			break
		}
		logger.Printf("[DEBUG] memberlist: Got bind error: %v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("could not set up network transport: %w", err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if mc.AdvertisePort == 0 { // not an advertised port of its own
			mc.AdvertisePort = mc.BindPort
		}
	}
	peek := mc.TCPTimeout
	if peek <= 0 {
		peek = memberlist.DefaultLANConfig().TCPTimeout
	}
	return newMuxTransport(nt, joinServer, peek), nil
}

// newMuxTransport wraps nt and starts sorting its streams.
func newMuxTransport(nt *memberlist.NetTransport, joinServer func(net.Conn), peekTimeout time.Duration) *muxTransport {
	t := &muxTransport{
		NetTransport: nt,
		join:         joinServer,
		peekTimeout:  peekTimeout,
		streams:      make(chan net.Conn),
		done:         make(chan struct{}),
		conns:        make(map[net.Conn]struct{}),
	}
	t.wg.Add(1)
	go t.accept()
	return t
}

// StreamCh returns the streams for memberlist: those whose first byte is
// not join.Magic, with that byte unread.
func (t *muxTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown stops the listeners, closes the streams not yet handed to
// memberlist and waits for the goroutines sorting and serving them. It is
// idempotent.
func (t *muxTransport) Shutdown() error {
	var err error
	t.shutdown.Do(func() {
		// First: accept keeps draining the listener's channel meanwhile.
		err = t.NetTransport.Shutdown()
		t.mu.Lock()
		t.closed = true
		conns := t.conns
		t.conns = nil
		t.mu.Unlock()
		close(t.done)
		for c := range conns {
			c.Close()
		}
		t.wg.Wait()
	})
	return err
}

// accept takes the NetTransport's accepted streams and sorts each in a
// goroutine of its own.
func (t *muxTransport) accept() {
	defer t.wg.Done()
	in := t.NetTransport.StreamCh()
	for {
		select {
		case c := <-in:
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				c.Close()
				continue
			}
			t.conns[c] = struct{}{}
			t.wg.Add(1) // while accept's own count holds the group open
			t.mu.Unlock()
			go t.route(c)
		case <-t.done:
			return
		}
	}
}

// route reads c's first byte and hands c on by it.
func (t *muxTransport) route(c net.Conn) {
	defer t.wg.Done()
	var first [1]byte
	c.SetReadDeadline(time.Now().Add(t.peekTimeout))
	_, err := io.ReadFull(c, first[:])
	c.SetReadDeadline(time.Time{})
	if err != nil {
		t.release(c, true)
		return
	}
	pc := &peekedConn{Conn: c, first: first[0], unread: true}
	if first[0] == join.Magic {
		if t.join != nil {
			t.join(pc)
		}
		t.release(c, true)
		return
	}
	select {
	case t.streams <- pc:
		t.release(c, false) // memberlist's now
	case <-t.done:
		t.release(c, true)
	}
}

// release forgets c, closing it if close is set.
func (t *muxTransport) release(c net.Conn, close bool) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	if close {
		c.Close()
	}
}

// peekedConn is a stream whose first byte was read, and reads it again.
// Like a net.Conn, it takes one Read at a time.
type peekedConn struct {
	net.Conn
	first  byte
	unread bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.unread && len(p) > 0 {
		p[0] = c.first
		c.unread = false
		return 1, nil
	}
	return c.Conn.Read(p)
}
