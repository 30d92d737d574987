//go:build linux

package tap

// This file holds link setup of a port in a network namespace on Linux:
// Place moves a link there and configures it; InNetns runs code there
// (Adopt of a TAP that lives there); NetnsIDOf tells namespaces apart;
// TxDropped and Resolving read a link's TX drops and its neighbour
// lookups in progress.
//
// Design notes: everything but InNetns works through netlink sockets
// opened in the target namespace (netlink.NewHandleAt), so no thread
// changes namespace. Place looks IfName up in the target before it moves
// the link, so that a taken name leaves the link where it was; it does not
// undo a later step that fails: the link may then be in Netns, under its
// old or new name, partly configured. Closing a non-persistent TAP removes
// its link wherever it is, which is how a caller cleans up.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Place moves the link named link, in the calling thread's network
// namespace, into the namespace at p.Netns, renames it p.IfName, adds
// p.Addrs, sets it up and adds a default route via p.Gateway if that is
// valid and the namespace has none, in that order; with p.Down it stops
// after the addresses. Errors wrap ErrLinkExists if p.IfName is taken
// there (then the link was not moved), or ErrPermission if the kernel
// refused for want of privilege. A failure after the move leaves the link
// in p.Netns as far as it got; see the design notes.
func Place(link string, p Placement) error {
	if err := p.validate(link); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(p.Netns)
	if err != nil {
		return fmt.Errorf("tap: open network namespace %s: %w", p.Netns, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return linkErr(err, "netlink in %s", p.Netns)
	}
	defer h.Close()
	if _, err := h.LinkByName(p.IfName); err == nil {
		return fmt.Errorf("%w: %s in network namespace %s", ErrLinkExists, p.IfName, p.Netns)
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return linkErr(err, "look %s up in %s", p.IfName, p.Netns)
	}
	l, err := netlink.LinkByName(link)
	if err != nil {
		return linkErr(err, "find %s", link)
	}
	if err := netlink.LinkSetNsFd(l, int(ns)); err != nil {
		return linkErr(err, "move %s into %s", link, p.Netns)
	}
	if l, err = h.LinkByName(link); err != nil {
		return linkErr(err, "find %s in %s", link, p.Netns)
	}
	if err := h.LinkSetName(l, p.IfName); err != nil {
		if errors.Is(err, unix.EEXIST) { // made since the look-up
			return fmt.Errorf("%w: %s in network namespace %s (rename %s: %w)", ErrLinkExists, p.IfName, p.Netns, link, err)
		}
		return linkErr(err, "rename %s to %s", link, p.IfName)
	}
	for _, a := range p.Addrs {
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD // the caller vouches the address is unique
		}
		if err := h.AddrAdd(l, na); err != nil {
			return linkErr(err, "add %v to %s", a, p.IfName)
		}
	}
	if p.Down {
		return nil
	}
	if err := h.LinkSetUp(l); err != nil {
		return linkErr(err, "set %s up", p.IfName)
	}
	if p.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: p.Gateway.AsSlice()}
		// A namespace with a default route already (the container's first
		// network, when a runtime connects it to a second) keeps it, as
		// Docker and Podman do: the second network's subnet is reachable on
		// its link and the first network stays the way out.
		if err := h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return linkErr(err, "default route via %v", p.Gateway)
		}
	}
	return nil
}

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

// TxDropped reads the TX drop counter of the link ifname in the network
// namespace at path ("": the calling thread's). For a TAP these are the
// frames the kernel sent it that its queue could not hold until they were
// read.
func TxDropped(path, ifname string) (uint64, error) {
	var n uint64
	err := withLink(path, ifname, func(_ *netlink.Handle, l netlink.Link) error {
		if s := l.Attrs().Statistics; s != nil {
			n = s.TxDropped
		}
		return nil
	})
	return n, err
}

// Resolving lists the addresses the link ifname in the network namespace
// at path ("": the calling thread's) is resolving: those of its INCOMPLETE
// or FAILED neighbour entries (ARP and IPv6 neighbour discovery), IPv4
// ones unmapped, in the kernel's order. A switch that knows their MACs can
// answer at once rather than let the kernel wait to retry.
func Resolving(path, ifname string) ([]netip.Addr, error) {
	var out []netip.Addr
	err := withLink(path, ifname, func(h *netlink.Handle, l netlink.Link) error {
		neighs, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		if err != nil {
			return linkErr(err, "neighbours of %s in %s", ifname, where(path))
		}
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) != 0 {
				out = append(out, ip.Unmap())
			}
		}
		return nil
	})
	return out, err
}

// withLink calls fn with a netlink handle in the network namespace at path
// ("": the calling thread's) and the link ifname there.
func withLink(path, ifname string, fn func(*netlink.Handle, netlink.Link) error) error {
	h := &netlink.Handle{} // sockets opened per request, in the thread's namespace
	if path != "" {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("tap: open network namespace %s: %w", path, err)
		}
		defer ns.Close()
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return linkErr(err, "netlink in %s", path)
		}
		defer h.Close()
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		return linkErr(err, "find %s in %s", ifname, where(path))
	}
	return fn(h, l)
}

// where names the network namespace at path for an error message.
func where(path string) string {
	if path == "" {
		return "this network namespace"
	}
	return path
}
