package main

// This file holds the wire side of Docker's plugin protocol: the JSON
// bodies of the libnetwork remote network driver and IPAM driver calls
// (moby/libnetwork docs/remote.md and docs/ipam.md) and the mux that routes
// POST /Plugin.Activate, /NetworkDriver.* and /IpamDriver.* to the driver.
//
// Design notes:
//   - About fifteen plain JSON handlers, not github.com/docker/go-plugins-
//     helpers: the helpers pull in docker's own packages (and their
//     go-connections/sdk versions) for a dozen structs and a listener, the
//     protocol has been frozen since libnetwork's remote API 1.0, and plain
//     handlers keep the plugin testable with httptest and no dependency.
//   - Errors are 200-less answers with {"Err": "..."}, which dockerd shows
//     to the user as the driver's error.

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Docker's plugin media type.
const pluginContentType = "application/vnd.docker.plugins.v1.2+json"

type activateResponse struct {
	Implements []string
}

type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}

type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]any
}

type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

type networkRequest struct {
	NetworkID string
}

type endpointInterface struct {
	Address     string `json:",omitempty"`
	AddressIPv6 string `json:",omitempty"`
	MacAddress  string `json:",omitempty"`
}

type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

type createEndpointResponse struct {
	Interface *endpointInterface `json:",omitempty"`
}

type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

type interfaceName struct {
	SrcName   string
	DstPrefix string
}

type joinResponse struct {
	InterfaceName         interfaceName
	Gateway               string `json:",omitempty"`
	DisableGatewayService bool   `json:",omitempty"`
}

type operInfoResponse struct {
	Value map[string]any
}

type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

type releasePoolRequest struct {
	PoolID string
}

type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

type requestAddressResponse struct {
	Address string
	Data    map[string]string
}

type releaseAddressRequest struct {
	PoolID  string
	Address string
}

type errorResponse struct {
	Err string
}

// handler routes the plugin calls to d.
func (d *driver) handler() http.Handler {
	mux := http.NewServeMux()
	empty := func(struct{}) (any, error) { return struct{}{}, nil }
	handle(mux, "/Plugin.Activate", func(struct{}) (any, error) {
		return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
	})
	handle(mux, "/NetworkDriver.GetCapabilities", func(struct{}) (any, error) {
		// Local: each host's dockerd keeps its own view of the network;
		// global connectivity: its endpoints reach those of every host.
		return capabilitiesResponse{Scope: "local", ConnectivityScope: "global"}, nil
	})
	handle(mux, "/NetworkDriver.CreateNetwork", d.createNetwork)
	handle(mux, "/NetworkDriver.DeleteNetwork", d.deleteNetwork)
	handle(mux, "/NetworkDriver.CreateEndpoint", d.createEndpoint)
	handle(mux, "/NetworkDriver.DeleteEndpoint", d.deleteEndpoint)
	handle(mux, "/NetworkDriver.EndpointOperInfo", func(endpointRequest) (any, error) {
		return operInfoResponse{Value: map[string]any{}}, nil
	})
	handle(mux, "/NetworkDriver.Join", d.join)
	handle(mux, "/NetworkDriver.Leave", d.leave)
	for _, p := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity",
		"AllocateNetwork", "FreeNetwork"} {
		handle(mux, "/NetworkDriver."+p, empty)
	}
	handle(mux, "/IpamDriver.GetCapabilities", func(struct{}) (any, error) {
		return ipamCapabilitiesResponse{}, nil
	})
	handle(mux, "/IpamDriver.GetDefaultAddressSpaces", func(struct{}) (any, error) {
		return addressSpacesResponse{LocalDefaultAddressSpace: "ovlsw", GlobalDefaultAddressSpace: "ovlsw"}, nil
	})
	handle(mux, "/IpamDriver.RequestPool", d.requestPool)
	handle(mux, "/IpamDriver.ReleasePool", d.releasePool)
	handle(mux, "/IpamDriver.RequestAddress", d.requestAddress)
	handle(mux, "/IpamDriver.ReleaseAddress", d.releaseAddress)
	return mux
}

// handle serves POST path: the body decoded into Req (an empty body is the
// zero Req), fn's answer or its error as {"Err": ...}.
func handle[Req any](mux *http.ServeMux, path string, fn func(Req) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			write(w, http.StatusBadRequest, errorResponse{Err: "ovlsw: decode " + path + ": " + err.Error()})
			return
		}
		v, err := fn(req)
		if err != nil {
			write(w, http.StatusInternalServerError, errorResponse{Err: err.Error()})
			return
		}
		write(w, http.StatusOK, v)
	})
}

func write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", pluginContentType)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
