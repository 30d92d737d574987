package gossip

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/gossip/join"
)

// startMux starts a muxTransport on a free loopback port, shut down when
// the test ends, and returns it with its address.
func startMux(t *testing.T, joinServer func(net.Conn), peek time.Duration) (*muxTransport, string) {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	mt := newMuxTransport(nt, joinServer, peek)
	t.Cleanup(func() {
		mt.Shutdown()
		noMuxGoroutines(t)
	})
	return mt, net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))
}

// noMuxGoroutines fails the test if goroutines of a muxTransport or a
// join.Server are still running a few seconds on. (TestMain's check looks
// for memberlist and the Agent only.)
func noMuxGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "gossip.(*muxTransport)") || strings.Contains(g, "gossip/join.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaked goroutines:\n%s", strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dial connects to addr and writes b.
func dial(t *testing.T, addr string, b []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}

// readN reads n bytes from c within 5 seconds.
func readN(c net.Conn, n int) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

// closedByPeer reports whether c's peer closed it within 5 seconds,
// sending nothing.
func closedByPeer(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		return errors.New("peer sent data")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("peer did not close the stream in 5s")
	}
	return nil // EOF, or reset
}

// TestMuxTransportRoutes: streams go to memberlist or to the join server
// by their first byte, which each reads intact.
func TestMuxTransportRoutes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		send     []byte
		toJoin   bool
		noServer bool
	}{
		{"push/pull", []byte{6, 1, 2, 3}, false, false},
		{"encrypted", []byte{10, 0, 0, 0, 9}, false, false},
		{"label", []byte{244, 3, 'a', 'b', 'c'}, false, false},
		{"one byte", []byte{0}, false, false},
		{"join", []byte{join.Magic, join.Version, 7, 8}, true, false},
		{"join, no server", []byte{join.Magic, join.Version}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served := make(chan []byte, 1)
			var server func(net.Conn)
			if !tc.noServer {
				server = func(c net.Conn) {
					b, err := readN(c, len(tc.send))
					if err != nil {
						t.Errorf("join server read: %v", err)
					}
					served <- b
					c.Write([]byte("ok"))
				}
			}
			mt, addr := startMux(t, server, 5*time.Second)
			c := dial(t, addr, tc.send)
			switch {
			case tc.noServer:
				if err := closedByPeer(c); err != nil {
					t.Fatal(err)
				}
			case tc.toJoin:
				if got := <-served; !bytes.Equal(got, tc.send) {
					t.Fatalf("join server read %x, want %x", got, tc.send)
				}
				if got, err := readN(c, 2); err != nil || string(got) != "ok" {
					t.Fatalf("reply %q, %v", got, err)
				}
				if err := closedByPeer(c); err != nil {
					t.Fatalf("after the join server returned: %v", err)
				}
			default:
				var s net.Conn
				select {
				case s = <-mt.StreamCh():
				case <-time.After(5 * time.Second):
					t.Fatal("no stream for memberlist in 5s")
				}
				defer s.Close()
				if got, err := readN(s, len(tc.send)); err != nil || !bytes.Equal(got, tc.send) {
					t.Fatalf("memberlist read %x, %v; want %x", got, err, tc.send)
				}
				if s.RemoteAddr().String() != c.LocalAddr().String() {
					t.Fatalf("stream from %v, want %v", s.RemoteAddr(), c.LocalAddr())
				}
			}
		})
	}
}

// TestMuxTransportSilentStream: a stream that sends nothing is closed at
// the peek deadline, and reaches neither memberlist nor the join server.
func TestMuxTransportSilentStream(t *testing.T) {
	mt, addr := startMux(t, func(net.Conn) { t.Error("join server called") }, 100*time.Millisecond)
	c := dial(t, addr, nil)
	start := time.Now()
	if err := closedByPeer(c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("closed after %v, before the 100ms peek deadline", d)
	}
	select {
	case s := <-mt.StreamCh():
		s.Close()
		t.Fatal("silent stream handed to memberlist")
	default:
	}
}

// TestMuxTransportShutdown: Shutdown closes the streams in flight (one
// being served, one waiting for memberlist, one not yet sorted) and
// returns with no goroutine left (startMux's cleanup checks).
func TestMuxTransportShutdown(t *testing.T) {
	serving := make(chan struct{})
	returned := make(chan struct{})
	mt, addr := startMux(t, func(c net.Conn) {
		close(serving)
		io.Copy(io.Discard, c) // until Shutdown closes c
		close(returned)
	}, 5*time.Second)
	joinC := dial(t, addr, []byte{join.Magic})
	<-serving
	gossipC := dial(t, addr, []byte{6}) // nobody reads StreamCh
	silentC := dial(t, addr, nil)
	// Shutdown must find the two later streams accepted; wait until both
	// are tracked.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mt.mu.Lock()
		n := len(mt.conns)
		mt.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams in flight after 5s, want 3", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- mt.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked 5s")
	}
	<-returned
	for name, c := range map[string]net.Conn{"join": joinC, "gossip": gossipC, "silent": silentC} {
		if err := closedByPeer(c); err != nil {
			t.Errorf("%s stream: %v", name, err)
		}
	}
	if err := mt.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}
