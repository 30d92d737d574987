// Namespaces and links: creating and deleting namespaces, veth pairs,
// addresses, and running Go code inside a namespace (Do).

package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// A Netns is a network namespace created by a Bed. It is deleted, with
// every link in it and every process still running in it, when the Bed is
// closed.
type Netns struct {
	// Name is the full namespace name as `ip netns list` shows it:
	// <prefix><pid>-<bed counter>-<name>.
	Name string
	// Path is the namespace's bind mount, /run/netns/<Name>.
	Path string

	bed *Bed
}

// Netns creates a namespace `ip netns add <bed ID>-<name>` and brings its
// loopback up. name may hold letters, digits, '-' and '_' and must be unique
// within the Bed; it is a namespace name, so the 15-byte limit of interface
// names does not apply.
func (b *Bed) Netns(name string) (*Netns, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("testbed: netns name %q: want 1-32 of [A-Za-z0-9_-]", name)
	}
	full := b.id + "-" + name
	n := &Netns{Name: full, Path: filepath.Join("/run/netns", full), bed: b}

	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, ErrClosed
	case b.nsNames[name]:
		b.mu.Unlock()
		return nil, fmt.Errorf("testbed: netns %q already exists in this bed", name)
	}
	b.nsNames[name] = true
	b.cleanups = append(b.cleanups, cleanup{what: "netns " + full, fn: n.remove})
	b.mu.Unlock()

	if _, err := b.setup("ip", "netns", "add", full); err != nil {
		return nil, err
	}
	if _, err := b.setup("ip", "-n", full, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// remove kills every process left in the namespace, then deletes it. It is
// a no-op if the namespace was never created.
func (n *Netns) remove() error {
	if _, err := os.Stat(n.Path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	killErr := n.killAll()
	_, delErr := runUntracked("ip", "netns", "del", n.Name)
	return errors.Join(killErr, delErr)
}

// killAll SIGKILLs every process whose network namespace is n (other than
// this one, whose main thread may be inside n during a Do) until none is
// left. This catches processes that left the process group the Bed knows,
// and a process left in n would keep the namespace alive after deletion.
func (n *Netns) killAll() error {
	self := os.Getpid()
	var left []int
	var lastErr error
	ok := Poll(context.Background(), killWait, func() bool {
		out, err := runUntracked("ip", "netns", "pids", n.Name)
		if err != nil {
			lastErr = err
			return false
		}
		left = left[:0]
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == self {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			left = append(left, pid)
		}
		return len(left) == 0
	})
	switch {
	case ok:
		return nil
	case len(left) > 0:
		return fmt.Errorf("processes %v still in netns %s after SIGKILL", left, n.Name)
	default:
		return lastErr
	}
}

// Veth creates a veth pair with end aIf in namespace a and end bIf in
// namespace bns, adds the addresses (an invalid netip.Prefix means none;
// IPv6 addresses skip duplicate address detection so they are usable at
// once), sets the MTU (0 leaves the kernel default of 1500) and brings both
// ends up. The pair is created directly in the two namespaces, so the names
// only need to be unique there and nothing ever appears in the root
// namespace; it goes away when either namespace is deleted.
func (b *Bed) Veth(a *Netns, aIf string, aAddr netip.Prefix, bns *Netns, bIf string, bAddr netip.Prefix, mtu int) error {
	for _, n := range []*Netns{a, bns} {
		if n == nil || n.bed != b {
			return errors.New("testbed: Veth: namespace is nil or belongs to another bed")
		}
	}
	for _, name := range []string{aIf, bIf} {
		if err := checkIfName(name); err != nil {
			return err
		}
	}
	if mtu < 0 {
		return fmt.Errorf("testbed: Veth: mtu %d < 0", mtu)
	}
	var mtuArgs []string
	if mtu > 0 {
		mtuArgs = []string{"mtu", strconv.Itoa(mtu)}
	}
	argv := []string{"ip", "link", "add", aIf, "netns", a.Name}
	argv = append(argv, mtuArgs...)
	argv = append(argv, "type", "veth", "peer", "name", bIf, "netns", bns.Name)
	argv = append(argv, mtuArgs...)
	if _, err := b.setup(argv...); err != nil {
		return err
	}
	if err := a.linkUp(aIf, aAddr); err != nil {
		return err
	}
	return bns.linkUp(bIf, bAddr)
}

// linkUp adds addr to dev (if addr is valid) and sets dev up.
func (n *Netns) linkUp(dev string, addr netip.Prefix) error {
	if addr.IsValid() {
		argv := []string{"ip", "-n", n.Name, "addr", "add", addr.String(), "dev", dev}
		if addr.Addr().Is6() {
			argv = append(argv, "nodad")
		}
		if _, err := n.bed.setup(argv...); err != nil {
			return err
		}
	}
	_, err := n.bed.setup("ip", "-n", n.Name, "link", "set", "dev", dev, "up")
	return err
}

// checkIfName rejects names the kernel would refuse as interface names.
func checkIfName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("testbed: interface name %q: want 1-15 bytes, no '/', ':' or space", name)
	}
	return nil
}

// LinkExists reports whether interface name exists in namespace ns, or in
// the root namespace if ns is nil. It works after Close, so tests can check
// that nothing was left behind; any error counts as "does not exist".
func (b *Bed) LinkExists(ns *Netns, name string) bool {
	argv := []string{"ip", "-o", "link", "show", "dev", name}
	if ns != nil {
		argv = []string{"ip", "-n", ns.Name, "-o", "link", "show", "dev", name}
	}
	_, err := runUntracked(argv...)
	return err == nil
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// Sockets fn creates belong to the namespace for their whole life and may be
// used from any goroutine afterwards; goroutines fn starts do not run in
// the namespace. fn runs on its own goroutine, so it must not call
// t.FailNow, t.Fatal or t.Skip (Do reports that as an error); a panic in fn
// is re-raised in the caller. The thread is returned to the scheduler only
// if switching it back succeeded; otherwise it is discarded.
func (n *Netns) Do(fn func() error) error {
	type result struct {
		err      error
		pv       any
		panicked bool
		goexit   bool
	}
	done := make(chan result, 1)
	go func() {
		res := result{goexit: true} // cleared when fn returns or panics
		defer func() { done <- res }()

		// No UnlockOSThread until the thread is back where it was: a
		// goroutine that exits while locked takes its thread with it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("testbed: Do: current netns: %w", err)}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(n.Path)
		if err != nil {
			runtime.UnlockOSThread()
			res = result{err: fmt.Errorf("testbed: Do: open %s: %w", n.Path, err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread() // setns failed: still in orig
			res = result{err: fmt.Errorf("testbed: Do: enter %s: %w", n.Name, err)}
			return
		}

		func() {
			defer func() {
				if r := recover(); r != nil {
					res.pv, res.panicked, res.goexit = r, true, false
				}
			}()
			res.err = fn()
			res.goexit = false
		}()

		if err := netns.Set(orig); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("testbed: Do: leave %s (thread discarded): %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
	}()

	res := <-done
	switch {
	case res.panicked:
		panic(res.pv)
	case res.goexit:
		return errors.New("testbed: Do: fn called runtime.Goexit (t.FailNow, t.Fatal or t.Skip inside Do)")
	}
	return res.err
}

// LeftNetns returns the names of the network namespaces whose names start
// with prefix (a Bed's ID and "-", say): what a run that should have
// removed them left behind.
func LeftNetns(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var left []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, prefix) {
			left = append(left, strings.Fields(line)[0])
		}
	}
	return left, nil
}

// CheckNoNetns fails tb for every network namespace whose name starts with
// prefix (LeftNetns).
func CheckNoNetns(tb TB, prefix string) {
	tb.Helper()
	left, err := LeftNetns(prefix)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	for _, name := range left {
		tb.Errorf("namespace left behind: %s", name)
	}
}
