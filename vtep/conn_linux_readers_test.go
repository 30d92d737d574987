//go:build linux

package vtep

// Tests of reading a Linux UDP endpoint with several receive sockets
// (ConnConfig.Readers): how flows spread over them, Close, allocations. On
// loopback addresses; none needs root. How the group is bound is tested in
// conn_linux_reuseport_test.go.

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// connReaders is the configuration of a conn on addr with n receive
// sockets, GRO as the default has it, no source-port pool.
func connReaders(addr string, n int) ConnConfig {
	cfg := DefaultConnConfig()
	cfg.Addr = netip.MustParseAddrPort(addr)
	cfg.SourcePorts, cfg.Readers = 0, n
	return cfg
}

// connListenOrSkip opens a conn with cfg, skipping the test if cfg's
// address is IPv6 and the machine has no IPv6 loopback.
func connListenOrSkip(t *testing.T, cfg ConnConfig) Conn {
	t.Helper()
	c, err := Listen(cfg)
	if cfg.Addr.Addr().Is6() && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	if err != nil {
		t.Fatalf("Listen(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connDatagram is one datagram a reader got.
type connDatagram struct {
	reader int
	from   netip.AddrPort
	data   []byte
}

// connStop is the payload that ends a connReadAll goroutine.
const connStop = "stop"

// connReadAll starts one goroutine per reader of c, each reading until
// ReadBatch fails (as after Close) or it gets the datagram connStop, and
// sending copies of the other datagrams, with GRO-coalesced messages split,
// on the returned channel. wait waits for the goroutines to end; a read
// error other than net.ErrClosed fails the test.
func connReadAll(t *testing.T, c Conn) (_ <-chan connDatagram, wait func()) {
	t.Helper()
	rs := c.Readers()
	out := make(chan connDatagram, 4096)
	done := make(chan struct{}, len(rs))
	for i, r := range rs {
		go func() {
			defer func() { done <- struct{}{} }()
			msgs := make([]Message, c.BatchSize())
			for j := range msgs {
				msgs[j].Buf = make([]byte, 65535)
			}
			for {
				n, err := r.ReadBatch(msgs)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("reader %d: ReadBatch: %v", i, err)
					}
					return
				}
				for _, m := range msgs[:n] {
					p := m.Buf[:m.N]
					if string(p) == connStop {
						return
					}
					for len(p) > 0 {
						d := p
						if m.Segment > 0 {
							d = p[:min(m.Segment, len(p))]
						}
						out <- connDatagram{reader: i, from: m.Addr, data: append([]byte(nil), d...)}
						p = p[len(d):]
					}
				}
			}
		}()
	}
	return out, func() {
		for range rs {
			<-done
		}
	}
}

// connCollect takes n datagrams from in, failing the test if they do not
// come within 10 s.
func connCollect(t *testing.T, in <-chan connDatagram, n int) []connDatagram {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	got := make([]connDatagram, 0, n)
	for len(got) < n {
		select {
		case d := <-in:
			got = append(got, d)
		case <-timeout.C:
			t.Fatalf("got %d of %d datagrams in 10 s", len(got), n)
		}
	}
	return got
}

// connFlowPayload is datagram k of a test: a 2-byte index and a pattern of
// a length from 2 to 201 bytes. Small, so that a round of 64 fits in any
// one socket's default receive buffer.
func connFlowPayload(k int) []byte {
	b := make([]byte, 2+(k*37)%200)
	b[0], b[1] = byte(k>>8), byte(k)
	for j := 2; j < len(b); j++ {
		b[j] = byte(k*5 + j)
	}
	return b
}

// TestConnReadersSpread sends 64 flows, each from its own source port, to
// a conn with several receive sockets, and checks that every datagram
// arrives exactly once, in order within its flow, that each flow stays on
// one reader, and that more than one reader gets traffic. The kernel picks
// a reader by a hash of each flow's addresses and ports: with 64 flows and
// r readers, all of them landing on one reader has probability r^-63
// (2^-126 for 4), so that check cannot fail by chance in practice.
func TestConnReadersSpread(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			const readers, flows, rounds = 4, 64, 16
			c := connListenOrSkip(t, connReaders(addr, readers))
			if got := len(c.Readers()); got != readers {
				t.Fatalf("len(Readers()) = %d, want %d", got, readers)
			}
			scfg := connPlain(addr)
			scfg.SourcePorts = flows
			src := connListenConfig(t, scfg)
			in, wait := connReadAll(t, c)
			defer wait()
			defer c.Close()

			// In rounds of one datagram per flow, each read before the
			// next is sent, so that no socket buffer overflows.
			var got []connDatagram
			for round := range rounds {
				msgs := make([]Message, flows)
				for f := range msgs {
					p := connFlowPayload(round*flows + f)
					msgs[f] = Message{Buf: p, N: len(p), Addr: c.LocalAddr(), Flow: uint32(f)}
				}
				if n, err := src.WriteBatch(msgs); n != flows {
					t.Fatalf("round %d: WriteBatch = %d, %v; want %d", round, n, err, flows)
				}
				got = append(got, connCollect(t, in, flows)...)
			}

			seen := make(map[int]bool)
			last := make(map[netip.AddrPort]int)     // a source's last index
			readerOf := make(map[netip.AddrPort]int) // the reader a source landed on
			perReader := make([]int, readers)        // datagrams per reader
			for _, d := range got {
				k := int(d.data[0])<<8 | int(d.data[1])
				if k >= flows*rounds || seen[k] {
					t.Fatalf("bad or repeated index %d", k)
				}
				seen[k] = true
				if want := connFlowPayload(k); string(d.data) != string(want) {
					t.Errorf("datagram %d: got %d bytes, want %d bytes of its pattern", k, len(d.data), len(want))
				}
				if l, ok := last[d.from]; ok && k <= l {
					t.Errorf("from %v: datagram %d after %d", d.from, k, l)
				}
				last[d.from] = k
				if r, ok := readerOf[d.from]; ok && r != d.reader {
					t.Errorf("from %v: datagrams on readers %d and %d", d.from, r, d.reader)
				}
				readerOf[d.from] = d.reader
				perReader[d.reader]++
			}
			if len(last) != flows {
				t.Errorf("%d distinct sources, want %d", len(last), flows)
			}
			used := 0
			for _, n := range perReader {
				if n > 0 {
					used++
				}
			}
			t.Logf("datagrams per reader: %v", perReader)
			if used < 2 {
				t.Errorf("all datagrams on one reader: %v", perReader)
			}
		})
	}
}

// TestConnReadersCloseUnblocks checks that Close unblocks a ReadBatch
// pending on every reader, each with net.ErrClosed, and closes every
// receive socket.
func TestConnReadersCloseUnblocks(t *testing.T) {
	const readers = 4
	c := connListenConfig(t, connReaders("127.0.0.1:0", readers))
	done := make(chan error, readers)
	for _, r := range c.Readers() {
		go func() {
			_, err := r.ReadBatch(make([]Message, 1))
			done <- err
		}()
	}
	connWaitParkedN(t, "(*connReader).ReadBatch", readers)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i := range readers {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadBatch after Close: %v, want net.ErrClosed", err)
			}
		case <-timeout.C:
			t.Fatalf("%d of %d readers still blocked 10 s after Close", readers-i, readers)
		}
	}
	for i, r := range c.(*linuxConn).rx {
		if err := r.rc.Control(func(uintptr) {}); err == nil {
			t.Errorf("receive socket %d still open after Close", i)
		}
	}
	for i, r := range c.Readers() {
		if _, err := r.ReadBatch(make([]Message, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("reader %d: ReadBatch on closed conn: %v, want net.ErrClosed", i, err)
		}
	}
}

// connWaitParkedN waits (up to 10 s, polling) until n goroutines are inside
// fn and parked in the netpoller.
func connWaitParkedN(t *testing.T, fn string, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		parked := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "runtime_pollWait") {
				parked++
			}
		}
		if parked >= n {
			return
		}
	}
	t.Logf("fewer than %d goroutines parked in %s after 10 s; going on", n, fn)
}

// TestConnReaderAllocs checks that ReadBatch on a reader other than the
// first allocates nothing. The kernel's choice of reader for a flow cannot
// be computed, so it is found first: one datagram per flow, read on every
// reader, shows which flows reach reader 1.
func TestConnReaderAllocs(t *testing.T) {
	const flows = 64
	c := connListenConfig(t, connReaders("127.0.0.1:0", 2))
	scfg := connPlain("127.0.0.1:0")
	scfg.SourcePorts = flows
	src := connListenConfig(t, scfg)

	in, wait := connReadAll(t, c)
	probe := make([]Message, flows)
	for f := range probe {
		p := connFlowPayload(f)
		probe[f] = Message{Buf: p, N: len(p), Addr: c.LocalAddr(), Flow: uint32(f)}
	}
	if n, err := src.WriteBatch(probe); n != flows {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	flowTo := map[int]int{} // flow -> reader
	for _, d := range connCollect(t, in, flows) {
		flowTo[int(d.data[0])<<8|int(d.data[1])] = d.reader
	}
	// A flow that reaches each reader; all 64 flows reaching one of two
	// readers has a chance of 2^-63.
	flowOf := [2]int{-1, -1}
	for f := flows - 1; f >= 0; f-- {
		flowOf[flowTo[f]] = f
	}
	if flowOf[0] < 0 || flowOf[1] < 0 {
		c.Close()
		wait()
		t.Fatalf("all %d flows reached one reader: %v", flows, flowTo)
	}
	// Stop both goroutines, each with a datagram of a flow that reaches it.
	for _, f := range flowOf {
		stop := []Message{{Buf: []byte(connStop), N: len(connStop), Addr: c.LocalAddr(), Flow: uint32(f)}}
		if n, err := src.WriteBatch(stop); n != 1 {
			c.Close()
			wait()
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	wait()
	target := flowOf[1]

	const batch, runs = 8, 100
	out, rd := make([]Message, batch), make([]Message, batch)
	for i := range out {
		out[i] = Message{Buf: make([]byte, 1400), N: 1400, Addr: c.LocalAddr(), Flow: uint32(target)}
		rd[i].Buf = make([]byte, 65535)
	}
	r := c.Readers()[1]
	// Reads are measured together with the (allocation-free) writes that
	// feed them, so no socket buffer ever overflows.
	if allocs := testing.AllocsPerRun(runs, func() {
		if n, err := src.WriteBatch(out); n != batch {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for got := 0; got < batch; {
			n, err := r.ReadBatch(rd)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range rd[:n] {
				if m.Segment > 0 {
					got += (m.N + m.Segment - 1) / m.Segment
				} else {
					got++
				}
			}
		}
	}); allocs != 0 {
		t.Errorf("WriteBatch+ReadBatch on reader 1: %v allocs per call, want 0", allocs)
	}
}
