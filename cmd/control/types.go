package control

import (
	"fmt"
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
	Flood   string       `json:"flood,omitempty"` // flood policy: "flood", "drop" or a list like "arp=drop,unicast=flood,broadcast=flood"; empty: the node's
	Group   netip.Addr   `json:"group,omitzero"`  // underlay multicast group its floods go to; zero: head-end replication
	// DNS is the address endpoints send DNS queries to, answered by the
	// switch on every node: the one given at create, else the gateway.
	// Zero: the network has no name service.
	DNS netip.Addr `json:"dns,omitzero"`
	// Subnets lists every subnet with its gateway, Subnet and Gateway
	// first. A create request gives them here instead for a network with
	// several; the node routes between them (routes.go).
	Subnets []Subnet `json:"subnets,omitempty"`
	// RouterMAC is the MAC every node answers ARP and ND for the gateways
	// with, and routes frames sent to.
	RouterMAC string `json:"router_mac,omitempty"`
	// Encrypted: every datagram of the network is sealed between nodes.
	Encrypted bool `json:"encrypted,omitempty"`
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
	// DNSName is the name other endpoints of the network resolve it by
	// (empty: none); Aliases are more such names; Service groups it with
	// others under tasks.SERVICE.
	DNSName string   `json:"dns_name,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	Service string   `json:"service,omitempty"`
	// DNS is where the endpoint's resolver asks: the network's DNS address.
	DNS netip.Addr `json:"dns,omitzero"`
}

// AttachRequest is the body of POST /v1/attach.
type AttachRequest struct {
	Netns   string       `json:"netns"`            // a name under /run/netns, or a path
	Network string       `json:"network"`          // network name
	Address netip.Prefix `json:"address,omitzero"` // zero: allocate from the subnet
	Subnet  netip.Prefix `json:"subnet,omitzero"`  // the network's subnet to allocate from; zero: the first with room
	IfName  string       `json:"ifname,omitempty"` // default eth0
	MAC     string       `json:"mac,omitempty"`    // default: generated
	Name    string       `json:"name,omitempty"`   // in status; default NETNS/IFNAME
	// DNSName is the name the network's other endpoints resolve it by
	// (default: the namespace's name when it is one under /run/netns and a
	// valid DNS name; else none).
	DNSName string   `json:"dns_name,omitempty"`
	Aliases []string `json:"aliases,omitempty"` // more DNS names
	Service string   `json:"service,omitempty"` // the service it is a task of (tasks.SERVICE, SERVICE)
	// NoResolvConf keeps attach from writing /etc/netns/NETNS/resolv.conf.
	NoResolvConf bool `json:"no_resolv_conf,omitempty"`
	// Unconfigured leaves the interface in Netns under IfName, down and
	// without addresses or routes, for a runtime that moves it into the
	// container and configures it itself (Docker's remote network
	// drivers); the endpoint still holds Address and MAC.
	Unconfigured bool `json:"unconfigured,omitempty"`
	// NoPortSecurity lets the port send from other MACs and claim other
	// addresses (a container that routes or bridges). Off by default.
	NoPortSecurity bool `json:"no_port_security,omitempty"`
}

// NamesRequest is the body of POST /v1/names: the DNS names of the
// endpoint at Netns/IfName, replacing those it was attached with (empty
// DNSName: none).
type NamesRequest struct {
	Netns   string   `json:"netns"`
	IfName  string   `json:"ifname,omitempty"` // default eth0
	DNSName string   `json:"dns_name,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	Service string   `json:"service,omitempty"`
}

// RelocateRequest is the body of POST /v1/relocate: the endpoint at
// Netns/IfName was moved by its runtime to ToNetns and renamed ToIfName
// (Docker moves an Unconfigured endpoint's interface into the container).
// The node records it there, so a restart takes it back from there.
type RelocateRequest struct {
	Netns    string `json:"netns"`
	IfName   string `json:"ifname"`
	ToNetns  string `json:"to_netns"`
	ToIfName string `json:"to_ifname"`
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
	Addr           netip.AddrPort `json:"addr"`          // the address members are told (--advertise-addr)
	Bind           netip.AddrPort `json:"bind,omitzero"` // the address gossip listens on, if not Addr
	Members        int            `json:"members"`       // alive, this node included
	LocalBindings  int            `json:"local_bindings"`
	RemoteBindings int            `json:"remote_bindings"`
	MessagesIn     uint64         `json:"messages_in"`
	MessagesOut    uint64         `json:"messages_out"`
	Malformed      uint64         `json:"malformed"`
	Encrypted      bool           `json:"encrypted"`
	// Cluster is the fingerprint of the cluster secret (also at the end of
	// every join token); empty with --insecure.
	Cluster string `json:"cluster,omitempty"`
	// KeyEpoch is the epoch of the gossip key in use: members whose
	// epochs differ by more than one cannot talk (a clock off by more than
	// the rotation interval).
	KeyEpoch uint64 `json:"key_epoch,omitempty"`
	// KeyRotation is how long each gossip key is primary, in seconds.
	KeyRotation float64 `json:"key_rotation_seconds,omitempty"`
}

// Token is the answer to GET /v1/token and POST /v1/token: this node's
// join token and the cluster's fingerprint.
type Token struct {
	Token   string `json:"token"`
	Cluster string `json:"cluster"`
}

// TokenRequest is the body of POST /v1/token.
type TokenRequest struct {
	// Rotate replaces this node's join key: tokens printed before are
	// refused from then on.
	Rotate bool `json:"rotate"`
}

// Stats is the data plane's part of GET /v1/status: offloads, ports,
// peers, drop counters by reason and the ARP/ND proxy's counters.
type Stats struct {
	Offload Offload           `json:"offload"`
	Ports   []Port            `json:"ports"`
	Peers   []Peer            `json:"peers"`
	Drops   map[string]uint64 `json:"drops"` // by reason: short, bad_header, not_member, ...
	Proxy   Proxy             `json:"proxy"`
	DNS     *DNS              `json:"dns,omitempty"` // nil: no name service on this node
}

// DNS counts what the switch's name service did: queries answered from
// the networks' names, forwarded upstream, and dropped by reason.
type DNS struct {
	Queries   uint64            `json:"queries"`
	Answered  uint64            `json:"answered"`  // from the networks' names (NODATA included)
	NoData    uint64            `json:"nodata"`    // a name known, the type asked not
	NXDomain  uint64            `json:"nxdomain"`  // names of a network that no endpoint holds
	Forwarded uint64            `json:"forwarded"` // sent upstream
	Upstream  uint64            `json:"upstream"`  // upstream answers relayed
	ServFail  uint64            `json:"servfail"`  // upstream failed or timed out
	Refused   uint64            `json:"refused"`   // outside names with no upstream
	FormErr   uint64            `json:"formerr"`
	Truncated uint64            `json:"truncated"`
	TCP       uint64            `json:"tcp"` // queries over TCP
	Dropped   map[string]uint64 `json:"dropped"`
	Upstreams []string          `json:"upstreams"` // where outside names go; empty: refused
}

// Name is one row of GET /v1/names: an endpoint's names in one network.
type Name struct {
	Network string       `json:"network"`
	Name    string       `json:"name"`
	Aliases []string     `json:"aliases,omitempty"`
	Service string       `json:"service,omitempty"`
	IPs     []netip.Addr `json:"ips"`
	MAC     string       `json:"mac"`
	Node    string       `json:"node"`
}

// Traffic counts frames and bytes each way.
type Traffic struct {
	RxFrames uint64 `json:"rx_frames"`
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
}

// Port is a local port of the switch and its counters.
type Port struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	VNI   uint32 `json:"vni"`
	MTU   int    `json:"mtu"`
	Error string `json:"error,omitempty"` // why the port stopped reading, if it did
	// QueueDrops counts frames the kernel dropped on the port's TAP queue
	// before ovlsw read them (the sender outran ovlsw).
	QueueDrops uint64 `json:"queue_drops"`
	Traffic
}

// Peer is a remote VTEP and its counters; Rx is what it sent us.
type Peer struct {
	Addr netip.AddrPort `json:"addr"`
	VNIs []uint32       `json:"vnis"`
	Traffic
}

// Offload says which fast-path techniques are on.
type Offload struct {
	TAP string `json:"tap"` // the ports' offloads, e.g. "vnet_hdr,csum,tso4,tso6", or "off"; empty while there is no port
	UDP string `json:"udp"` // the socket's, e.g. "gso,gro,srcports=16", or "off"
	GRO bool   `json:"gro"` // received TCP segments merged before the TAP write
}

func (o Offload) String() string {
	tap, gro := o.TAP, "off"
	if tap == "" {
		tap = "(no port yet)"
	}
	if o.GRO {
		gro = "on"
	}
	return fmt.Sprintf("tap %s; udp %s; userspace gro %s", tap, o.UDP, gro)
}

// Proxy counts what the ARP and neighbour-discovery proxy did.
type Proxy struct {
	ARPAnswered    uint64 `json:"arp_answered"`
	NDAnswered     uint64 `json:"nd_answered"`
	Flooded        uint64 `json:"flooded"`         // questions about unknown addresses flooded
	Dropped        uint64 `json:"dropped"`         // questions about unknown addresses dropped by policy
	GratuitousSent uint64 `json:"gratuitous_sent"` // gratuitous ARPs and unsolicited NAs after a move
}
