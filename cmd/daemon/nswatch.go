package daemon

// This file holds the namespace watcher: it removes endpoints whose network
// namespace is gone.
//
// Design notes: for a TAP the node created, nothing more is needed: the
// node opens it in its own namespace and moves the link, and when the
// container's namespace is destroyed the link goes with it and the port's
// reader fails (portStopped). A TAP re-adopted after a restart is different:
// Adopt must open /dev/net/tun inside the container's namespace (the driver
// looks the name up there), and the open file's socket holds a reference to
// that namespace. Deleting the namespace (ip netns del, a container exiting)
// then only drops its name: the namespace, and the link, live on as long as
// the node holds the TAP, so the reader never fails and the endpoint would
// stay forever. The watcher notices the name is gone (or now names another
// namespace) and removes the endpoint, which closes the TAP and frees the
// namespace.

import (
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/tap"
)

// nsWatchEvery is how often the watcher looks: a deleted container's
// address is free again within about this long.
const nsWatchEvery = time.Second

// watch starts the watcher; stopWatch stops it.
func (e *endpoints) watch() {
	e.nsStop = make(chan struct{})
	e.nsDone.Add(1)
	go e.watchNamespaces(e.nsStop)
}

// stopWatch stops the watcher and waits for it. Idempotent.
func (e *endpoints) stopWatch() {
	if e.nsStop != nil {
		close(e.nsStop)
		e.nsDone.Wait()
		e.nsStop = nil
	}
}

// watchNamespaces checks every nsWatchEvery that each endpoint's namespace
// path still names the namespace it was attached in, until stop closes.
func (e *endpoints) watchNamespaces(stop <-chan struct{}) {
	defer e.nsDone.Done()
	t := time.NewTicker(nsWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			e.dropVanished()
		}
	}
}

// dropVanished removes the endpoints whose namespace is gone.
func (e *endpoints) dropVanished() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, a := range e.byPort {
		if a.ns == (tap.NetnsID{}) {
			continue // not known (never expected): leave it to the reader
		}
		if got, err := tap.NetnsIDOf(control.NetnsPath(a.ep.Netns)); err != nil || got != a.ns {
			e.removeLocked(id, "network namespace "+a.ep.Netns+" is gone", false)
		}
	}
}
