package daemon

// This file holds naming an endpoint after attach: a runtime that learns
// the container's name only once the endpoint exists (Docker tells a
// remote network driver no container name) gives it then. The names are
// taken as attach takes them and announced with the binding, whose
// sequence number is bumped so every node takes the new record.

import (
	"fmt"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
)

// setNames replaces the DNS names of the endpoint at netns/ifname.
func (e *endpoints) setNames(req control.NamesRequest) (endpoint, error) {
	nm, err := endpointNames(req.DNSName, "", req.Aliases, req.Service)
	if err != nil {
		return endpoint{}, err
	}
	ifname := req.IfName
	if ifname == "" {
		ifname = "eth0"
	}
	path := control.NetnsPath(req.Netns)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.byPort {
		if control.NetnsPath(a.ep.Netns) != path || a.ep.IfName != ifname {
			continue
		}
		k := fdb.Key{VNI: a.ep.VNI, MAC: a.ep.MAC}
		entry, ok := e.fdb.Get(k)
		if !ok || entry.Origin != fdb.OriginLocal {
			return endpoint{}, fmt.Errorf("names: %s in %s has no local binding", ifname, req.Netns)
		}
		set := func() {
			entry.Names = nm
			entry.Seq++ // a new record of the binding, which every node takes
			e.fdb.Set(entry)
		}
		if e.names == nil {
			set()
		} else if err := e.names.take(a.net, a.ep.MAC, nm, set); err != nil {
			return endpoint{}, err
		}
		a.ep.Names = nm
		e.saveStateLocked()
		return a.ep, nil
	}
	return endpoint{}, fmt.Errorf("names: nothing attached as %s in %s: %w", ifname, req.Netns, errNotFound)
}
