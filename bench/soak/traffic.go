package main

// This file holds the traffic: a TCP and a UDP echo server in every
// long-lived container and, between containers on different nodes, two
// flows per pair. The TCP flow sends a chunk, reads it back, checks it byte
// for byte, and does that again every flowTick, reconnecting whenever
// anything fails. The UDP probe sends a small datagram every flowTick and
// counts the echoes that come back. Each flow records when its round trips
// succeed; the gaps between them are the soak's measure of how long a fault
// interrupted traffic: as an application sees it (TCP) and as the data
// path does (UDP, which neither retransmits nor backs off; probe.go).
//
// Design notes:
//   - Servers and clients run inside the soak process: sockets are created
//     in a container's namespace with Netns.Do and keep belonging to it, so
//     no helper process is needed and round trips are timed exactly.
//   - The echo server listens on the wildcard address, so it survives its
//     container's eth0 being removed and attached again.
//   - A round trip that takes longer than stallTimeout is abandoned and the
//     flow reconnects, as an application with a 2 s timeout would; without
//     it, TCP's retransmission back-off would stretch a gap well past the
//     moment the path is back. TCP gaps therefore include up to
//     stallTimeout of detection; the UDP probe's gaps do not, and are
//     within a flowTick or two of the data path's outage.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

const (
	// echoPort is where every long-lived container's echo server listens.
	echoPort = 7000
	// flowChunk is what a round trip sends and gets back: a few frames of
	// the 1450-byte overlay MTU.
	flowChunk = 8 << 10
	// flowTick paces a flow's round trips: 50 a second, 400 KB/s each way,
	// which keeps every path busy without loading two shared cores. It is
	// also the resolution of a measured gap.
	flowTick = 20 * time.Millisecond
	// stallTimeout abandons a round trip, and the connection, that has not
	// completed; see the design notes.
	stallTimeout = 2 * time.Second
	// dialTimeout bounds one connection attempt, retryPause is the pause
	// before the next.
	dialTimeout = time.Second
	retryPause  = 100 * time.Millisecond
	// echoIdle closes a server connection its client abandoned.
	echoIdle = 10 * time.Second
	// resumeTimeout bounds how long traffic may take to resume after a
	// fault has been repaired.
	resumeTimeout = 30 * time.Second
)

// traffic is the running servers and flows.
type traffic struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers closeSet
}

// flow is a client in from's namespace doing round trips to to's echo
// server, over TCP or, for a probe, UDP.
type flow struct {
	id       uint64
	name     string
	udp      bool
	from, to *container

	// mu guards the fields below.
	mu         sync.Mutex
	last       time.Time     // last successful round trip; zero before the first
	maxGap     time.Duration // longest interval between round trips over the run
	winGap     time.Duration // the same since openWindow
	rounds     uint64
	bytes      uint64
	dials      uint64 // connections made
	dialFails  uint64
	corrupt    uint64 // echoes that differed from what was sent
	lastErr    string
	lastErrAt  time.Time
	windowOpen bool
}

// progress records a successful round trip of n bytes at now.
func (f *flow) progress(now time.Time, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.last.IsZero() {
		gap := now.Sub(f.last)
		f.maxGap = max(f.maxGap, gap)
		if f.windowOpen {
			f.winGap = max(f.winGap, gap)
		}
	}
	f.last = now
	f.rounds++
	f.bytes += uint64(n)
}

func (f *flow) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr, f.lastErrAt = err.Error(), time.Now()
}

// openWindow starts measuring the gap around a fault: from the last round
// trip before now.
func (f *flow) openWindow() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windowOpen, f.winGap = true, 0
}

// windowGap closes the window and returns the longest interval without a
// round trip since it opened, counting an interval still open at now.
func (f *flow) windowGap(now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windowOpen = false
	return max(f.winGap, now.Sub(f.last))
}

// since reports whether a round trip completed after t.
func (f *flow) since(t time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last.After(t)
}

// startTraffic starts an echo server in every long-lived container and the
// flows: container j of node i sends to container j of node i+1+j%(N-1),
// so every flow crosses the underlay and every container is the source of
// one flow and the target of one.
func (s *soak) startTraffic(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s.traffic.cancel = cancel
	for _, c := range s.containers {
		if err := s.serveEcho(c); err != nil {
			s.rep.check("echo servers started", false, err.Error())
		}
		if err := s.serveUDPEcho(c); err != nil {
			s.rep.check("echo servers started", false, err.Error())
		}
	}
	n, per := s.opts.Nodes, s.opts.PerNode
	for _, udp := range []bool{false, true} {
		for j := range per {
			shift := 1 + j%(n-1)
			for i := range n {
				from, to := s.containers[i*per+j], s.containers[((i+shift)%n)*per+j]
				f := &flow{id: uint64(len(s.flows)), name: from.name + "->" + to.name, udp: udp, from: from, to: to}
				s.flows = append(s.flows, f)
				s.traffic.wg.Add(1)
				go func() {
					defer s.traffic.wg.Done()
					f.run(ctx, &s.traffic.closers)
				}()
			}
		}
	}
}

// stopTraffic stops every flow and server and waits for their goroutines.
func (s *soak) stopTraffic() {
	if s.traffic.cancel != nil {
		s.traffic.cancel()
	}
	s.traffic.closers.closeAll()
	s.traffic.wg.Wait()
}

// serveEcho listens on echoPort in c's namespace and echoes every
// connection.
func (s *soak) serveEcho(c *container) error {
	var ln net.Listener
	err := c.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", echoPort))
		return err
	})
	if err != nil {
		return fmt.Errorf("echo server in %s: %w", c.name, err)
	}
	if !s.traffic.closers.add(ln) {
		return nil
	}
	s.traffic.wg.Add(1)
	go func() {
		defer s.traffic.wg.Done()
		for {
			conn, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(retryPause) // a paced retry after a transient error (EMFILE)
				continue
			}
			if !s.traffic.closers.add(conn) {
				return
			}
			s.traffic.wg.Add(1)
			go func() {
				defer s.traffic.wg.Done()
				defer s.traffic.closers.remove(conn)
				echo(conn)
			}()
		}
	}()
	return nil
}

// echo writes back what it reads until the connection fails or is idle for
// echoIdle.
func echo(conn net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		_ = conn.SetDeadline(time.Now().Add(echoIdle))
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// run does round trips (TCP) or probes (UDP) until ctx is done, dialling
// again after any failure, to the target's current address.
func (f *flow) run(ctx context.Context, closers *closeSet) {
	size, session := flowChunk, f.pump
	dial := func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) { return dialIn(ctx, f.from.ns, ap) }
	if f.udp {
		size, session, dial = probeSize, f.probe, f.dialUDP
	}
	out, in := make([]byte, size), make([]byte, size)
	for ctx.Err() == nil {
		to := f.to.addr()
		conn, err := dial(ctx, netip.AddrPortFrom(to, echoPort))
		if err != nil {
			f.mu.Lock()
			f.dialFails++
			f.mu.Unlock()
			f.fail(err)
			pause(ctx, retryPause)
			continue
		}
		f.mu.Lock()
		f.dials++
		f.mu.Unlock()
		if !closers.add(conn) {
			return
		}
		err = session(ctx, conn, to, out, in)
		closers.remove(conn)
		if err != nil && ctx.Err() == nil {
			f.fail(err)
			pause(ctx, retryPause)
		}
	}
}

// pump does paced round trips on conn until one fails, the target's
// address changes or ctx is done.
func (f *flow) pump(ctx context.Context, conn net.Conn, to netip.Addr, out, in []byte) error {
	t := time.NewTicker(flowTick)
	defer t.Stop()
	for seq := uint64(0); ; seq++ {
		if f.to.addr() != to {
			return nil // re-attached with another address: dial that
		}
		fillChunk(out, f.id, seq)
		_ = conn.SetDeadline(time.Now().Add(stallTimeout))
		if _, err := conn.Write(out); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(conn, in); err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		if !bytes.Equal(in, out) {
			f.mu.Lock()
			f.corrupt++
			f.mu.Unlock()
			return errors.New("echo differs from what was sent")
		}
		f.progress(time.Now(), len(out))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fillChunk writes a chunk unique to (flow, seq): the two numbers, then
// bytes derived from them.
func fillChunk(b []byte, id, seq uint64) {
	binary.BigEndian.PutUint64(b[0:], id)
	binary.BigEndian.PutUint64(b[8:], seq)
	x := byte(id*131 + seq*31)
	for i := 16; i < len(b); i++ {
		b[i] = x + byte(i)
	}
}

// dialIn connects from inside ns.
func dialIn(ctx context.Context, ns *testbed.Netns, ap netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.DialContext(ctx, "tcp", ap.String())
		return err
	})
	return c, err
}

// roundTrip makes one connection from ns to ap and one echo round trip, for
// a container that is not a flow's end (a fresh one).
func roundTrip(ctx context.Context, ns *testbed.Netns, ap netip.AddrPort) error {
	c, err := dialIn(ctx, ns, ap)
	if err != nil {
		return err
	}
	defer c.Close()
	out, in := make([]byte, flowChunk), make([]byte, flowChunk)
	fillChunk(out, 1<<32, 0)
	_ = c.SetDeadline(time.Now().Add(stallTimeout))
	if _, err := c.Write(out); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, in); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// waitAllFlowing waits until every flow has completed a round trip after
// since, and returns an error naming those that did not within timeout.
func (s *soak) waitAllFlowing(ctx context.Context, since time.Time, timeout time.Duration) error {
	if testbed.Poll(ctx, timeout, func() bool {
		for _, f := range s.flows {
			if !f.since(since) {
				return false
			}
		}
		return true
	}) {
		return nil
	}
	var stuck []string
	for _, f := range s.flows {
		if !f.since(since) {
			f.mu.Lock()
			stuck = append(stuck, fmt.Sprintf("%s %s (last round trip %s, last error %q)", f.proto(), f.name, ago(f.last), f.lastErr))
			f.mu.Unlock()
		}
	}
	return fmt.Errorf("no round trip within %v on %v", timeout, stuck)
}

// openWindows starts gap measurement on every flow.
func (s *soak) openWindows() {
	for _, f := range s.flows {
		f.openWindow()
	}
}

// windowGaps closes every flow's window and returns the longest gap of the
// TCP flows and of the UDP probes, with the flow each was on.
func (s *soak) windowGaps() (tcp, udp gapFigure) {
	now := time.Now()
	for _, f := range s.flows {
		g, worst := seconds(f.windowGap(now)), &tcp
		if f.udp {
			worst = &udp
		}
		if g > worst.Seconds {
			*worst = gapFigure{Seconds: g, Flow: f.name}
		}
	}
	return tcp, udp
}

func (f *flow) proto() string {
	if f.udp {
		return "udp"
	}
	return "tcp"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Millisecond).String() + " ago"
}

// pause waits d or until ctx is done: the pace of a retry loop, not a
// synchronisation.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// closeSet closes everything in it on closeAll, and anything added after.
type closeSet struct {
	mu     sync.Mutex
	closed bool
	cs     map[io.Closer]struct{}
}

// add adds c and reports true, or closes c and reports false once closeAll
// has run.
func (s *closeSet) add(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.cs == nil {
		s.cs = make(map[io.Closer]struct{})
	}
	s.cs[c] = struct{}{}
	return true
}

// remove closes c and forgets it.
func (s *closeSet) remove(c io.Closer) {
	s.mu.Lock()
	delete(s.cs, c)
	s.mu.Unlock()
	c.Close()
}

func (s *closeSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.cs {
		c.Close()
	}
	s.cs = nil
}

// flowReports summarises the flows for the report, in flow order.
func (s *soak) flowReports() []flowReport {
	out := make([]flowReport, 0, len(s.flows))
	for _, f := range s.flows {
		f.mu.Lock()
		out = append(out, flowReport{
			Name: f.name, Proto: f.proto(), RoundTrips: f.rounds, Bytes: f.bytes, Connections: f.dials,
			FailedDials: f.dialFails, Corrupt: f.corrupt, LongestGapS: seconds(f.maxGap),
		})
		f.mu.Unlock()
	}
	return out
}
