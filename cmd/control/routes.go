package control

import "net/netip"

// Subnet is one subnet of a network and its gateway.
type Subnet struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
}

// Routes is the body of GET /v1/routes: what the node routes, network by
// network, and what its routing stage did.
type Routes struct {
	Networks []RoutedNetwork `json:"networks"`
	Stats    RouteStats      `json:"stats"`
}

// RoutedNetwork is a network the node routes for: its subnets and
// gateways, the router MAC, and the addresses it routes to (the network's
// endpoints on every node, from the forwarding table).
type RoutedNetwork struct {
	Network   string      `json:"network"`
	VNI       uint32      `json:"vni"`
	RouterMAC string      `json:"router_mac"`
	Subnets   []Subnet    `json:"subnets"`
	Hosts     []RouteHost `json:"hosts"`
}

// RouteHost is one destination: an address, the MAC routed frames get and
// where that MAC is (a port or a VTEP).
type RouteHost struct {
	Address netip.Addr `json:"address"`
	MAC     string     `json:"mac"`
	Where   string     `json:"where"`
}

// RouteStats counts what the routing stage did (vtep.RouteStats).
type RouteStats struct {
	Routed       uint64 `json:"routed"`
	EchoReplies  uint64 `json:"echo_replies"`
	TimeExceeded uint64 `json:"time_exceeded"`
	Unreachable  uint64 `json:"unreachable"`
	TooBig       uint64 `json:"too_big"`
	Limited      uint64 `json:"limited"`
}
