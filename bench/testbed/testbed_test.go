package testbed

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Addresses are documentation ranges; they only ever exist inside the
// tests' own namespaces.
var (
	under1 = netip.MustParsePrefix("192.0.2.1/24")
	under2 = netip.MustParsePrefix("192.0.2.2/24")
	over1  = netip.MustParsePrefix("198.51.100.1/24")
	over2  = netip.MustParsePrefix("198.51.100.2/24")
	over3  = netip.MustParsePrefix("198.51.100.3/24")
	v6a    = netip.MustParsePrefix("2001:db8::1/64")
	v6b    = netip.MustParsePrefix("2001:db8::2/64")
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustNetns(t *testing.T, b *Bed, name string) *Netns {
	t.Helper()
	n, err := b.Netns(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// underlay returns two namespaces joined by a veth, 192.0.2.1 and .2.
func underlay(t *testing.T, b *Bed) (h1, h2 *Netns) {
	t.Helper()
	h1, h2 = mustNetns(t, b, "h1"), mustNetns(t, b, "h2")
	if err := b.Veth(h1, "ul0", under1, h2, "ul0", under2, 1500); err != nil {
		t.Fatal(err)
	}
	return h1, h2
}

func TestVethPingAndStream(t *testing.T) {
	t.Parallel()
	b := New(t)
	ctx := testCtx(t)
	h1, h2 := underlay(t, b)
	if err := b.Veth(h1, "v6", v6a, h2, "v6", v6b, 0); err != nil {
		t.Fatal(err)
	}
	if !b.LinkExists(h1, "ul0") || !b.LinkExists(h2, "v6") {
		t.Fatal("veth ends missing")
	}
	if err := h1.Ping(ctx, under2.Addr(), 3); err != nil {
		t.Fatal(err)
	}
	if err := h2.Ping(ctx, v6a.Addr(), 3); err != nil {
		t.Fatal(err)
	}
	if err := TCPStream(ctx, h1, h2, under2.Addr(), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := TCPStream(ctx, h2, h1, v6a.Addr(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := h1.Ping(ctx, netip.MustParseAddr("192.0.2.99"), 1); err == nil {
		t.Fatal("ping to an absent address succeeded")
	}

	// A black hole (frames to a MAC nobody has) must end in an error at
	// the context deadline, not a hang.
	if _, err := h1.Run(ctx, "ip", "neigh", "replace", under2.Addr().String(),
		"lladdr", "02:00:00:00:00:01", "dev", "ul0", "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	if err := TCPStream(short, h1, h2, under2.Addr(), 1<<20); err == nil {
		t.Fatal("TCPStream over a black hole succeeded")
	} else if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("TCPStream over a black hole took %v: %v", d, err)
	}
}

func TestKernelVXLAN(t *testing.T) {
	t.Parallel()
	b := New(t)
	ctx := testCtx(t)
	h1, h2 := underlay(t, b)
	for _, c := range []struct {
		ns          *Netns
		local, peer netip.Prefix
		addr        netip.Prefix
	}{
		{h1, under1, under2, over1},
		{h2, under2, under1, over2},
	} {
		err := KernelVXLAN(c.ns, VXLANOpts{Name: "vx42", VNI: 4242, Local: c.local.Addr(),
			Remotes: []netip.Addr{c.peer.Addr()}, Address: c.addr})
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := h1.Run(ctx, "ip", "-d", "link", "show", "dev", "vx42")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vxlan id 4242", "local 192.0.2.1", "dstport 4789", "nolearning", "mtu 1450"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip -d link show vx42: missing %q in:\n%s", want, out)
		}
	}
	if err := h1.WaitPing(ctx, over2.Addr(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := h1.Ping(ctx, over2.Addr(), 3); err != nil {
		t.Fatal(err)
	}
	if err := TCPStream(ctx, h1, h2, over2.Addr(), 4<<20); err != nil {
		t.Fatal(err)
	}
}

func TestKernelOverlay(t *testing.T) {
	t.Parallel()
	b := New(t)
	ctx := testCtx(t)
	h1, h2 := underlay(t, b)
	c1, c2, c3 := mustNetns(t, b, "c1"), mustNetns(t, b, "c2"), mustNetns(t, b, "c3")
	opts := func(local, peer, addr netip.Prefix) VXLANOpts {
		return VXLANOpts{Name: "vx42", VNI: 4242, Local: local.Addr(), Remotes: []netip.Addr{peer.Addr()}, Address: addr}
	}
	for _, c := range []struct {
		host, ctr *Netns
		o         VXLANOpts
	}{
		{h1, c1, opts(under1, under2, over1)},
		{h2, c2, opts(under2, under1, over2)},
		{h1, c3, opts(under1, under2, over3)}, // second container, same bridge
	} {
		if err := KernelOverlay(c.host, c.ctr, c.o); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.WaitPing(ctx, over2.Addr(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c3.Ping(ctx, over1.Addr(), 3); err != nil { // bridged locally
		t.Fatal(err)
	}
	if err := c2.Ping(ctx, over3.Addr(), 3); err != nil {
		t.Fatal(err)
	}
	if err := TCPStream(ctx, c1, c2, over2.Addr(), 4<<20); err != nil {
		t.Fatal(err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	RequireRoot(t)
	ctx := testCtx(t)
	b, err := NewStandalone("ovtc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // before anything is created
	a, z := mustNetns(t, b, "a"), mustNetns(t, b, "z")
	// Distinctive names, so the root-namespace check below means something.
	vethA, vethZ := "ovtc"+strconv.Itoa(os.Getpid()%1e6)+"a", "ovtc"+strconv.Itoa(os.Getpid()%1e6)+"z"
	if err := b.Veth(a, vethA, under1, z, vethZ, under2, 0); err != nil {
		t.Fatal(err)
	}
	if !b.LinkExists(a, vethA) || b.LinkExists(nil, vethA) {
		t.Fatalf("veth %s should exist in %s and not in the root namespace", vethA, a.Name)
	}
	sleeper, err := a.Start(ctx, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	// Ignores SIGTERM (the ignore is inherited by sleep): Close must SIGKILL.
	stubborn, err := z.Start(context.Background(), "sh", "-c", `trap "" TERM; echo ready; exec sleep 1000`)
	if err != nil {
		t.Fatal(err)
	}
	if !Poll(ctx, 10*time.Second, func() bool { return strings.Contains(stubborn.Output(), "ready") }) {
		t.Fatalf("stubborn process never got ready: %q", stubborn.Output())
	}
	// Escapes its process group; only the namespace sweep can find it.
	if _, err := a.Run(ctx, "sh", "-c", "setsid -f sleep 1000 >/dev/null 2>&1"); err != nil {
		t.Fatal(err)
	}
	// A Run still in progress when Close starts, as in the harness when
	// Ctrl-C arrives during a measurement.
	runErr := make(chan error, 1)
	go func() {
		_, err := a.Run(context.Background(), "sleep", "1000")
		runErr <- err
	}()
	var pids []string
	if !Poll(ctx, 10*time.Second, func() bool {
		out, _ := runUntracked("ip", "netns", "pids", a.Name)
		pids = strings.Fields(out)
		return len(pids) == 3
	}) {
		t.Fatalf("ip netns pids %s = %q, want the sleeper, the escaped sleep and the Run", a.Name, pids)
	}

	// Close twice at once, as a Ctrl-C handler racing the main path might.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.Close() }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("third Close: %v", err)
	}

	select {
	case err := <-runErr:
		if err == nil {
			t.Error("Run interrupted by Close returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Error("Run still blocked after Close")
	}
	for _, p := range []*Proc{sleeper, stubborn} {
		if !p.Exited() {
			t.Errorf("process %d still running after Close", p.Pid())
		}
	}
	for _, f := range pids {
		pid, _ := strconv.Atoi(f)
		if alive(pid) {
			t.Errorf("process %d from netns %s survived Close", pid, a.Name)
		}
	}
	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(list), b.ID()) {
		t.Errorf("ip netns list still shows %s:\n%s", b.ID(), list)
	}
	for _, n := range []*Netns{a, z} {
		if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: stat after Close: %v", n.Path, err)
		}
	}
	for _, name := range []string{vethA, vethZ} {
		if b.LinkExists(nil, name) {
			t.Errorf("veth %s left in the root namespace", name)
		}
	}
	if _, err := b.Netns("late"); !errors.Is(err, ErrClosed) {
		t.Errorf("Netns after Close: err = %v, want ErrClosed", err)
	}
	if _, err := a.Start(ctx, "true"); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: err = %v, want ErrClosed", err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestProc(t *testing.T) {
	t.Parallel()
	b := New(t)
	ctx := testCtx(t)
	n := mustNetns(t, b, "p")

	p, err := n.Start(ctx, "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := p.Wait(10 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if out := p.Output(); !strings.Contains(out, "hello") || !strings.Contains(out, "oops") {
		t.Errorf("Output = %q, want stdout and stderr", out)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}

	p, err = n.Start(ctx, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(50 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Wait on a sleeping process = %v, want os.ErrDeadlineExceeded", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Errorf("Wait after SIGTERM = %v, want killed by signal", err)
	}

	if out, err := n.Run(ctx, "ip", "-o", "link"); err != nil || !strings.Contains(out, "lo:") {
		t.Errorf("Run(ip -o link) = %q, %v", out, err)
	}
	_, err = n.Run(ctx, "sh", "-c", "echo to-stderr >&2; exit 1")
	if err == nil || !strings.Contains(err.Error(), "to-stderr") || !strings.Contains(err.Error(), "ip netns exec "+n.Name) {
		t.Errorf("Run error = %v, want command line and stderr", err)
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	b := New(t)
	n := mustNetns(t, b, "do")
	want, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	err = n.Do(func() error {
		got, err := netns.Get()
		if err != nil {
			return err
		}
		defer got.Close()
		if !got.Equal(want) {
			return errors.New("Do ran outside the namespace")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Do with Goexit returned nil")
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recover() = %v, want boom", r)
			}
		}()
		_ = n.Do(func() error { panic("boom") })
	}()
}

func TestNames(t *testing.T) {
	t.Parallel()
	b := New(t)
	b2 := New(t)
	if b.ID() == b2.ID() || !strings.Contains(b.ID(), strconv.Itoa(os.Getpid())) {
		t.Errorf("IDs %q and %q: want distinct and containing the pid", b.ID(), b2.ID())
	}
	if _, err := NewStandalone("bad/prefix"); err == nil {
		t.Error("NewStandalone accepted a '/'")
	}
	n := mustNetns(t, b, "x")
	if _, err := b.Netns("x"); err == nil {
		t.Error("duplicate netns name accepted")
	}
	if _, err := b2.Netns("x"); err != nil {
		t.Errorf("same short name in another bed: %v", err)
	}
	if err := b.Veth(n, "sixteen-chars-xx", netip.Prefix{}, n, "b", netip.Prefix{}, 0); err == nil {
		t.Error("16-byte interface name accepted")
	}
	if err := KernelVXLAN(n, VXLANOpts{Name: "vx", VNI: 1 << 24, Local: under1.Addr()}); err == nil {
		t.Error("25-bit VNI accepted")
	}
}
