package main

// This file holds the network driver: Docker networks mapped onto ovlsw
// networks, and endpoints attached through the node's daemon.
//
// Design notes:
//   - `docker network create -d ovlsw --ipam-driver ovlsw --subnet S
//     -o ovlsw.network=NAME` maps the Docker network onto ovlsw network NAME
//     (default: the Docker network's ID is not a useful name, so the option
//     is required), created cluster-wide if it is missing with the subnet
//     and gateway Docker passes and VNI -o ovlsw.vni (default: a hash of
//     the name, so hosts that create it at once agree). A network that
//     exists must have Docker's subnet.
//   - CreateEndpoint attaches: the daemon claims the address cluster-wide,
//     makes the TAP with the MAC (Docker's, or one it picks, returned to
//     Docker) and leaves it down and bare in dockerd's namespace under a
//     temporary name (control.AttachRequest.Unconfigured); Join names it as
//     SrcName, and Docker moves it into the container, renames it ethN,
//     adds the address and the route via Gateway. DeleteEndpoint detaches,
//     which removes the TAP and frees the address. After Join the plugin
//     tells the daemon where Docker put the interface (names.go), so that
//     a restarted node takes it back from the container.
//   - DeleteNetwork forgets the mapping but leaves the ovlsw network: it is
//     the cluster's, and other hosts' containers may be on it.
//   - The mapping is kept in a state file, so a restarted plugin still
//     knows the networks dockerd created through an earlier one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// Option keys of `docker network create -o`.
const (
	optNetwork = "ovlsw.network"
	optVNI     = "ovlsw.vni"
	// genericOptions is where libnetwork puts the -o options.
	genericOptions = "com.docker.network.generic"
)

// requestTimeout bounds one call's talk with the daemon; dockerd has its
// own limit on plugin calls.
const requestTimeout = 30 * time.Second

// config configures the driver.
type config struct {
	// Socket is the ovlsw daemon's control socket.
	Socket string
	// Netns is the network namespace dockerd runs in, where endpoints'
	// interfaces are left for it (default /proc/1/ns/net, the host's).
	Netns string
	// State is the file the network mapping is kept in; empty keeps none.
	State string
	// DockerHost is dockerd's API socket (unix:///run/docker.sock), asked
	// for the names and processes of endpoints' containers (names.go);
	// empty: endpoints get no names, and are not relocated.
	DockerHost string
	Log        *slog.Logger
}

// driver serves the plugin calls.
type driver struct {
	cfg    config
	client *control.Client
	docker *dockerAPI // nil: no names

	// mu guards networks, endpoints and the IPAM's reservations (ipam.go).
	mu        sync.Mutex
	networks  map[string]string        // Docker network ID -> ovlsw network
	endpoints map[string]endpointState // Docker endpoint ID
	reserved  map[netip.Addr]bool      // addresses handed to Docker, not yet attached or released
}

// endpointState is an attached endpoint.
type endpointState struct {
	Network string // ovlsw network
	IfName  string // the TAP's name in dockerd's namespace
	Gateway netip.Addr
	MAC     string // empty for an endpoint an earlier run of the plugin made
}

func newDriver(cfg config) (*driver, error) {
	if cfg.Netns == "" {
		cfg.Netns = "/proc/1/ns/net"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := &driver{cfg: cfg, client: control.NewClient(cfg.Socket), networks: map[string]string{},
		endpoints: map[string]endpointState{}, reserved: map[netip.Addr]bool{}}
	if cfg.DockerHost != "" {
		var err error
		if d.docker, err = newDockerAPI(cfg.DockerHost); err != nil {
			return nil, fmt.Errorf("ovlsw-docker: %w", err)
		}
	}
	if cfg.State != "" {
		b, err := os.ReadFile(cfg.State)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("ovlsw-docker: state: %w", err)
		default:
			if err := json.Unmarshal(b, &d.networks); err != nil {
				return nil, fmt.Errorf("ovlsw-docker: state %s: %w", cfg.State, err)
			}
		}
	}
	return d, nil
}

// saveLocked writes the network mapping; called with d.mu held.
func (d *driver) saveLocked() error {
	if d.cfg.State == "" {
		return nil
	}
	b, _ := json.Marshal(d.networks)
	tmp := d.cfg.State + ".tmp"
	if err := os.MkdirAll(filepath.Dir(d.cfg.State), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.cfg.State)
}

func (d *driver) do(method, path string, body, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := d.client.Do(ctx, method, path, body, v); err != nil {
		return fmt.Errorf("ovlsw: %w", err)
	}
	return nil
}

// network is the ovlsw network named name.
func (d *driver) network(name string) (control.NetworkDetail, error) {
	var n control.NetworkDetail
	err := d.do(http.MethodGet, "/v1/networks/"+url.PathEscape(name), nil, &n)
	return n, err
}

// defaultVNI derives a VNI from a network's name: the same on every host,
// in 4096..2^24-1 (clear of VNIs people pick by hand for VLAN-like use).
func defaultVNI(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return 4096 + h.Sum32()%(1<<24-4096)
}

func (d *driver) createNetwork(req createNetworkRequest) (any, error) {
	opts, _ := req.Options[genericOptions].(map[string]any)
	name, _ := opts[optNetwork].(string)
	if name == "" {
		return nil, fmt.Errorf("ovlsw: name the ovlsw network with -o %s=NAME", optNetwork)
	}
	var subnet netip.Prefix
	var gw netip.Addr
	if len(req.IPv4Data) > 0 {
		var err error
		if subnet, err = netip.ParsePrefix(req.IPv4Data[0].Pool); err != nil {
			return nil, fmt.Errorf("ovlsw: subnet %q: %v", req.IPv4Data[0].Pool, err)
		}
		if g, err := netip.ParsePrefix(req.IPv4Data[0].Gateway); err == nil {
			gw = g.Addr()
		}
	}
	n, err := d.network(name)
	if control.IsNotFound(err) {
		vni := defaultVNI(name)
		if s, ok := opts[optVNI].(string); ok && s != "" {
			if _, err := fmt.Sscan(s, &vni); err != nil {
				return nil, fmt.Errorf("ovlsw: -o %s=%q: want a number", optVNI, s)
			}
		}
		create := control.Network{Name: name, VNI: vni, Subnet: subnet, Gateway: gw}
		if err = d.do(http.MethodPost, "/v1/networks", create, &n); err != nil {
			// Created by another host meanwhile?
			n, err = d.network(name)
		}
	}
	if err != nil {
		return nil, err
	}
	if subnet.IsValid() && n.Subnet != subnet.Masked() {
		return nil, fmt.Errorf("ovlsw: network %s has subnet %v, not %v", name, n.Subnet, subnet)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.networks[req.NetworkID] = name
	d.cfg.Log.Info("network created", "docker_network", req.NetworkID, "network", name, "subnet", n.Subnet, "vni", n.VNI)
	return struct{}{}, d.saveLocked()
}

func (d *driver) deleteNetwork(req networkRequest) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.networks, req.NetworkID)
	return struct{}{}, d.saveLocked()
}

func (d *driver) networkOf(id string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name, ok := d.networks[id]
	if !ok {
		return "", fmt.Errorf("ovlsw: Docker network %s is not one this plugin created", id)
	}
	return name, nil
}

// tapName is the endpoint's interface name in dockerd's namespace until
// Docker moves it: unique per endpoint, at most 15 bytes.
func tapName(endpointID string) string { return "ovd" + endpointID[:min(len(endpointID), 11)] }

// endpointName is the ovlsw endpoint's name: docker/ and the endpoint ID
// as `docker network inspect` shortens it.
func endpointName(endpointID string) string {
	return "docker/" + endpointID[:min(len(endpointID), 12)]
}

func (d *driver) createEndpoint(req createEndpointRequest) (any, error) {
	name, err := d.networkOf(req.NetworkID)
	if err != nil {
		return nil, err
	}
	if req.Interface == nil || req.Interface.Address == "" {
		return nil, errors.New("ovlsw: Docker gave the endpoint no IPv4 address: create the network with --ipam-driver ovlsw and --subnet")
	}
	addr, err := netip.ParsePrefix(req.Interface.Address)
	if err != nil {
		return nil, fmt.Errorf("ovlsw: endpoint address %q: %v", req.Interface.Address, err)
	}
	attach := control.AttachRequest{
		Netns: d.cfg.Netns, Network: name, Address: addr, IfName: tapName(req.EndpointID), MAC: req.Interface.MacAddress,
		Name: endpointName(req.EndpointID), NoResolvConf: true, Unconfigured: true,
	}
	var ep control.Endpoint
	if err := d.do(http.MethodPost, "/v1/attach", attach, &ep); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.reserved, addr.Addr()) // the endpoint holds it now
	d.endpoints[req.EndpointID] = endpointState{Network: name, IfName: ep.IfName, Gateway: ep.Gateway, MAC: ep.MAC}
	d.cfg.Log.Info("endpoint created", "endpoint", req.EndpointID, "network", name, "address", ep.Address, "mac", ep.MAC)
	if req.Interface.MacAddress != "" {
		return createEndpointResponse{}, nil // Docker refuses an answer that repeats what it set
	}
	return createEndpointResponse{Interface: &endpointInterface{MacAddress: ep.MAC}}, nil
}

func (d *driver) deleteEndpoint(req endpointRequest) (any, error) {
	d.mu.Lock()
	ep, ok := d.endpoints[req.EndpointID]
	delete(d.endpoints, req.EndpointID)
	d.mu.Unlock()
	at := control.DetachRequest{Netns: d.cfg.Netns, IfName: tapName(req.EndpointID)}
	if ok {
		at.IfName = ep.IfName
	}
	// Where the daemon's record says: moved into the container if the
	// plugin told it so (names.go), even though Docker has moved the
	// interface back by now.
	var eps []control.Endpoint
	if err := d.do(http.MethodGet, "/v1/endpoints", nil, &eps); err == nil {
		for _, e := range eps {
			if e.Name == endpointName(req.EndpointID) {
				at = control.DetachRequest{Netns: e.Netns, IfName: e.IfName}
			}
		}
	}
	err := d.do(http.MethodPost, "/v1/detach", at, nil)
	if err != nil && !control.IsNotFound(err) {
		return nil, err
	}
	return struct{}{}, nil
}

func (d *driver) join(req joinRequest) (any, error) {
	d.mu.Lock()
	ep, ok := d.endpoints[req.EndpointID]
	d.mu.Unlock()
	if !ok {
		// Made by an earlier run of the plugin: the TAP has the name it
		// gave, the gateway is the network's.
		name, err := d.networkOf(req.NetworkID)
		if err != nil {
			return nil, err
		}
		n, err := d.network(name)
		if err != nil {
			return nil, err
		}
		ep = endpointState{Network: name, IfName: tapName(req.EndpointID), Gateway: n.Gateway}
	}
	res := joinResponse{InterfaceName: interfaceName{SrcName: ep.IfName, DstPrefix: "eth"}}
	if ep.Gateway.IsValid() {
		res.Gateway = ep.Gateway.String()
	}
	go d.afterJoin(req, ep)
	return res, nil
}

func (d *driver) leave(endpointRequest) (any, error) { return struct{}{}, nil }
