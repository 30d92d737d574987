//go:build linux

package vtep

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovlsw/ovlsw/fdb"
)

// TestJoinGroupLoopback joins a group after Listen on the loopback
// interface, receives what is sent to it, counts references, and stops
// the switch's reader on the last leave.
func TestJoinGroupLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	c := connListen(t, "127.0.0.1:0")
	gj, ok := c.(GroupJoiner)
	if !ok {
		t.Fatal("linux conn is not a GroupJoiner")
	}
	g := netip.MustParseAddr("239.255.77.9")
	r, err := gj.JoinGroup(g, lo.Index, 0)
	if err != nil {
		t.Skip("cannot join a group on lo here:", err)
	}
	if r == nil {
		t.Fatal("first JoinGroup returned no reader")
	}
	if again, err := gj.JoinGroup(g, lo.Index, 0); err != nil || again != nil {
		t.Fatalf("second JoinGroup = %v, %v; want nil, nil", again, err)
	}

	// Send to the group from another socket, looped back on lo.
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rc, err := u.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(lo.Index)})
	})
	if serr != nil {
		t.Skip("no multicast on lo:", serr)
	}
	dst := &net.UDPAddr{IP: g.AsSlice(), Port: int(c.LocalAddr().Port())}
	got := make(chan int, 1)
	go func() {
		msgs := make([]Message, c.BatchSize())
		for i := range msgs {
			msgs[i].Buf = make([]byte, 2048)
		}
		n, err := r.ReadBatch(msgs)
		if err != nil || n == 0 {
			got <- -1
			return
		}
		got <- msgs[0].N
		// Then the reader stays until the last leave closes it.
		for {
			if _, err := r.ReadBatch(msgs); err != nil {
				if errors.Is(err, net.ErrClosed) {
					got <- 0
				} else {
					got <- -2
				}
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	var n int
	for n == 0 {
		if time.Now().After(deadline) {
			t.Skip("nothing sent to the group on lo arrived (no multicast on lo here)")
		}
		if _, err := u.WriteTo([]byte("hello group"), dst); err != nil {
			t.Fatal(err)
		}
		select {
		case n = <-got:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n != len("hello group") {
		t.Fatalf("read %d bytes, want %d", n, len("hello group"))
	}
	if err := gj.LeaveGroup(g); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		t.Fatalf("reader stopped (%d) while a reference is held", v)
	case <-time.After(50 * time.Millisecond):
	}
	if err := gj.LeaveGroup(g); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != 0 {
			t.Fatalf("reader ended with %d, want net.ErrClosed", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader still running after the last leave")
	}
	if err := gj.LeaveGroup(g); err == nil {
		t.Error("LeaveGroup of a group not joined succeeded")
	}
}

// TestSwitchJoinGroupClose: a group joined through the switch starts a
// receive goroutine that Close stops (the race detector and the WaitGroup
// would hang otherwise).
func TestSwitchJoinGroupClose(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	c := connListen(t, "127.0.0.1:0")
	sw, err := New(Config{Conn: c, FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		t.Fatal(err)
	}
	g := netip.MustParseAddr("239.255.77.10")
	if err := sw.JoinGroup(g, lo.Index, 0); err != nil {
		sw.Close()
		t.Skip("cannot join a group on lo here:", err)
	}
	done := make(chan error, 1)
	go func() { done <- sw.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with a joined group")
	}
	if err := sw.JoinGroup(g, lo.Index, 0); err == nil {
		t.Error("JoinGroup after Close succeeded")
	}
}
