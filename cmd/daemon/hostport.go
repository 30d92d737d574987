package daemon

// This file holds the host port: the node's own TAP on the default network
// (ovl<VNI>), with the addresses given at start. It is created once in New
// and never changes, so it needs no lock.

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// hostPort is the host's TAP port on the default network.
type hostPort struct {
	id    int // switch port ID
	name  string
	vni   uint32
	addrs []netip.Prefix
}

// holds reports whether addr is one of the host port's addresses.
func (h *hostPort) holds(addr netip.Addr) bool {
	return slices.ContainsFunc(h.addrs, func(p netip.Prefix) bool { return p.Addr() == addr })
}

// addHostPort creates the host's own TAP port on the default network.
func addHostPort(cfg Config, mtu int, sw *vtep.Switch, t *fdb.Table) (*hostPort, error) {
	mac, err := endpointMAC(t, cfg.VNI, "")
	if err != nil {
		return nil, err
	}
	dev, err := tap.Create(tap.Config{Name: cfg.TAP, MTU: mtu, MAC: mac, Addresses: cfg.Address, Up: true, Offload: cfg.Offload, Queues: tapQueues(cfg.Offload)})
	if err != nil {
		if errors.Is(err, tap.ErrNameInUse) {
			return nil, fmt.Errorf("a link named %s already exists: remove it (ip link del %s) or choose another TAP name", cfg.TAP, cfg.TAP)
		}
		return nil, fmt.Errorf("create TAP port %s: %w", cfg.TAP, err)
	}
	id, err := sw.AddPort(vtep.PortConfig{VNI: cfg.VNI, Device: dev, MTU: mtu, FloodRate: cfg.FloodRate})
	if err != nil {
		dev.Close()
		return nil, err
	}
	// Known from the start, so it is announced (and proxied) before any
	// traffic; pinned, so an idle host port is not aged out.
	var ips []netip.Addr
	for _, a := range cfg.Address {
		ips = append(ips, a.Addr())
	}
	t.Set(fdb.Entry{Key: fdb.Key{VNI: cfg.VNI, MAC: mac}, Location: fdb.Location{Port: id},
		Origin: fdb.OriginLocal, IPs: ips, Pinned: true})
	return &hostPort{id: id, name: cfg.TAP, vni: cfg.VNI, addrs: slices.Clone(cfg.Address)}, nil
}

// maxQueues bounds the queues of a multi-queue TAP: each queue is a file
// descriptor and a reader goroutine with its own buffers (~64 KB with
// TSO), for every endpoint.
const maxQueues = 4

// tapQueues is how many queues the host TAP gets: with offloads on, one
// per core (fast-path.md section 6: the kernel spreads a port's flows over
// the queues, and each queue has its own reader), at most maxQueues; with
// offloads off, one.
//
// Endpoint TAPs (endpoints.tapConfig) have one queue and lazy TSO instead: a
// TSO super-frame needs a 64 KB read buffer per queue, which at 1000 mostly
// idle containers is the difference between ~180 and ~370 KB per endpoint
// (measured with make scale). They start with checksum offload only and
// small buffers, and turn TSO on when a read fills a batch of 8 frames, so
// a busy container gets 64 KB at a time and an idle one costs what it did
// before offloads.
func tapQueues(offload bool) int {
	if !offload {
		return 1
	}
	return min(runtime.NumCPU(), maxQueues)
}
