package daemon

// This file holds what a runtime tells the node about an endpoint after
// attach: its names, and where the runtime moved its interface.
//
// Naming an endpoint after attach: a runtime that learns
// the container's name only once the endpoint exists (Docker tells a
// remote network driver no container name) gives it then. The names are
// taken as attach takes them and announced with the binding, whose
// sequence number is bumped so every node takes the new record.

import (
	"bytes"
	"fmt"
	"net"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
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

// relocate records that the endpoint at req.Netns/req.IfName now lives in
// req.ToNetns as req.ToIfName, after checking that the link there has the
// endpoint's MAC. The record changes (what the state file says, and so
// where a restart looks for the TAP) and the namespace watcher watches the
// new namespace: when it goes (the container stopped), the endpoint goes
// with it, before the runtime deletes it.
func (e *endpoints) relocate(req control.RelocateRequest) (endpoint, error) {
	if req.ToNetns == "" || req.ToIfName == "" {
		return endpoint{}, userErrorf("relocate: to_netns and to_ifname are required")
	}
	path, to := control.NetnsPath(req.Netns), control.NetnsPath(req.ToNetns)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.byPort {
		if control.NetnsPath(a.ep.Netns) != path || a.ep.IfName != req.IfName {
			continue
		}
		err := tap.InNetns(to, func() error {
			ifi, err := net.InterfaceByName(req.ToIfName)
			if err != nil {
				return err
			}
			if !bytes.Equal(ifi.HardwareAddr, a.ep.MAC[:]) {
				return fmt.Errorf("%s has MAC %v, the endpoint %v", req.ToIfName, ifi.HardwareAddr, a.ep.MAC)
			}
			return nil
		})
		if err != nil {
			return endpoint{}, userErrorf("relocate %s to %s in %s: %v", req.IfName, req.ToIfName, req.ToNetns, err)
		}
		ns, err := tap.NetnsIDOf(to)
		if err != nil {
			return endpoint{}, userErrorf("relocate to %s: %v", req.ToNetns, err)
		}
		a.ep.Netns, a.ep.IfName, a.ns = req.ToNetns, req.ToIfName, ns
		e.saveStateLocked()
		e.log.Info("endpoint moved by its runtime", "endpoint", a.ep.Name, "netns", a.ep.Netns, "ifname", a.ep.IfName)
		return a.ep, nil
	}
	return endpoint{}, fmt.Errorf("relocate: nothing attached as %s in %s: %w", req.IfName, req.Netns, errNotFound)
}
