package control

import (
	"net/netip"
	"path/filepath"
	"strings"
)

// NetnsPath resolves the netns field of a request: a name under /run/netns
// (as `ip netns` makes them), or a path, which is cleaned. The daemon and
// its clients match endpoints by this path.
func NetnsPath(s string) string {
	if strings.ContainsRune(s, '/') {
		return filepath.Clean(s)
	}
	return filepath.Join("/run/netns", s)
}

// Network is an overlay network: one VXLAN network identifier, an optional
// subnet from which addresses are handed out, an optional gateway.
type Network struct {
	Name    string       `json:"name"`
	VNI     uint32       `json:"vni"`
	Subnet  netip.Prefix `json:"subnet,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	MTU     int          `json:"mtu"`
	Flood   string       `json:"flood,omitempty"` // flood policy (vtep.ParseFloodPolicy); empty: the node's
}

// NetworkDetail is a network with its endpoints, for network inspect.
type NetworkDetail struct {
	Network
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is a port attached to a network: a TAP in a network namespace.
type Endpoint struct {
	Name    string       `json:"name"`
	Network string       `json:"network"`
	VNI     uint32       `json:"vni"`
	Node    string       `json:"node"`
	Netns   string       `json:"netns,omitempty"`
	IfName  string       `json:"ifname"`
	MAC     string       `json:"mac"`
	Address netip.Prefix `json:"address,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	MTU     int          `json:"mtu"`
	Secure  bool         `json:"port_security"`
}

// AttachRequest is the body of POST /v1/attach.
type AttachRequest struct {
	Netns   string       `json:"netns"`            // a name under /run/netns, or a path
	Network string       `json:"network"`          // network name
	Address netip.Prefix `json:"address,omitzero"` // zero: allocate from the subnet
	IfName  string       `json:"ifname,omitempty"` // default eth0
	MAC     string       `json:"mac,omitempty"`    // default: generated
	Name    string       `json:"name,omitempty"`   // default: netns/ifname
	// NoPortSecurity lets the port send from other MACs and claim other
	// addresses (a container that routes or bridges). Off by default.
	NoPortSecurity bool `json:"no_port_security,omitempty"`
}

// DetachRequest is the body of POST /v1/detach.
type DetachRequest struct {
	Netns  string `json:"netns"`
	IfName string `json:"ifname,omitempty"` // default eth0
}

// Member is one row of GET /v1/peers: a gossip member as this node sees it.
type Member struct {
	Name     string         `json:"name"`
	Addr     netip.AddrPort `json:"addr"` // gossip address
	VTEP     netip.AddrPort `json:"vtep"`
	VNIs     []uint32       `json:"vnis"`
	State    string         `json:"state"` // alive, suspect, dead, left
	Bindings int            `json:"bindings"`
}

// KeyRequest is the body of POST /v1/keys: op is install, use or remove;
// key is base64.
type KeyRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}

// Gossip summarises the control plane in GET /v1/status.
type Gossip struct {
	Addr           netip.AddrPort `json:"addr"`
	Members        int            `json:"members"` // alive, this node included
	LocalBindings  int            `json:"local_bindings"`
	RemoteBindings int            `json:"remote_bindings"`
	MessagesIn     uint64         `json:"messages_in"`
	MessagesOut    uint64         `json:"messages_out"`
	Malformed      uint64         `json:"malformed"`
	Encrypted      bool           `json:"encrypted"`
}
