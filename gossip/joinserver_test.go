package gossip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/gossip/join"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

// refusedLog records a join.Server's OnRefused calls.
type refusedLog struct {
	mu   sync.Mutex
	list []string // remote address, a space, why
}

func (r *refusedLog) add(remote net.Addr, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, remote.String()+" "+why)
}

func (r *refusedLog) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.list...)
}

// startJoinable starts node i with encryption under the schedule's keys
// for sec now, serving joins with key j on its gossip port.
func startJoinable(t *testing.T, i int, sec, j secret.Secret, refused *refusedLog, timeout time.Duration) *node {
	t.Helper()
	srv := &join.Server{
		Key:       func() secret.Secret { return j },
		Secret:    func() secret.Secret { return sec },
		OnRefused: refused.add,
		Timeout:   timeout,
	}
	primary, _ := sched.Keys(sec, time.Now())
	n, err := startNode(t, i, 0, nil, func(c *Config) {
		c.SecretKey = primary
		c.JoinServer = srv.Serve
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJoinServer: a node with a JoinServer hands its cluster secret to a
// joiner with its token, on its gossip port, refuses the others, and the
// joiner then gossips with it through the same port.
func TestJoinServer(t *testing.T) {
	sec, j, other := mustSecret(t), mustSecret(t), mustSecret(t)
	var refused refusedLog
	member := startJoinable(t, 0, sec, j, &refused, time.Second)
	addr := member.agent.Addr().String()

	for _, tc := range []struct {
		name    string
		tok     join.Token
		want    error // nil: the secret
		refused bool
	}{
		{"right token", join.Token{Key: j, Cluster: sec.Fingerprint()}, nil, false},
		{"wrong key", join.Token{Key: other, Cluster: sec.Fingerprint()}, join.ErrRefused, true},
		{"other cluster", join.Token{Key: j, Cluster: other.Fingerprint()}, join.ErrWrongCluster, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(refused.get())
			got, err := join.Request(context.Background(), addr, tc.tok)
			switch {
			case tc.want == nil && (err != nil || got != sec):
				t.Fatalf("Request = %v, %v; want %v", got, err, sec)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Request = %v, %v; want an error wrapping %q", got, err, tc.want)
			}
			if !tc.refused {
				if rs := refused.get(); len(rs) != before {
					t.Fatalf("refused: %q", rs[before:])
				}
				return
			}
			// OnRefused runs after the stream is closed, which Request may
			// have seen first.
			waitFor(t, 5*time.Second, "OnRefused", func() error {
				rs := refused.get()
				if len(rs) != before+1 {
					return errors.New("not called")
				}
				if !strings.HasPrefix(rs[before], "127.0.0.1:") || !strings.Contains(rs[before], "wrong join key") {
					return errors.New("called with " + rs[before])
				}
				return nil
			})
		})
	}

	// The joiner starts with the secret it obtained and gossips through
	// the member's transport: a TCP push/pull to join, then bindings.
	got, err := join.Request(context.Background(), addr, join.Token{Key: j, Cluster: sec.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	primary, _ := sched.Keys(got, time.Now())
	joiner, err := startNode(t, 1, 0, []string{addr}, func(c *Config) { c.SecretKey = primary })
	if err != nil {
		t.Fatalf("joiner: %v", err)
	}
	nodes := []*node{member, joiner}
	owners := announceAll(t, nodes, 2)
	waitFor(t, settle, "member and joiner converge", func() error { return converged(nodes, owners) })
}

// TestJoinServerNone: without a JoinServer a node closes join streams, and
// Request says there is no join service.
func TestJoinServerNone(t *testing.T) {
	sec := mustSecret(t)
	primary, _ := sched.Keys(sec, time.Now())
	n, err := startNode(t, 0, 0, nil, func(c *Config) { c.SecretKey = primary })
	if err != nil {
		t.Fatal(err)
	}
	_, err = join.Request(context.Background(), n.agent.Addr().String(), join.Token{Key: mustSecret(t), Cluster: sec.Fingerprint()})
	if !errors.Is(err, join.ErrNotJoinService) {
		t.Fatalf("Request = %v, want ErrNotJoinService", err)
	}
}

// TestJoinStreamDeadline: a stream that sends the magic byte and nothing
// more is cut by the join server's timeout.
func TestJoinStreamDeadline(t *testing.T) {
	var refused refusedLog
	n := startJoinable(t, 0, mustSecret(t), mustSecret(t), &refused, 200*time.Millisecond)
	c := dial(t, n.agent.Addr().String(), []byte{join.Magic})
	start := time.Now()
	if err := closedByPeer(c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("closed after %v, before the 200ms timeout", d)
	}
	waitFor(t, 5*time.Second, "OnRefused", func() error {
		if rs := refused.get(); len(rs) != 1 || !strings.HasSuffix(rs[0], "incomplete request: timed out") {
			return errors.New(strings.Join(rs, "; "))
		}
		return nil
	})
}

// TestJoinStreamClose: Close cuts a join stream in flight, well before the
// join server's timeout, and leaves no goroutine of the transport or the
// join server behind.
func TestJoinStreamClose(t *testing.T) {
	var refused refusedLog
	n := startJoinable(t, 0, mustSecret(t), mustSecret(t), &refused, time.Minute)
	c := dial(t, n.agent.Addr().String(), []byte{join.Magic})
	waitFor(t, 5*time.Second, "join server reading", func() error {
		if !serving() {
			return errors.New("not yet")
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- n.agent.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked 10s by a join stream")
	}
	if err := closedByPeer(c); err != nil {
		t.Fatal(err)
	}
	noMuxGoroutines(t)
}

// serving reports whether a join.Server is running an exchange.
func serving() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "gossip/join.(*Server).Serve")
}

// freePort returns a TCP and UDP port on 127.0.0.1 that was free a moment
// ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", ln.Addr().String()); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestTransportPorts: with the transport built here, the agent binds and
// advertises the port memberlist would (the configured one, or the one the
// kernel picked), and serves joins and gossip on it.
func TestTransportPorts(t *testing.T) {
	for _, tc := range []struct {
		name string
		port int // 0: the kernel picks
	}{
		{"kernel port", 0},
		{"fixed port", freePort(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec, j := mustSecret(t), mustSecret(t)
			srv := &join.Server{Key: func() secret.Secret { return j }, Secret: func() secret.Secret { return sec }}
			n, err := startNode(t, 0, tc.port, nil, func(c *Config) { c.JoinServer = srv.Serve })
			if err != nil {
				t.Fatal(err)
			}
			addr := n.agent.Addr()
			if addr.Addr().String() != "127.0.0.1" || addr.Port() == 0 || tc.port != 0 && int(addr.Port()) != tc.port {
				t.Fatalf("advertised %v, want 127.0.0.1 and port %d", addr, tc.port)
			}
			if got, err := join.Request(context.Background(), addr.String(), join.Token{Key: j, Cluster: sec.Fingerprint()}); err != nil || got != sec {
				t.Fatalf("Request on the advertised port = %v, %v", got, err)
			}
			// A join address without a port means this node's own port
			// (memberlist's BindPort, which must be the port picked).
			if _, err := startNode(t, 1, int(addr.Port()), nil, func(c *Config) { c.BindAddr = netip.MustParseAddr("127.0.0.2") }); err != nil {
				t.Skipf("127.0.0.2 unusable here: %v", err)
			}
			if _, err := n.agent.Join([]string{"127.0.0.2"}); err != nil {
				t.Fatalf("join 127.0.0.2 without a port: %v", err)
			}
		})
	}
}

// TestNewFailureReleasesTransport: if memberlist does not start, New shuts
// down the transport it built, freeing the port.
func TestNewFailureReleasesTransport(t *testing.T) {
	port := freePort(t)
	_, err := startNode(t, 0, port, nil, func(c *Config) {
		c.Tune = func(mc *memberlist.Config) { mc.ProtocolVersion = memberlist.ProtocolVersionMax + 1 }
	})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("New = %v, want a protocol version error", err)
	}
	noMuxGoroutines(t)
	if _, err := startNode(t, 0, port, nil); err != nil {
		t.Fatalf("port %d not released: %v", port, err)
	}
}
