//go:build linux

package vtep

// Tests of the Linux UDP endpoint's offloads (UDP GSO on send, UDP GRO on
// receive) and of its source-port pool, on loopback addresses; none needs
// root. Loopback carries a GSO message whole (it has NETIF_F_GSO_UDP_L4),
// so a receiver with GRO on gets it coalesced and one without gets it cut.

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// connSegmented is a segmented message of the given total length and
// segment size to addr. Byte j of segment s is the message's seed, s and j
// mixed, so that a reordered or shifted segment shows.
func connSegmented(seed byte, n, segment int, to netip.AddrPort) Message {
	b := make([]byte, n)
	for j := range b {
		b[j] = seed ^ byte(j/segment)*31 ^ byte(j%segment)
	}
	return Message{Buf: b, N: n, Addr: to, Segment: segment}
}

// connSegments cuts m into the datagrams it stands for.
func connSegments(m Message) [][]byte {
	var out [][]byte
	p := m.Buf[:m.N]
	for len(p) > m.Segment {
		out = append(out, p[:m.Segment])
		p = p[m.Segment:]
	}
	return append(out, p)
}

// connWant lists the datagrams msgs stand for, in order.
func connWant(msgs ...Message) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if m.Segment == 0 {
			out = append(out, m.Buf[:m.N])
			continue
		}
		out = append(out, connSegments(m)...)
	}
	return out
}

// connCheckData compares received datagrams with those wanted, in order.
func connCheckData(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d datagrams, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("datagram %d: got %d bytes, want %d bytes of its pattern", i, len(got[i]), len(want[i]))
		}
	}
}

// connNeed opens a conn with cfg and skips the test unless it has the
// offloads asked for: they depend on the kernel.
func connNeed(t *testing.T, cfg ConnConfig) Conn {
	t.Helper()
	c := connListenConfig(t, cfg)
	if got := c.Offloads(); cfg.GSO && !got.GSO || cfg.GRO && !got.GRO {
		t.Skipf("kernel %s lacks an offload: asked for GSO %v, GRO %v; got %v", kernelRelease(), cfg.GSO, cfg.GRO, got)
	}
	return c
}

func connWithOffloads(addr string, gso, gro bool, ports int) ConnConfig {
	cfg := connPlain(addr)
	cfg.GSO, cfg.GRO, cfg.SourcePorts = gso, gro, ports
	return cfg
}

func TestConnOffloadsString(t *testing.T) {
	for _, tt := range []struct {
		o    ConnOffloads
		want string
	}{
		{ConnOffloads{}, "off"},
		{ConnOffloads{GSO: true, GRO: true, SourcePorts: 16}, "gso,gro,srcports=16"},
		{ConnOffloads{GSO: true}, "gso"},
		{ConnOffloads{GRO: true, SourcePorts: 1}, "gro,srcports=1"},
		{ConnOffloads{SourcePorts: 4}, "srcports=4"},
		{ConnOffloads{GSO: true, GRO: true, SourcePorts: 16, Readers: 2}, "gso,gro,srcports=16,readers=2"},
		{ConnOffloads{Readers: 1}, "off"},
		{ConnOffloads{Readers: 4}, "readers=4"},
		{ConnOffloads{GRO: true, GSOKernelBug: "7.0.3"}, "gso=off(kernel 7.0.3 bug),gro"},
		{ConnOffloads{GSO: true, GSOKernelBug: "7.0.3"}, "gso"},
	} {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.o, got, tt.want)
		}
	}
}

// TestConnOffloadsProbe checks that Offloads reports what was asked for and
// what the kernel has, and that the bound socket is set up to match.
func TestConnOffloadsProbe(t *testing.T) {
	for _, tt := range []struct {
		name     string
		gso, gro bool
		ports    int
	}{
		{"none", false, false, 0},
		{"all", true, true, 16},
		{"gso only", true, false, 2},
		{"gro only", false, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := connListenConfig(t, connWithOffloads("127.0.0.1:0", tt.gso, tt.gro, tt.ports)).(*linuxConn)
			got := c.Offloads()
			t.Logf("kernel %s: asked gso=%v gro=%v srcports=%d, got %v", kernelRelease(), tt.gso, tt.gro, tt.ports, got)
			if got.GSO && !tt.gso || got.GRO && !tt.gro || got.SourcePorts != tt.ports {
				t.Errorf("Offloads = %+v, more than asked for or the wrong pool", got)
			}
			var gro int
			var gerr error
			if err := c.rc.Control(func(fd uintptr) { gro, gerr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO) }); err != nil {
				t.Fatal(err)
			}
			if gerr == nil && (gro != 0) != got.GRO {
				t.Errorf("UDP_GRO = %d on the socket, but Offloads().GRO = %v", gro, got.GRO)
			}
			if len(connSources(t, c)) != max(tt.ports, 1) {
				t.Errorf("%d distinct source addresses, want %d", len(connSources(t, c)), max(tt.ports, 1))
			}
		})
	}
}

// TestConnGSOSend sends segmented messages to receivers without GRO, which
// must get every segment as a datagram of its own, in order, with GSO on
// and off, and across a BatchSize smaller than a message's segments.
func TestConnGSOSend(t *testing.T) {
	for _, tt := range []struct {
		name  string
		addr  string
		gso   bool
		batch int
	}{
		{"IPv4 GSO", "127.0.0.1:0", true, 0},
		{"IPv6 GSO", "[::1]:0", true, 0},
		{"IPv4 cut", "127.0.0.1:0", false, 0},
		{"IPv6 cut", "[::1]:0", false, 0},
		{"cut over small batches", "127.0.0.1:0", false, 5},
		{"GSO over small batches", "127.0.0.1:0", true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := connWithOffloads(tt.addr, tt.gso, false, 0)
			cfg.BatchSize = tt.batch
			if _, err := Listen(cfg); errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
				t.Skipf("no %s: %v", tt.addr, err)
			}
			a := connNeed(t, cfg)
			if !tt.gso && a.Offloads().GSO {
				t.Fatal("GSO on though not asked for")
			}
			b := connListenConfig(t, connPlain(tt.addr))
			to := b.LocalAddr()
			msgs := []Message{
				connSegmented(1, 10*1000+500, 1000, to), // 11 segments, the last shorter
				{Buf: []byte("plain"), N: 5, Addr: to},
				connSegmented(2, 3*1400, 1400, to),  // all the same size
				connSegmented(3, 64*1000, 1000, to), // the most segments
				connSegmented(4, 900, 1000, to),     // one segment, shorter
				connSegmented(5, 1000, 1000, to),    // one segment, full
				connSegmented(6, MaxSegmentedPayload, 1100, to),
			}
			if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(msgs))
			}
			want := connWant(msgs...)
			got, _ := connRead(t, b, len(want))
			connCheckData(t, got, want)
			if got := a.Offloads().GSO; got != tt.gso {
				t.Errorf("after sending, Offloads().GSO = %v, want %v", got, tt.gso)
			}
		})
	}
}

// TestConnGRO checks that a receiver with GRO on gets GSO messages
// coalesced, with Segment set, and that they split back into the datagrams
// sent; datagrams sent one by one arrive with Segment 0.
func TestConnGRO(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			if _, err := Listen(connPlain(addr)); errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
				t.Skipf("no %s: %v", addr, err)
			}
			a := connNeed(t, connWithOffloads(addr, true, false, 4))
			b := connNeed(t, connWithOffloads(addr, false, true, 0))
			to := b.LocalAddr()
			msgs := []Message{
				connSegmented(1, 20*1200+7, 1200, to),
				{Buf: []byte("plain one"), N: 9, Addr: to},
				connSegmented(2, 64*1000, 1000, to),
				{Buf: []byte("plain two"), N: 9, Addr: to},
				connSegmented(3, 2*1400, 1400, to),
			}
			if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(msgs))
			}
			want := connWant(msgs...)
			var got [][]byte
			var segs []int
			connReadMessages(t, b, func(m Message) int {
				segs = append(segs, m.Segment)
				if m.Segment == 0 {
					got = append(got, bytes.Clone(m.Buf[:m.N]))
					return 1
				}
				if m.N <= m.Segment {
					t.Errorf("message of %d bytes has Segment %d: only coalesced messages have one", m.N, m.Segment)
				}
				d := connSegments(m)
				for _, p := range d {
					got = append(got, bytes.Clone(p))
				}
				return len(d)
			}, len(want))
			connCheckData(t, got, want)
			// Loopback hands each GSO message over whole.
			if wantSegs := []int{1200, 0, 1000, 0, 1400}; !equalInts(segs, wantSegs) {
				t.Errorf("message segment sizes %v, want %v", segs, wantSegs)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestConnGSOFallback makes the kernel refuse GSO (SO_NO_CHECK with
// UDP_SEGMENT is EINVAL) and checks that the conn turns GSO off, reports
// it, and still delivers the message, cut, with the rest of its batch in
// order.
func TestConnGSOFallback(t *testing.T) {
	for _, ports := range []int{0, 3} {
		t.Run(fmt.Sprintf("srcports=%d", ports), func(t *testing.T) {
			a := connNeed(t, connWithOffloads("127.0.0.1:0", true, false, ports)).(*linuxConn)
			b := connListenConfig(t, connPlain("127.0.0.1:0"))
			for _, rc := range a.tx {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) }); err != nil || serr != nil {
					t.Fatal(err, serr)
				}
			}
			to := b.LocalAddr()
			msgs := []Message{
				{Buf: []byte("before"), N: 6, Addr: to},
				connSegmented(1, 5*1000+1, 1000, to),
				connSegmented(2, 3*1000, 1000, to),
				{Buf: []byte("after"), N: 5, Addr: to},
			}
			if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(msgs))
			}
			if a.Offloads().GSO {
				t.Fatalf("Offloads().GSO still on after the kernel refused it")
			}
			want := connWant(msgs...)
			got, _ := connRead(t, b, len(want))
			connCheckData(t, got, want)
			// And on: later segmented messages are cut straight away.
			m := connSegmented(3, 2500, 1000, to)
			if n, err := a.WriteBatch([]Message{m}); n != 1 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 1, nil", n, err)
			}
			got, _ = connRead(t, b, 3)
			connCheckData(t, got, connWant(m))
		})
	}
}

// TestConnSegmentLimits checks that messages over MaxSegments segments or
// MaxSegmentedPayload bytes, or with a negative Segment, are refused without
// holding up the rest, with GSO on and off.
func TestConnSegmentLimits(t *testing.T) {
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			a := connNeed(t, connWithOffloads("127.0.0.1:0", gso, false, 0))
			b := connListenConfig(t, connPlain("127.0.0.1:0"))
			to := b.LocalAddr()
			ok1 := connSegmented(1, 64*100, 100, to)                    // 64 segments
			ok2 := connSegmented(2, MaxSegmentedPayload, 1024, to)      // 64 segments, the most bytes
			tooMany := connSegmented(3, 64*100+1, 100, to)              // 65 segments
			tooBig := connSegmented(4, MaxSegmentedPayload+1, 1400, to) // 47 segments, one byte too many
			negative := Message{Buf: []byte("x"), N: 1, Addr: to, Segment: -1}
			msgs := []Message{tooMany, ok1, tooBig, negative, ok2, tooMany}
			if n, err := a.WriteBatch(msgs); n != 2 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 2, nil", n, err)
			}
			want := connWant(ok1, ok2)
			got, _ := connRead(t, b, len(want))
			connCheckData(t, got, want)
			for _, tt := range []struct {
				name string
				m    Message
				want error
			}{
				{"too many segments", tooMany, syscall.EMSGSIZE},
				{"too many bytes", tooBig, syscall.EMSGSIZE},
				{"negative segment", negative, syscall.EINVAL},
			} {
				if n, err := a.WriteBatch([]Message{tt.m}); n != 0 || !errors.Is(err, tt.want) {
					t.Errorf("%s: WriteBatch = %d, %v; want 0 and an error that is %v", tt.name, n, err, tt.want)
				}
			}
			if got := a.Offloads().GSO; got != gso {
				t.Errorf("Offloads().GSO = %v after refused messages, want %v", got, gso)
			}
		})
	}
}

// TestConnSourcePorts checks that the pool spreads flows over its ports,
// one port per flow, keeping each flow's order, and that the ports are the
// kernel's ephemeral ones.
func TestConnSourcePorts(t *testing.T) {
	const ports, flows, each = 5, 20, 8
	a := connListenConfig(t, connWithOffloads("127.0.0.1:0", true, false, ports))
	b := connListenConfig(t, connPlain("127.0.0.1:0"))
	if got := a.Offloads().SourcePorts; got != ports {
		t.Fatalf("Offloads().SourcePorts = %d, want %d", got, ports)
	}
	// Flows interleaved: message i is flow i%flows, its (i/flows)th.
	var msgs []Message
	for i := range flows * each {
		p := []byte{byte(i % flows), byte(i / flows)}
		msgs = append(msgs, Message{Buf: p, N: 2, Addr: b.LocalAddr(), Flow: uint32(i%flows) * 0x9e3779b1})
	}
	if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(msgs))
	}
	data, from := connRead(t, b, len(msgs))
	portOf := make(map[uint32]uint16) // flow hash -> source port
	next := make([]byte, flows)       // next sequence number per flow
	seen := make(map[uint16]bool)
	lo, hi := connEphemeral(t)
	for k, d := range data {
		f, seq := d[0], d[1]
		h := uint32(f) * 0x9e3779b1
		port := from[k].Port()
		if from[k].Addr() != a.LocalAddr().Addr() || port == a.LocalAddr().Port() {
			t.Errorf("flow %d: source %v, want %v with a pool port", f, from[k], a.LocalAddr().Addr())
		}
		if p, ok := portOf[h%ports]; ok && p != port {
			t.Errorf("flow %d (socket %d) left from port %d and from %d", f, h%ports, p, port)
		}
		portOf[h%ports] = port
		seen[port] = true
		if seq != next[f] {
			t.Errorf("flow %d: datagram %d arrived when %d was due", f, seq, next[f])
		}
		next[f] = seq + 1
		if int(port) < lo || int(port) > hi {
			t.Errorf("source port %d outside the ephemeral range %d-%d", port, lo, hi)
		}
	}
	if len(seen) != ports {
		t.Errorf("datagrams left from %d ports, want %d", len(seen), ports)
	}
}

// connEphemeral returns the kernel's ephemeral port range.
func connEphemeral(t *testing.T) (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 1, 65535
	}
	f := strings.Fields(string(b))
	lo, _ = strconv.Atoi(f[0])
	hi, _ = strconv.Atoi(f[1])
	return lo, hi
}

func TestConnOffloadAllocs(t *testing.T) {
	const runs = 50
	for _, tt := range []struct {
		name  string
		gso   bool
		ports int
	}{
		{"GSO", true, 0},
		{"GSO with pool", true, 16},
		{"cut with pool", false, 16},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := connNeed(t, connWithOffloads("127.0.0.1:0", tt.gso, false, tt.ports))
			sink := connListenConfig(t, connPlain("127.0.0.1:0"))
			out := make([]Message, 4)
			for i := range out {
				out[i] = connSegmented(byte(i), 40*1400, 1400, sink.LocalAddr())
				out[i].Flow = uint32(i * 7)
			}
			// Nobody reads sink: what overflows its buffer is dropped,
			// which the sender never sees.
			if allocs := testing.AllocsPerRun(runs, func() {
				if n, err := a.WriteBatch(out); n != len(out) {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
			}); allocs != 0 {
				t.Errorf("WriteBatch: %v allocs per call, want 0", allocs)
			}
		})
	}
	t.Run("GRO", func(t *testing.T) {
		a := connNeed(t, connWithOffloads("127.0.0.1:0", true, false, 16))
		b := connNeed(t, connWithOffloads("127.0.0.1:0", false, true, 0))
		out, in := make([]Message, 4), make([]Message, 4)
		for i := range out {
			out[i] = connSegmented(byte(i), 40*1400, 1400, b.LocalAddr())
			out[i].Flow = uint32(i)
			in[i].Buf = make([]byte, 65535)
		}
		// Reads are measured together with the writes that feed them,
		// so no socket buffer ever overflows.
		if allocs := testing.AllocsPerRun(runs, func() {
			if n, err := a.WriteBatch(out); n != len(out) {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			for got := 0; got < len(out); {
				n, err := b.ReadBatch(in)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range in[:n] {
					if m.Segment != 1400 {
						t.Fatalf("received Segment %d, want 1400", m.Segment)
					}
				}
				got += n
			}
		}); allocs != 0 {
			t.Errorf("WriteBatch+ReadBatch: %v allocs per call, want 0", allocs)
		}
	})
}

// BenchmarkWriteBatchGSO sends batches of 4 messages of 45 datagrams of
// 1450 bytes (65250 bytes, under MaxSegmentedPayload) to a reader: as GSO
// messages to a reader with GRO, and cut into datagrams to one without.
func BenchmarkWriteBatchGSO(b *testing.B) {
	const msgs, segs, size = 4, 45, 1450
	for _, gso := range []bool{true, false} {
		name := "cut"
		if gso {
			name = "gso"
		}
		b.Run(name, func(b *testing.B) {
			src, err := Listen(connWithOffloads("127.0.0.1:0", gso, false, 0))
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			dst, err := Listen(connWithOffloads("127.0.0.1:0", false, gso, 0))
			if err != nil {
				b.Fatal(err)
			}
			defer dst.Close()
			if src.Offloads().GSO != gso || dst.Offloads().GRO != gso {
				b.Skipf("kernel lacks GSO or GRO: %v, %v", src.Offloads(), dst.Offloads())
			}
			out := make([]Message, msgs)
			in := make([]Message, dst.BatchSize())
			for i := range out {
				out[i] = Message{Buf: make([]byte, segs*size), N: segs * size, Segment: size, Addr: dst.LocalAddr()}
			}
			for i := range in {
				in[i].Buf = make([]byte, 65535)
			}
			b.SetBytes(msgs * segs * size)
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				iters++
				if n, err := src.WriteBatch(out); n != msgs {
					b.Fatalf("WriteBatch = %d, %v", n, err)
				}
				for got := 0; got < msgs*segs; {
					n, err := dst.ReadBatch(in)
					if err != nil {
						b.Fatal(err)
					}
					for _, m := range in[:n] {
						if m.Segment > 0 {
							got += (m.N + m.Segment - 1) / m.Segment
						} else {
							got++
						}
					}
				}
			}
			b.ReportMetric(float64(iters*msgs*segs)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// TestGSOCorrupts: the releases whose GSO output is corrupted (7.0 to
// 7.1.4) and their neighbours, as uname -r spells them.
func TestGSOCorrupts(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    bool
	}{
		{"7.0", true}, {"7.0.0", true}, {"7.0.0-rc1", true}, {"7.0.12-200.fc44.x86_64", true},
		{"7.1", true}, {"7.1.0-rc7", true}, {"7.1.3", true}, {"7.1.4-arch1-1", true},
		{"7.1.5", false}, {"7.1.10", false}, {"7.2.0", false}, {"7.10.1", false}, {"17.0.1", false},
		{"6.18.44-fc-v595", false}, {"6.19", false}, {"8.0.0", false}, {"4.18.0-553.el8_10.x86_64", false},
		{"", false}, {"7", false}, {"7.", false}, {"x7.0.1", false}, {"7.x", false}, {"70.1.1", false},
	} {
		if got := gsoCorrupts(tt.release); got != tt.want {
			t.Errorf("gsoCorrupts(%q) = %v, want %v", tt.release, got, tt.want)
		}
	}
}

// TestListenKernelGSOBug: on a kernel that corrupts GSO output, Listen
// leaves GSO off although asked for, and the offloads say why.
func TestListenKernelGSOBug(t *testing.T) {
	cfg := connWithOffloads("127.0.0.1:0", true, true, 2)
	here := connListenConfig(t, cfg).Offloads().GSO // this kernel's answer
	real := kernelRelease
	t.Cleanup(func() { kernelRelease = real })
	kernelRelease = func() string { return "7.1.2-test" }
	o := connListenConfig(t, cfg).Offloads()
	if o.GSO || o.GSOKernelBug != "7.1.2-test" {
		t.Fatalf("offloads %+v: want GSO off with GSOKernelBug 7.1.2-test", o)
	}
	if s := o.String(); !strings.Contains(s, "gso=off(kernel 7.1.2-test bug)") {
		t.Errorf("String() = %q, want it to name the kernel bug", s)
	}
	kernelRelease = func() string { return "7.1.5" }
	if o := connListenConfig(t, cfg).Offloads(); o.GSOKernelBug != "" || o.GSO != here {
		t.Errorf("on 7.1.5: offloads %+v, want GSO %v as on this kernel", o, here)
	}
}
