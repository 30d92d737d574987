package vtep

import (
	"bytes"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
)

// nullDevice is a tap.Device whose Read blocks until Close and whose Write
// only counts: it lets the hot path be measured without any fake's own
// copying.
type nullDevice struct {
	reads    atomic.Int32 // Read calls begun: the port's reader has its buffers
	written  atomic.Uint64
	closed   chan struct{}
	offloads tap.Offloads
	keep     bool     // record copies of what is written in frames
	frames   [][]byte // with keep: every frame written, from the write offset on
}

var _ tap.Device = (*nullDevice)(nil)

func newNullDevice() *nullDevice { return &nullDevice{closed: make(chan struct{})} }

func (d *nullDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.reads.Add(1)
	<-d.closed
	return 0, tap.ErrClosed
}
func (d *nullDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.written.Add(uint64(len(bufs)))
	if d.keep {
		for _, b := range bufs {
			d.frames = append(d.frames, bytes.Clone(b[offset:]))
		}
	}
	return len(bufs), nil
}
func (d *nullDevice) Offloads() tap.Offloads { return d.offloads }
func (d *nullDevice) BatchSize() int         { return 64 }
func (d *nullDevice) Name() string           { return "null" }
func (d *nullDevice) MTU() int               { return 1450 }
func (d *nullDevice) Close() error {
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
	return nil
}

// nullConn is a Conn that never receives and discards what it sends (with
// keep, it records copies of the messages).
type nullConn struct {
	reads  atomic.Int32 // ReadBatch calls begun: the receive loop has its buffers
	closed chan struct{}
	keep   bool
	mu     sync.Mutex // guards sent
	sent   []Message
}

// frames counts the datagrams kept so far (a GSO message holds several).
func (c *nullConn) frames() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.sent {
		if m.Segment > 0 {
			n += (m.N + m.Segment - 1) / m.Segment
		} else {
			n++
		}
	}
	return n
}

func (c *nullConn) ReadBatch(msgs []Message) (int, error) {
	c.reads.Add(1)
	<-c.closed
	return 0, errClosedForTest
}

// waitReading polls until each counter of Read calls has moved: the
// switch's goroutines have allocated their buffers and block in Read, so
// an allocation count taken from then on sees only the path measured.
func waitReading(tb testing.TB, reads ...*atomic.Int32) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range reads {
		for r.Load() == 0 {
			if time.Now().After(deadline) {
				tb.Fatal("a switch goroutine never began reading")
			}
			time.Sleep(time.Millisecond)
		}
	}
}
func (c *nullConn) WriteBatch(msgs []Message) (int, error) {
	for i := range msgs {
		msgs[i].Sent = true
	}
	if c.keep {
		c.mu.Lock()
		for _, m := range msgs {
			m.Buf = bytes.Clone(m.Buf[:m.N])
			c.sent = append(c.sent, m)
		}
		c.mu.Unlock()
	}
	return len(msgs), nil
}
func (c *nullConn) Offloads() ConnOffloads    { return ConnOffloads{GSO: true} }
func (c *nullConn) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (c *nullConn) BatchSize() int            { return 64 }
func (c *nullConn) Readers() []BatchReader    { return []BatchReader{c} }
func (c *nullConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

var errClosedForTest = tap.ErrClosed

// hotRig is a switch with one null port on VNI 42 and one peer.
func hotRig(tb testing.TB) (*Switch, *nullDevice, netip.AddrPort) {
	tb.Helper()
	conn := &nullConn{closed: make(chan struct{})}
	sw, err := New(Config{Conn: conn, FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sw.Close() })
	dev := newNullDevice()
	if _, err := sw.AddPort(PortConfig{VNI: 42, Device: dev}); err != nil {
		tb.Fatal(err)
	}
	waitReading(tb, &conn.reads, &dev.reads)
	peer := netip.MustParseAddrPort("192.0.2.2:4789")
	sw.SetPeers(42, []netip.AddrPort{peer})
	return sw, dev, peer
}

// kernelBatch turns the kernel capture into a receive batch from peer.
func kernelBatch(tb testing.TB, peer netip.AddrPort) []Message {
	var msgs []Message
	for _, p := range kernelPayloads(tb) {
		msgs = append(msgs, Message{Buf: p, N: len(p), Addr: peer})
	}
	return msgs
}

// TestReceiveAllocs: decapsulating, learning, looking up and delivering a
// batch of kernel-written packets allocates nothing once warm.
func TestReceiveAllocs(t *testing.T) {
	sw, dev, peer := hotRig(t)
	msgs := kernelBatch(t, peer)
	var q recvScratch
	sw.receiveBatch(msgs, &q) // warm up: learn MACs, size queues
	before := dev.written.Load()
	if n := testing.AllocsPerRun(200, func() { sw.receiveBatch(msgs, &q) }); n != 0 {
		t.Errorf("receiveBatch allocs = %v, want 0", n)
	}
	if dev.written.Load() == before {
		t.Error("nothing was delivered: the test measured nothing")
	}
}

// TestSendAllocs: classifying, learning, encapsulating in place, looking up
// and sending a batch of frames read from a port allocates nothing once
// warm: known unicast to a VTEP, and broadcast replicated to every peer.
func TestSendAllocs(t *testing.T) {
	sw, _, peer := hotRig(t)
	p := sw.ports.Load().byVNI[42][0]
	sc := newSendScratch(p)
	remote := fdb.MAC{2, 0, 0, 0, 0, 0xbb}
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: remote}, fdb.Location{VTEP: peer}, fdb.OriginLearned, 1)
	n := 0
	for _, payload := range kernelPayloads(t) {
		inner := payload[HeaderLen:]
		if n == len(sc.bufs) || len(inner) > p.mtu+ethHeaderLen {
			break
		}
		sc.sizes[n] = copy(sc.bufs[n][HeaderLen:], inner)
		if n%2 == 0 {
			copy(sc.bufs[n][HeaderLen:], remote[:]) // known unicast
		}
		n++
	}
	sent := p.traffic.txFrames.Load() + sw.counters[peer.Addr()].txFrames.Load()
	sw.sendBatch(p, sc, n) // warm up
	if allocs := testing.AllocsPerRun(200, func() { sw.sendBatch(p, sc, n) }); allocs != 0 {
		t.Errorf("sendBatch allocs = %v, want 0", allocs)
	}
	if sw.counters[peer.Addr()].txFrames.Load() == sent {
		t.Error("nothing was sent: the test measured nothing")
	}
}

// FuzzReceive drives arbitrary datagrams from a member VTEP through the
// whole receive path of a switch: nothing may panic, and every datagram is
// delivered or counted as a drop.
func FuzzReceive(f *testing.F) {
	sw, _, peer := hotRig(f)
	var q recvScratch
	f.Fuzz(func(t *testing.T, b []byte) {
		sw.receiveBatch([]Message{{Buf: b, N: len(b), Addr: peer}}, &q)
	})
}

func BenchmarkReceiveBatch(b *testing.B) {
	sw, _, peer := hotRig(b)
	msgs := kernelBatch(b, peer)
	var q recvScratch
	sw.receiveBatch(msgs, &q)
	b.ReportAllocs()
	for b.Loop() {
		sw.receiveBatch(msgs, &q)
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "pkts/s")
}
