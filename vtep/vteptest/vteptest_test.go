package vteptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/vtep"
)

var (
	addrA = netip.MustParseAddrPort("192.0.2.1:4789")
	addrB = netip.MustParseAddrPort("192.0.2.2:4789")
	addrC = netip.MustParseAddrPort("192.0.2.3:4789")
)

func msg(s string, to netip.AddrPort) vtep.Message {
	return vtep.Message{Buf: []byte(s), N: len(s), Addr: to}
}

func bufs(n, size int) []vtep.Message {
	msgs := make([]vtep.Message, n)
	for i := range msgs {
		msgs[i].Buf = make([]byte, size)
	}
	return msgs
}

// readAll reads until want datagrams arrived or 10 s passed, and returns
// them as "from:data" strings.
func readAll(t *testing.T, c *Conn, want int) []string {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()
	var got []string
	msgs := bufs(batchSize, 2048)
	for len(got) < want {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d: %v", len(got), want, err)
		}
		for _, m := range msgs[:n] {
			got = append(got, fmt.Sprintf("%v:%s", m.Addr, m.Buf[:m.N]))
		}
	}
	return got
}

func TestExchange(t *testing.T) {
	nw := NewNetwork()
	a, b, c := nw.Listen(addrA), nw.Listen(addrB), nw.Listen(addrC)
	if n, err := a.WriteBatch([]vtep.Message{msg("a1", addrB), msg("a2", addrB), msg("ac", addrC)}); n != 3 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 3, nil", n, err)
	}
	if n, err := c.WriteBatch([]vtep.Message{msg("c1", addrB)}); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 1, nil", n, err)
	}
	want := []string{addrA.String() + ":a1", addrA.String() + ":a2", addrC.String() + ":c1"}
	if got := readAll(t, b, 3); !slices.Equal(got, want) {
		t.Errorf("b got %q, want %q", got, want)
	}
	if got := readAll(t, c, 1); got[0] != addrA.String()+":ac" {
		t.Errorf("c got %q", got)
	}
	if d := nw.drops(); d != (dropCounts{}) {
		t.Errorf("drops = %+v, want none", d)
	}
}

func TestWriteCopies(t *testing.T) {
	nw := NewNetwork()
	a, b := nw.Listen(addrA), nw.Listen(addrB)
	buf := []byte("before")
	a.WriteBatch([]vtep.Message{{Buf: buf, N: len(buf), Addr: addrB}})
	copy(buf, "AFTER!")
	if got := readAll(t, b, 1)[0]; got != addrA.String()+":before" {
		t.Errorf("got %q: the sender's buffer was not copied", got)
	}
}

func TestReadBatch(t *testing.T) {
	for _, tt := range []struct {
		name        string
		queued, buf int // datagrams queued, messages passed to ReadBatch
		want        int
	}{
		{"one", 1, 8, 1},
		{"what is queued", 5, 8, 5},
		{"up to len(msgs)", 10, 4, 4},
		{"up to batchSize", batchSize + 10, batchSize + 10, batchSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nw := NewNetwork()
			c := nw.Listen(addrA)
			for i := range tt.queued {
				nw.Send(addrB, addrA, []byte{byte(i)})
			}
			if n, err := c.ReadBatch(bufs(tt.buf, 16)); n != tt.want || err != nil {
				t.Errorf("ReadBatch = %d, %v; want %d, nil", n, err, tt.want)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	nw := NewNetwork()
	c := nw.Listen(addrA)
	nw.Send(addrB, addrA, []byte("0123456789"))
	msgs := bufs(1, 4)
	if n, err := c.ReadBatch(msgs); n != 1 || err != nil || string(msgs[0].Buf[:msgs[0].N]) != "0123" {
		t.Errorf("ReadBatch = %d, %v, %q; want 1, nil, \"0123\"", n, err, msgs[0].Buf[:msgs[0].N])
	}
}

func TestDrops(t *testing.T) {
	nw := NewNetwork()
	a, b := nw.Listen(addrA), nw.Listen(addrB)
	// Unknown destination: sent as far as the sender knows, then dropped.
	if n, err := a.WriteBatch([]vtep.Message{msg("x", addrC)}); n != 1 || err != nil {
		t.Errorf("WriteBatch to nobody = %d, %v; want 1, nil", n, err)
	}
	// Overfill b's queue: WriteBatch must not block.
	batch := make([]vtep.Message, queueLen+3)
	for i := range batch {
		batch[i] = msg("y", addrB)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := a.WriteBatch(batch); n != len(batch) || err != nil {
			t.Errorf("WriteBatch = %d, %v; want %d, nil", n, err, len(batch))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WriteBatch blocked on a full queue")
	}
	if ok := nw.Send(addrC, addrB, []byte("z")); ok {
		t.Error("Send to a full queue reported success")
	}
	if got, want := nw.drops(), (dropCounts{NoListener: 1, QueueFull: 4}); got != want {
		t.Errorf("drops = %+v, want %+v", got, want)
	}
	if got := len(readAll(t, b, queueLen)); got != queueLen {
		t.Errorf("read %d, want %d", got, queueLen)
	}
}

func TestWriteInvalid(t *testing.T) {
	nw := NewNetwork()
	a, b := nw.Listen(addrA), nw.Listen(addrB)
	bad := []vtep.Message{
		{Buf: []byte("x"), N: 1}, // no address
		{Buf: []byte("x"), N: 1, Addr: netip.AddrPortFrom(addrB.Addr(), 0)}, // port 0
		{Buf: []byte("x"), N: 2, Addr: addrB},                               // N past Buf
	}
	if n, err := a.WriteBatch(bad); n != 0 || !errors.Is(err, errInvalid) {
		t.Errorf("WriteBatch(bad) = %d, %v; want 0, an error", n, err)
	}
	if n, err := a.WriteBatch(append(bad, msg("ok", addrB))); n != 1 || err != nil {
		t.Errorf("WriteBatch(bad+good) = %d, %v; want 1, nil", n, err)
	}
	if got := readAll(t, b, 1)[0]; got != addrA.String()+":ok" {
		t.Errorf("got %q", got)
	}
}

func TestSendAndTap(t *testing.T) {
	nw := NewNetwork()
	a := nw.Listen(addrA)
	tap := nw.Tap(addrC)
	if nw.Tap(addrC) != tap {
		t.Error("second Tap returned another channel")
	}
	from := netip.MustParseAddrPort("198.51.100.9:1234")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(addrA.Addr().As16()), addrA.Port())
	if !nw.Send(from, mapped, []byte("injected")) {
		t.Fatal("Send to a v4-mapped address of a Conn failed")
	}
	if got := readAll(t, a, 1)[0]; got != from.String()+":injected" {
		t.Errorf("got %q", got)
	}
	a.WriteBatch([]vtep.Message{msg("to tap", addrC)})
	select {
	case d := <-tap:
		if d.From != addrA || d.To != addrC || string(d.Data) != "to tap" {
			t.Errorf("tap got %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing on the tap")
	}
}

func TestListen(t *testing.T) {
	nw := NewNetwork()
	wild := netip.AddrPortFrom(addrA.Addr(), 0)
	c1, c2 := nw.Listen(wild), nw.Listen(wild)
	if c1.LocalAddr().Port() == 0 || c1.LocalAddr() == c2.LocalAddr() {
		t.Errorf("port 0 gave %v and %v, want two distinct ports", c1.LocalAddr(), c2.LocalAddr())
	}
	if c1.BatchSize() != batchSize {
		t.Errorf("BatchSize = %d, want %d", c1.BatchSize(), batchSize)
	}
	for _, tt := range []struct {
		name string
		fn   func()
	}{
		{"bound twice", func() { nw.Listen(c1.LocalAddr()) }},
		{"invalid", func() { nw.Listen(netip.AddrPort{}) }},
		{"where a tap is", func() { nw.Tap(addrC); nw.Listen(addrC) }},
		{"tap where a conn is", func() { nw.Tap(c1.LocalAddr()) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.fn()
		})
	}
	c1.Close()
	nw.Listen(c1.LocalAddr()).Close() // free again after Close
}

func TestClose(t *testing.T) {
	nw := NewNetwork()
	a, b := nw.Listen(addrA), nw.Listen(addrB)
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadBatch(bufs(1, 16))
		done <- err
	}()
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadBatch after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.WriteBatch([]vtep.Message{msg("x", addrA)}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
	a.WriteBatch([]vtep.Message{msg("x", addrB)})
	if got := nw.drops().NoListener; got != 1 {
		t.Errorf("NoListener drops = %d after writing to a closed Conn, want 1", got)
	}
}

func TestWriteSegmented(t *testing.T) {
	nw := NewNetwork()
	a, b := nw.Listen(addrA), nw.Listen(addrB)
	tap := nw.Tap(addrC)
	seg := func(s string, size int, to netip.AddrPort) vtep.Message {
		m := msg(s, to)
		m.Segment = size
		return m
	}
	msgs := []vtep.Message{
		seg("aaabbbcc", 3, addrB), // the last shorter
		seg("ddeeff", 2, addrB),   // all the same size
		seg("g", 4, addrB),        // one short segment
		msg("plain", addrB),
		seg("hhhii", 3, addrC), // to a tap
	}
	if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(msgs))
	}
	var want []string
	for _, s := range []string{"aaa", "bbb", "cc", "dd", "ee", "ff", "g", "plain"} {
		want = append(want, addrA.String()+":"+s)
	}
	if got := readAll(t, b, len(want)); !slices.Equal(got, want) {
		t.Errorf("b got %q, want %q", got, want)
	}
	for _, s := range []string{"hhh", "ii"} {
		if d := <-tap; string(d.Data) != s || d.From != addrA {
			t.Errorf("tap got %+v, want %q from %v", d, s, addrA)
		}
	}
	if got := a.Offloads(); got != (vtep.ConnOffloads{GSO: true}) {
		t.Errorf("Offloads = %+v, want GSO only", got)
	}

	for _, tt := range []struct {
		name string
		m    vtep.Message
	}{
		{"negative segment", seg("x", -1, addrB)},
		{"too many segments", seg(string(make([]byte, vtep.MaxSegments+1)), 1, addrB)},
		{"too many bytes", seg(string(make([]byte, vtep.MaxSegmentedPayload+1)), 1500, addrB)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if n, err := a.WriteBatch([]vtep.Message{tt.m, msg("ok", addrB)}); n != 1 || err != nil {
				t.Errorf("WriteBatch(bad, good) = %d, %v; want 1, nil", n, err)
			}
			if n, err := a.WriteBatch([]vtep.Message{tt.m}); n != 0 || !errors.Is(err, errInvalid) {
				t.Errorf("WriteBatch(bad) = %d, %v; want 0, an error", n, err)
			}
			if got := readAll(t, b, 1); got[0] != addrA.String()+":ok" {
				t.Errorf("got %q", got)
			}
		})
	}
	// The most a message may carry goes.
	most := seg(string(make([]byte, vtep.MaxSegmentedPayload)), 1024, addrB)
	if n, err := a.WriteBatch([]vtep.Message{most}); n != 1 || err != nil {
		t.Errorf("WriteBatch(64 segments, 65507 bytes) = %d, %v; want 1, nil", n, err)
	}
	if got := len(readAll(t, b, vtep.MaxSegments)); got != vtep.MaxSegments {
		t.Errorf("got %d datagrams, want %d", got, vtep.MaxSegments)
	}
}

func TestGRO(t *testing.T) {
	type message struct {
		from    netip.AddrPort
		data    string
		segment int
	}
	ones := func(n int) string { return string(slices.Repeat([]byte{'1'}, n)) }
	for _, tt := range []struct {
		name string
		sent []Datagram // From and Data
		buf  int
		want []message
	}{
		{
			name: "same size, then a shorter last",
			sent: []Datagram{{From: addrB, Data: []byte("aaaa")}, {From: addrB, Data: []byte("bbbb")}, {From: addrB, Data: []byte("cc")}, {From: addrB, Data: []byte("dddd")}},
			buf:  64,
			want: []message{{addrB, "aaaabbbbcc", 4}, {addrB, "dddd", 0}},
		},
		{
			name: "senders are not mixed",
			sent: []Datagram{{From: addrB, Data: []byte("aaaa")}, {From: addrC, Data: []byte("bbbb")}, {From: addrC, Data: []byte("cccc")}, {From: addrB, Data: []byte("dddd")}},
			buf:  64,
			want: []message{{addrB, "aaaa", 0}, {addrC, "bbbbcccc", 4}, {addrB, "dddd", 0}},
		},
		{
			name: "a longer datagram starts a message",
			sent: []Datagram{{From: addrB, Data: []byte("aa")}, {From: addrB, Data: []byte("bbbb")}, {From: addrB, Data: []byte("cccc")}},
			buf:  64,
			want: []message{{addrB, "aa", 0}, {addrB, "bbbbcccc", 4}},
		},
		{
			name: "up to the buffer",
			sent: []Datagram{{From: addrB, Data: []byte("aaaa")}, {From: addrB, Data: []byte("bbbb")}, {From: addrB, Data: []byte("cccc")}},
			buf:  10,
			want: []message{{addrB, "aaaabbbb", 4}, {addrB, "cccc", 0}},
		},
		{
			name: "up to MaxSegments",
			sent: slices.Repeat([]Datagram{{From: addrB, Data: []byte("1")}}, vtep.MaxSegments+2),
			buf:  1024,
			want: []message{{addrB, ones(vtep.MaxSegments), 1}, {addrB, "11", 1}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nw := NewNetwork()
			a := nw.Listen(addrA)
			a.setGRO(true)
			if !a.Offloads().GRO {
				t.Error("Offloads().GRO off after setGRO(true)")
			}
			for _, d := range tt.sent {
				nw.Send(d.From, addrA, d.Data)
			}
			var got []message
			msgs := bufs(1, tt.buf) // one at a time: what was not merged waits
			for len(got) < len(tt.want) {
				if n, err := a.ReadBatch(msgs); n != 1 || err != nil {
					t.Fatalf("ReadBatch = %d, %v", n, err)
				}
				got = append(got, message{msgs[0].Addr, string(msgs[0].Buf[:msgs[0].N]), msgs[0].Segment})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			// All of it in one ReadBatch comes out the same.
			for _, d := range tt.sent {
				nw.Send(d.From, addrA, d.Data)
			}
			msgs = bufs(batchSize, tt.buf)
			n, err := a.ReadBatch(msgs)
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, m := range msgs[:n] {
				got = append(got, message{m.Addr, string(m.Buf[:m.N]), m.Segment})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("in one batch: got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Off again: one datagram a message.
	nw := NewNetwork()
	a := nw.Listen(addrA)
	a.setGRO(true)
	a.setGRO(false)
	nw.Send(addrB, addrA, []byte("aa"))
	nw.Send(addrB, addrA, []byte("bb"))
	if got, want := readAll(t, a, 2), []string{addrB.String() + ":aa", addrB.String() + ":bb"}; !slices.Equal(got, want) {
		t.Errorf("with GRO off: got %q, want %q", got, want)
	}
}
