package gossip

// Measurements for the documentation's figures, not tests of speed: they
// assert only that the cluster converges, and report what they measure with
// t.Logf. They run with memberlist's default LAN timers on loopback and take
// minutes, so they are skipped unless OVLSW_FIGURES=1:
//
//	OVLSW_FIGURES=1 go test -count=1 -v -run Figure -timeout 20m ./gossip/

import (
	"bytes"
	"compress/lzw"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
)

// needFigures skips the test unless OVLSW_FIGURES=1.
func needFigures(t *testing.T) {
	t.Helper()
	if os.Getenv("OVLSW_FIGURES") != "1" {
		t.Skip("figure measurement (minutes, default timers); set OVLSW_FIGURES=1 to run")
	}
}

// countingTransport is memberlist's NetTransport on 127.0.0.1 (a free
// port), counting the bytes this node sends: UDP payloads as written, and
// what it writes on every TCP stream, those it dials and those it
// accepts. Bytes are memberlist's, after its compression; IP, UDP and TCP
// headers are not included.
type countingTransport struct {
	nt *memberlist.NetTransport

	udpBytes, udpPackets atomic.Uint64
	tcpBytes, streams    atomic.Uint64

	streamCh chan net.Conn // accepted streams, wrapped
	done     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once

	mu         sync.Mutex
	streamSent []uint64 // bytes sent on each stream closed since takeStreams
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport() (*countingTransport, error) {
	var nt *memberlist.NetTransport
	var err error
	for range 10 { // port 0 picks a TCP port; its UDP twin may be taken
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			Logger:    log.New(io.Discard, "", 0),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	t := &countingTransport{nt: nt, streamCh: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(1)
	go t.forward()
	return t, nil
}

// forward hands memberlist the accepted streams, wrapped.
func (t *countingTransport) forward() {
	defer t.wg.Done()
	in := t.nt.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.streamCh <- t.wrap(c):
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *countingTransport) wrap(c net.Conn) net.Conn {
	t.streams.Add(1)
	return &countingConn{Conn: c, t: t}
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.nt.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	ts, err := t.nt.WriteToAddress(b, addr)
	if err == nil {
		t.udpBytes.Add(uint64(len(b)))
		t.udpPackets.Add(1)
	}
	return ts, err
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.nt.PacketCh() }

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.nt.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return t.wrap(c), nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the listeners first: memberlist still takes streams
// then, so the NetTransport's accept loop cannot block on its channel.
func (t *countingTransport) Shutdown() error {
	var err error
	t.shutOnce.Do(func() {
		err = t.nt.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}

// sendCounts are a countingTransport's counters at one time.
type sendCounts struct {
	udpBytes, udpPackets, tcpBytes, streams uint64
}

func (t *countingTransport) counts() sendCounts {
	return sendCounts{
		udpBytes: t.udpBytes.Load(), udpPackets: t.udpPackets.Load(),
		tcpBytes: t.tcpBytes.Load(), streams: t.streams.Load(),
	}
}

// takeStreams returns the bytes sent on each stream closed since the last
// call.
func (t *countingTransport) takeStreams() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streamSent
	t.streamSent = nil
	return s
}

// countingConn counts what is written on one stream.
type countingConn struct {
	net.Conn
	t         *countingTransport
	sent      atomic.Uint64
	closeOnce sync.Once
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(uint64(n))
	c.t.tcpBytes.Add(uint64(n))
	return n, err
}

func (c *countingConn) Close() error {
	c.closeOnce.Do(func() {
		c.t.mu.Lock()
		c.t.streamSent = append(c.t.streamSent, c.sent.Load())
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// startDefaultCluster starts count agents on 127.0.0.1 with memberlist's
// default LAN timers (no Tune), each on a countingTransport, each joining
// the first, and waits until every agent lists every other alive.
func startDefaultCluster(t *testing.T, count int) ([]*node, []*countingTransport) {
	t.Helper()
	nodes := make([]*node, 0, count)
	cts := make([]*countingTransport, 0, count)
	for i := range count {
		ct, err := newCountingTransport()
		if err != nil {
			t.Fatalf("transport %d: %v", i, err)
		}
		var join []string
		if i > 0 {
			join = []string{nodes[0].agent.Addr().String()}
		}
		n, err := startNode(t, i, 0, join, func(c *Config) {
			c.Tune = nil // memberlist.DefaultLANConfig's timers
			c.Transport = ct
		})
		if err != nil {
			ct.Shutdown()
			t.Fatalf("start node %d: %v", i, err)
		}
		nodes, cts = append(nodes, n), append(cts, ct)
	}
	waitFor(t, time.Minute, "membership", func() error {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.agent.Members() {
				if m.State == stateAlive {
					alive++
				}
			}
			if alive != count {
				return fmt.Errorf("%s: %d of %d members alive", n.name, alive, count)
			}
		}
		return nil
	})
	return nodes, cts
}

// gossipEntries counts a table's gossip entries, and those owned by owner.
func gossipEntries(tab *fdb.Table, owner string) (all, owned int) {
	for _, e := range tab.Entries() {
		if e.Origin == fdb.OriginGossip {
			all++
			if e.Node == owner {
				owned++
			}
		}
	}
	return all, owned
}

type spread struct{ mean, min, max float64 }

func spreadOf(v []float64) spread {
	s := spread{min: slices.Min(v), max: slices.Max(v)}
	for _, x := range v {
		s.mean += x
	}
	s.mean /= float64(len(v))
	return s
}

func (s spread) String() string {
	return fmt.Sprintf("mean %.0f  min %.0f  max %.0f", s.mean, s.min, s.max)
}

// measureSend reports what each node sends during window.
func measureSend(t *testing.T, label string, nodes []*node, cts []*countingTransport, window time.Duration) {
	t.Helper()
	before := make([]sendCounts, len(cts))
	statsBefore := make([]Stats, len(nodes))
	queuedBefore := 0
	for i, ct := range cts {
		ct.takeStreams()
		before[i] = ct.counts()
		statsBefore[i] = nodes[i].agent.Stats()
		queuedBefore += statsBefore[i].Queued
	}
	start := time.Now()
	time.Sleep(window)
	secs := time.Since(start).Seconds()

	var total, udp, udpWire, tcp, pkts, streams, states, msgs []float64
	var sizes []uint64
	queuedAfter := 0
	for i, ct := range cts {
		c := ct.counts()
		st := nodes[i].agent.Stats()
		b := before[i]
		du, dp, dt := float64(c.udpBytes-b.udpBytes), float64(c.udpPackets-b.udpPackets), float64(c.tcpBytes-b.tcpBytes)
		total = append(total, (du+dt)/secs)
		udp = append(udp, du/secs)
		udpWire = append(udpWire, (du+28*dp)/secs)
		tcp = append(tcp, dt/secs)
		pkts = append(pkts, dp/secs)
		streams = append(streams, float64(c.streams-b.streams))
		states = append(states, float64(st.StatesOut-statsBefore[i].StatesOut))
		msgs = append(msgs, float64(st.MessagesOut-statsBefore[i].MessagesOut)/secs)
		sizes = append(sizes, ct.takeStreams()...)
		queuedAfter += st.Queued
	}
	t.Logf("%s: window %.1f s, %d nodes, bytes SENT per node (memberlist payload, after its compression):", label, secs, len(nodes))
	t.Logf("%s:   total UDP+TCP B/s   %v", label, spreadOf(total))
	t.Logf("%s:   UDP B/s             %v   (with 28 B IPv4+UDP header per packet: %v)", label, spreadOf(udp), spreadOf(udpWire))
	t.Logf("%s:   UDP packets/s       %v", label, spreadOf(pkts))
	t.Logf("%s:   TCP B/s             %v", label, spreadOf(tcp))
	t.Logf("%s:   TCP streams opened  %v per node in the window (dialled + accepted)", label, spreadOf(streams))
	t.Logf("%s:   push/pull states    %v sent per node in the window", label, spreadOf(states))
	t.Logf("%s:   binding broadcasts  %v sent per node per second", label, spreadOf(msgs))
	if len(sizes) > 0 {
		slices.Sort(sizes)
		t.Logf("%s:   bytes sent per TCP stream closed in the window: %d streams, min %d  median %d  max %d",
			label, len(sizes), sizes[0], sizes[len(sizes)/2], sizes[len(sizes)-1])
	}
	t.Logf("%s:   broadcasts queued, all nodes: %d at the start, %d at the end", label, queuedBefore, queuedAfter)
	for i := range nodes {
		t.Logf("%s:   %s  %8.0f B/s  (UDP %8.0f, TCP %8.0f)", label, nodes[i].name, total[i], udp[i], tcp[i])
	}
}

// TestFigureGossipBandwidth measures the bytes each of 10 nodes sends per
// second with default timers: idle, and holding 10,000 bindings (1,000 per
// node) right after they converged and again once every retransmit queue
// has drained. It also reports the size of one push/pull state.
func TestFigureGossipBandwidth(t *testing.T) {
	needFigures(t)
	const (
		count   = 10
		perNode = 1000
		window  = 65 * time.Second // two push/pull intervals (30 s) and some
	)

	t.Run("idle", func(t *testing.T) {
		nodes, cts := startDefaultCluster(t, count)
		// Let memberlist's join broadcasts (alive messages, 16 sends each)
		// finish; they take a second or two.
		time.Sleep(10 * time.Second)
		measureSend(t, "idle", nodes, cts, window)
		st := (*delegate)(nodes[0].agent).LocalState(false)
		t.Logf("idle: push/pull state (delegate payload) %d bytes", len(st))
	})

	t.Run("10000-bindings", func(t *testing.T) {
		nodes, cts := startDefaultCluster(t, count)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, count)
		for i, n := range nodes {
			wg.Go(func() {
				for j := range perNode {
					err := n.agent.Announce(Binding{
						VNI: 100,
						MAC: fdb.MAC{2, 1, 0, byte(i), byte(j >> 8), byte(j)},
						IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(100 + i), byte(j >> 8), byte(j)})},
					})
					if err != nil {
						errs[i] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("announce on node %d: %v", i, err)
			}
		}
		want := (count - 1) * perNode
		deadline := start.Add(10 * time.Minute)
		for {
			err := func() error {
				for _, n := range nodes {
					if got, _ := gossipEntries(n.table, ""); got != want {
						return fmt.Errorf("%s: %d of %d gossip entries", n.name, got, want)
					}
				}
				return nil
			}()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not converged after 10 min: %v", err)
			}
			time.Sleep(250 * time.Millisecond) // each poll copies 90,000 entries
		}
		converged := time.Now()
		t.Logf("10000-bindings: converged (every FDB holds %d gossip entries) %.1f s after the first Announce",
			want, converged.Sub(start).Seconds())

		measureSend(t, "10000-bindings, right after convergence", nodes, cts, window)

		drainStart := time.Now()
		drained := false
		for time.Since(drainStart) < 10*time.Minute {
			queued := 0
			for _, n := range nodes {
				queued += n.agent.Stats().Queued
			}
			if queued == 0 {
				drained = true
				break
			}
			time.Sleep(time.Second)
		}
		t.Logf("10000-bindings: retransmit queues drained=%v %.0f s after convergence",
			drained, time.Since(converged).Seconds())
		measureSend(t, "10000-bindings, queues drained (steady state)", nodes, cts, window)

		st := (*delegate)(nodes[0].agent).LocalState(false)
		var lz bytes.Buffer
		w := lzw.NewWriter(&lz, lzw.LSB, 8) // memberlist's compression of a push/pull
		w.Write(st)
		w.Close()
		t.Logf("10000-bindings: one push/pull state of %s (its own 1,000 and 9,000 of others, 10,000 records): "+
			"%d bytes as our delegate encodes it (%.1f B/record), %d bytes LZW-compressed as memberlist sends it",
			nodes[0].name, len(st), float64(len(st))/float64(count*perNode), lz.Len())
	})
}

// TestFigureFailover measures, with default timers, how long after a node
// of 10 (10 bindings each) stops every other node's FDB has dropped its
// bindings: killed (Close without Leave, as on SIGKILL) and leaving
// gracefully (Leave, then Close, as on SIGTERM). Three runs each, each in a
// new cluster.
func TestFigureFailover(t *testing.T) {
	needFigures(t)
	const (
		count   = 10
		perNode = 10
		runs    = 3
	)
	for _, mode := range []string{"kill", "leave"} {
		var times []time.Duration
		for run := range runs {
			t.Run(fmt.Sprintf("%s-%d", mode, run+1), func(t *testing.T) {
				nodes, _ := startDefaultCluster(t, count)
				for _, n := range nodes {
					for j := range perNode {
						if err := n.agent.Announce(testBinding(n, j, 100)); err != nil {
							t.Fatal(err)
						}
					}
				}
				want := (count - 1) * perNode
				waitFor(t, time.Minute, "bindings", func() error {
					for _, n := range nodes {
						if got, _ := gossipEntries(n.table, ""); got != want {
							return fmt.Errorf("%s: %d of %d gossip entries", n.name, got, want)
						}
					}
					return nil
				})
				time.Sleep(time.Second)

				victim := nodes[count-1-run]
				var others []*node
				for _, n := range nodes {
					if n != victim {
						others = append(others, n)
					}
				}
				start := time.Now()
				var leaveTook time.Duration
				stopped := make(chan error, 1)
				go func() {
					var err error
					if mode == "leave" {
						err = victim.agent.Leave(2 * time.Second) // as the daemon on SIGTERM
						leaveTook = time.Since(start)
					}
					if cerr := victim.agent.Close(); err == nil {
						err = cerr
					}
					stopped <- err
				}()
				cleared := make(map[*node]time.Duration)
				deadline := start.Add(2 * time.Minute)
				for len(cleared) < len(others) {
					if time.Now().After(deadline) {
						<-stopped
						t.Fatalf("%s's bindings still held by %d nodes after 2 min", victim.name, len(others)-len(cleared))
					}
					for _, n := range others {
						if _, ok := cleared[n]; ok {
							continue
						}
						if _, owned := gossipEntries(n.table, victim.name); owned == 0 {
							cleared[n] = time.Since(start)
						}
					}
					time.Sleep(5 * time.Millisecond)
				}
				if err := <-stopped; err != nil {
					t.Errorf("stop %s: %v", victim.name, err)
				}
				ds := slices.Sorted(maps.Values(cleared))
				first, all := ds[0], ds[len(ds)-1]
				msg := fmt.Sprintf("%s run %d: %s stopped; its %d bindings gone from all %d other FDBs after %v (first node %v)",
					mode, run+1, victim.name, perNode, len(others), all.Round(time.Millisecond), first.Round(time.Millisecond))
				if mode == "leave" {
					msg += fmt.Sprintf("; Leave returned after %v", leaveTook.Round(time.Millisecond))
				}
				t.Log(msg)
				times = append(times, all)
			})
		}
		if len(times) == runs {
			s := slices.Sorted(slices.Values(times))
			t.Logf("%s: %v; median %v", mode, times, s[len(s)/2].Round(time.Millisecond))
		}
	}
}
