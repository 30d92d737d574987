//go:build linux

package tap

// This file holds how a Linux TAP is opened: Create makes a new one and
// configures its link through netlink; Adopt attaches to an existing
// persistent one and changes nothing of its link.
//
// Design notes: the tun driver looks a TUNSETIFF name up in the network
// namespace the /dev/net/tun fd was opened in, and the netlink sockets
// that configure the link are made in the calling thread's namespace, so
// both functions keep every step on one locked thread. Create passes
// IFF_TUN_EXCL, so it never attaches to an existing TAP of the same name.
// Adopt must never create one, yet TUNSETIFF without IFF_TUN_EXCL creates a
// device when the name is free: so Adopt first looks the link up by
// netlink (not /sys/class/net, which shows the namespace sysfs was mounted
// in, not the thread's), and after TUNSETIFF checks that the interface
// index is unchanged. A link removed in between would have been re-created
// as a new, non-persistent TAP, which closing the fd removes again.
//
// Offloads: IFF_VNET_HDR must be given to TUNSETIFF (the flags of an
// attached fd cannot change), and a kernel that does not know it refuses
// the whole call with EINVAL, so openFlags tries again without it.
// TUNSETOFFLOAD refuses unknown bits with EINVAL, which is how
// setOffloads probes, from the most to the least. The header size stays at
// the TUNSETVNETHDRSZ default of 10 (VnetHdrLen). TUNSETIFF and
// TUNSETOFFLOAD set the device, not the fd: the last to open or adopt a
// TAP decides, which is why Adopt always sets offloads, if only to none.
//
// Queues: a multi-queue TAP is one TUNSETIFF with IFF_MULTI_QUEUE per
// queue, every one with the same flags; the first makes the device (with
// IFF_TUN_EXCL and perhaps a name template), the others attach to it by
// the name the kernel gave. The kernel refuses to mix single- and
// multi-queue opens, so Adopt follows the link's own mode.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tunPath is the TUN/TAP clone device.
const tunPath = "/dev/net/tun"

// Create makes a new TAP as cfg says and returns it as a Device. The TAP
// lives in the network namespace of the calling thread. Unless cfg.Persist
// is set it disappears when the Device is closed (or the process exits).
// Errors wrap ErrNoTUN, ErrPermission or ErrNameInUse where one of them is
// the cause. If any step fails, what was made is removed again.
func Create(cfg Config) (_ Device, reterr error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// The TAP and the netlink sockets that configure it must be in the
	// same network namespace: keep every step on this thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if cfg.Queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	fd, name, vnet, err := openFlags(cfg.Name, flags|unix.IFF_TUN_EXCL, cfg.Offload)
	if err != nil {
		return nil, err
	}
	t, err := newFromFD(fd, name, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: %s: %w", name, err)
	}
	persistent := false
	defer func() {
		if reterr != nil {
			if persistent {
				t.SetPersist(false) // so that Close removes the TAP
			}
			t.Close() // and every queue
		}
	}()
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if err := t.openQueues(cfg.Queues, flags); err != nil {
		return nil, err
	}
	if vnet {
		if t.offloads, err = t.setOffloads(true, !cfg.LazyTSO); err != nil {
			return nil, err
		}
	}
	if cfg.Persist {
		if err := t.SetPersist(true); err != nil {
			return nil, err
		}
		persistent = true
	}
	if t.mtu, err = configureLink(name, cfg); err != nil {
		return nil, err
	}
	t.shareQueueState()
	return t, nil
}

// Adopt attaches to the existing TAP named cfg.Name in the network
// namespace of the calling thread, typically a persistent one that an
// earlier Create (or an earlier run of the process) left behind, and
// returns it as a Device. It never creates a TAP: if there is no link of
// that name, or the link is not a TAP, the error wraps ErrNotFound. It sets
// the TAP's persistence to cfg.Persist and its offloads as cfg.Offload
// says, and leaves its MAC, MTU, addresses and up state alone; Device.MTU
// reports the link's MTU. Other errors wrap ErrNoTUN, ErrPermission, or
// ErrNameInUse when another open file holds a single-queue TAP.
//
// A multi-queue TAP is adopted with max(cfg.Queues, 1) queues of its own
// (other open files may hold more); a single-queue TAP cannot be adopted
// with cfg.Queues > 1.
//
// To adopt a TAP in another network namespace, lock the goroutine to its
// OS thread (runtime.LockOSThread), move the thread there (setns), call
// Adopt, and move it back: the Device keeps working from any thread.
func Adopt(cfg Config) (_ Device, reterr error) {
	if err := validName(cfg.Name); err != nil {
		return nil, fmt.Errorf("tap: adopt: interface name %q: %w", cfg.Name, err)
	}
	if strings.Contains(cfg.Name, "%") {
		return nil, fmt.Errorf("tap: adopt %q: a name template cannot name an existing TAP", cfg.Name)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	link, err := findTAP(cfg.Name)
	if err != nil {
		return nil, err
	}
	if err := cfg.validQueues(); err != nil {
		return nil, err
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if link.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		flags |= unix.IFF_MULTI_QUEUE
	} else if cfg.Queues > 1 {
		return nil, fmt.Errorf("tap: adopt %s: a single-queue TAP cannot have %d queues", cfg.Name, cfg.Queues)
	}
	fd, name, vnet, err := openFlags(cfg.Name, flags, cfg.Offload)
	if errors.Is(err, ErrNameInUse) {
		return nil, fmt.Errorf("%w (adopt: another open file holds the TAP)", err)
	} else if err != nil {
		return nil, err
	}
	t, err := newFromFD(fd, name, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: %s: %w", name, err)
	}
	defer func() {
		if reterr != nil {
			t.Close()
		}
	}()
	now, err := netlink.LinkByName(name)
	if err != nil || now.Attrs().Index != link.Attrs().Index {
		return nil, fmt.Errorf("%w: %s: the link was removed while being adopted", ErrNotFound, name)
	}
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if err := t.openQueues(cfg.Queues, flags); err != nil {
		return nil, err
	}
	if t.offloads, err = t.setOffloads(vnet, !cfg.LazyTSO); err != nil {
		return nil, err
	}
	if err := t.SetPersist(cfg.Persist); err != nil {
		return nil, err
	}
	t.mtu = now.Attrs().MTU
	t.shareQueueState()
	return t, nil
}

// findTAP returns the link named name if it is a TAP, else an error
// wrapping ErrNotFound.
func findTAP(name string) (*netlink.Tuntap, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil, fmt.Errorf("%w: %s: no link of that name in this network namespace", ErrNotFound, name)
		}
		return nil, kernelErr(name, "find link", err)
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return nil, fmt.Errorf("%w: %s is a %s link, not a TAP", ErrNotFound, name, link.Type())
	}
	// Kernels before 4.15 do not report the mode (0); TUNSETIFF then
	// refuses a TUN with EINVAL.
	if tt.Mode == netlink.TUNTAP_MODE_TUN {
		return nil, fmt.Errorf("%w: %s is a TUN device, not a TAP", ErrNotFound, name)
	}
	return tt, nil
}

// openFlags is openTAP with IFF_VNET_HDR added if vnet is set and the
// kernel takes it; it reports whether it did.
func openFlags(name string, flags uint16, vnet bool) (fd int, kname string, vnetOn bool, err error) {
	if vnet {
		fd, kname, err = openTAP(name, flags|unix.IFF_VNET_HDR)
		if !errors.Is(err, unix.EINVAL) {
			return fd, kname, err == nil, err
		}
	}
	fd, kname, err = openTAP(name, flags)
	return fd, kname, false, err
}

// openQueues opens the queues after t, the first, up to n in all, with the
// TUNSETIFF flags t was opened with (less IFF_TUN_EXCL), and makes them
// one group. n <= 1 leaves t a single queue.
func (t *linuxTAP) openQueues(n int, flags uint16) error {
	if n <= 1 {
		return nil
	}
	qs := make([]*linuxTAP, 1, n)
	qs[0] = t
	t.queues = qs // so that t.Close closes what is opened so far
	for len(qs) < n {
		fd, _, err := openTAP(t.name, flags)
		if err != nil {
			return fmt.Errorf("queue %d of %d: %w", len(qs)+1, n, err)
		}
		q, err := newFromFD(fd, t.name, 0)
		if err != nil {
			return fmt.Errorf("tap: %s: queue %d of %d: %w", t.name, len(qs)+1, n, err)
		}
		qs = append(qs, q)
		t.queues = qs
	}
	return nil
}

// shareQueueState gives the other queues of t, the first, its MTU and
// offloads (which belong to the link), and the group. Called last, before
// the queues are handed out.
func (t *linuxTAP) shareQueueState() {
	for _, q := range t.queues[min(1, len(t.queues)):] {
		q.mtu, q.offloads, q.queues = t.mtu, t.offloads, t.queues
	}
}

// offloadTries are the TUNSETOFFLOAD arguments setOffloads tries in turn,
// with what each grants; TSO needs CSUM.
var offloadTries = [...]struct {
	flags int
	got   Offloads
}{
	{unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6, Offloads{VnetHdr: true, CSUM: true, TSO4: true, TSO6: true}},
	{unix.TUN_F_CSUM, Offloads{VnetHdr: true, CSUM: true}},
	{0, Offloads{VnetHdr: true}},
}

// setOffloads asks for as much offload as the kernel grants if t has
// virtio-net headers (vnet), TSO only if tso, and turns offloads off if it
// has not: frames a former owner's offloads would leave unsegmented are
// unreadable without the header.
func (t *linuxTAP) setOffloads(vnet, tso bool) (Offloads, error) {
	if !vnet {
		if err := t.ioctl("TUNSETOFFLOAD", unix.TUNSETOFFLOAD, 0); err != nil {
			return Offloads{}, err
		}
		return Offloads{}, nil
	}
	var err error
	for _, try := range offloadTries {
		if !tso && try.got.TSO4 {
			continue
		}
		if err = t.ioctl("TUNSETOFFLOAD", unix.TUNSETOFFLOAD, try.flags); err == nil {
			return try.got, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return Offloads{}, err
}

// openTAP opens the clone device and attaches the interface of the given
// name and TUNSETIFF flags to it (with IFF_TUN_EXCL a new one, without it
// also an existing one). It returns the non-blocking fd and the name the
// kernel gave the interface.
func openTAP(name string, flags uint16) (fd int, kname string, reterr error) {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		err = os.NewSyscallError("open "+tunPath, err)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return -1, "", fmt.Errorf("%w: %s: %w", ErrNoTUN, name, err)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return -1, "", fmt.Errorf("%w: %s: %w", ErrPermission, name, err)
		}
		return -1, "", fmt.Errorf("tap: %s: %w", name, err)
	}
	defer func() {
		if reterr != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, "", fmt.Errorf("tap: %s: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		err = os.NewSyscallError("ioctl TUNSETIFF", err)
		switch {
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
			return -1, "", fmt.Errorf("%w: %s: %w", ErrNameInUse, name, err)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return -1, "", fmt.Errorf("%w: %s: %w", ErrPermission, name, err)
		}
		return -1, "", fmt.Errorf("tap: %s: %w", name, err)
	}
	return fd, ifr.Name(), nil
}

// kernelErr wraps err, which the kernel returned doing what to the link
// name, with ErrPermission if it is EPERM or EACCES.
func kernelErr(name, what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s: %s: %w", ErrPermission, name, what, err)
	}
	return fmt.Errorf("tap: %s: %s: %w", name, what, err)
}

// configureLink sets the link's MAC, MTU, addresses and state as cfg says,
// through netlink, and returns the MTU the link has.
func configureLink(name string, cfg Config) (int, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0, kernelErr(name, "find link", err)
	}
	if cfg.MAC != [6]byte{} {
		if err := netlink.LinkSetHardwareAddr(link, net.HardwareAddr(cfg.MAC[:])); err != nil {
			return 0, kernelErr(name, fmt.Sprintf("set MAC %v", net.HardwareAddr(cfg.MAC[:])), err)
		}
	}
	mtu := link.Attrs().MTU
	if cfg.MTU != 0 {
		if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
			return 0, kernelErr(name, fmt.Sprintf("set MTU %d", cfg.MTU), err)
		}
		mtu = cfg.MTU
	}
	for _, p := range cfg.Addresses {
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
			return 0, kernelErr(name, fmt.Sprintf("add address %v", p), err)
		}
	}
	if cfg.Up {
		if err := netlink.LinkSetUp(link); err != nil {
			return 0, kernelErr(name, "set link up", err)
		}
	}
	return mtu, nil
}
