//go:build linux

package tap

// This file holds network namespaces of ports on Linux: InNetns runs code
// there (Adopt of a TAP that lives there); NetnsIDOf tells namespaces
// apart.

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkErr is err, which the kernel returned doing what the format says,
// with context, and wrapping ErrPermission if it is EPERM or EACCES.
func linkErr(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s: %w", ErrPermission, what, err)
	}
	return fmt.Errorf("tap: %s: %w", what, err)
}

// InNetns runs fn on an OS thread moved into the network namespace at
// path, and waits for it. The thread is given back to the scheduler only
// once it is back in its own namespace; if it cannot return, its goroutine
// exits still locked, which ends the thread. Files fn opens (a TAP, with
// Adopt) stay usable from any thread. fn must not start goroutines that
// rely on being in the namespace: they run on other threads. The error is
// fn's, joined with one from leaving the namespace if that failed.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("tap: current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("tap: open network namespace %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread() // still in orig
			errc <- linkErr(err, "enter network namespace %s", path)
			return
		}
		err = fn()
		if berr := netns.Set(orig); berr != nil {
			// Locked for good: the thread ends with this goroutine.
			errc <- errors.Join(err, fmt.Errorf("tap: leave network namespace %s: %w", path, berr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// NetnsIDOf returns the identity of the network namespace at path (a
// bind mount such as /run/netns/NAME, or /proc/PID/ns/net). It fails if
// path is missing (a namespace deleted with `ip netns del`) or is not a
// network namespace (a name unmounted but not removed).
func NetnsIDOf(path string) (NetnsID, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return NetnsID{}, fmt.Errorf("tap: network namespace %s: %w", path, os.NewSyscallError("open", err))
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE) // ENOTTY on a file that is no namespace
	if err != nil {
		return NetnsID{}, fmt.Errorf("tap: %s is not a network namespace: %w", path, os.NewSyscallError("ioctl NS_GET_NSTYPE", err))
	}
	if typ != unix.CLONE_NEWNET {
		return NetnsID{}, fmt.Errorf("tap: %s is a namespace of type %#x, not a network namespace", path, typ)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return NetnsID{}, fmt.Errorf("tap: network namespace %s: %w", path, os.NewSyscallError("fstat", err))
	}
	return NetnsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}
