package daemon

// This file holds the namespace watcher: it removes endpoints whose network
// namespace is gone.
//
// Design notes: for a TAP the daemon created, nothing more is needed: the
// daemon opens it in its own namespace and moves the link, and when the
// container's namespace is destroyed the link goes with it and the port's
// reader fails (portStopped). A TAP re-adopted after a restart is different:
// Adopt must open /dev/net/tun inside the container's namespace (the driver
// looks the name up there), and the open file's socket holds a reference to
// that namespace. Deleting the namespace (ip netns del, a container exiting)
// then only drops its name: the namespace, and the link, live on as long as
// the daemon holds the TAP, so the reader never fails and the endpoint would
// stay forever. The watcher notices the name is gone (or now names another
// namespace) and removes the endpoint, which closes the TAP and frees the
// namespace.

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// nsWatchEvery is how often the watcher looks: a deleted container's
// address is free again within about this long.
const nsWatchEvery = time.Second

// nsID identifies a network namespace: the device and inode of its nsfs
// file, the same for every path that names it.
type nsID struct{ dev, ino uint64 }

// netnsID returns the identity of the namespace at path.
func netnsID(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// watchNamespaces checks every nsWatchEvery that each endpoint's namespace
// path still names the namespace it was attached in, until stop closes.
func (d *Daemon) watchNamespaces(stop <-chan struct{}) {
	defer d.nsDone.Done()
	t := time.NewTicker(nsWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.dropVanishedEndpoints()
		}
	}
}

// dropVanishedEndpoints removes the endpoints whose namespace is gone.
func (d *Daemon) dropVanishedEndpoints() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, ep := range d.endpoints {
		want := d.epPorts[id].ns
		if want == (nsID{}) {
			continue // not known (never expected): leave it to the reader
		}
		if got, err := netnsID(control.NetnsPath(ep.Netns)); err != nil || got != want {
			d.removeEndpointLocked(id, "network namespace "+ep.Netns+" is gone", false)
		}
	}
}
