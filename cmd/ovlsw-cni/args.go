package main

// This file holds what the runtime asks for beyond the network config: the
// address (runtimeConfig.ips, CNI_ARGS IP=), the MAC (runtimeConfig.mac,
// CNI_ARGS MAC=) and the container's name (CNI_ARGS K8S_POD_NAME).
//
// Design notes:
//   - Podman (CNI backend) passes `--ip` as a bare address in CNI_ARGS
//     IP=10.0.9.50 and `--mac-address` as MAC=; the kubelet and other
//     runtimes use the "ips" and "mac" capabilities. A bare address takes
//     its prefix length from the network's subnet, which the plugin asks
//     the daemon for; an address outside the subnet is refused here with
//     the subnet in the message rather than by the daemon.
//   - A capability wins over the same CNI_ARGS key, as the conventions
//     document says for "ips".

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// runtimeArgs are the CNI_ARGS the plugin reads.
type runtimeArgs struct {
	types.CommonArgs
	IP  types.UnmarshallableString
	MAC types.UnmarshallableString
	// K8S_POD_NAME is the container's name, as Podman and the kubelet pass
	// it.
	K8S_POD_NAME types.UnmarshallableString //nolint:revive // the CNI_ARGS key
}

// loadArgs parses CNI_ARGS.
func loadArgs(cniArgs string) (runtimeArgs, error) {
	var a runtimeArgs
	if err := types.LoadArgs(cniArgs, &a); err != nil {
		return a, types.NewError(types.ErrInvalidEnvironmentVariables, "ovlsw-cni: CNI_ARGS: "+err.Error(), "")
	}
	return a, nil
}

// subnetFunc returns the subnet of the configured network; it is called
// only for a bare address.
type subnetFunc func() (netip.Prefix, error)

// requestedAddress is the address the runtime asks for, or the zero Prefix
// to have the daemon allocate one.
func requestedAddress(conf *netConf, cniArgs string, subnet subnetFunc) (netip.Prefix, error) {
	s, from := "", ""
	if len(conf.RuntimeConfig.IPs) == 1 {
		s, from = conf.RuntimeConfig.IPs[0], "runtimeConfig.ips"
	} else {
		a, err := loadArgs(cniArgs)
		if err != nil {
			return netip.Prefix{}, err
		}
		s, from = string(a.IP), "CNI_ARGS IP"
	}
	if s == "" {
		return netip.Prefix{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovlsw-cni: %s %q: want an address, e.g. 10.0.9.5 or 10.0.9.5/24", from, s), "")
	}
	sub, err := subnet()
	if err != nil {
		return netip.Prefix{}, err
	}
	addr = addr.Unmap()
	if !sub.IsValid() || !sub.Contains(addr) {
		return netip.Prefix{}, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovlsw-cni: %s %v is not in network %s's subnet %v", from, addr, conf.Network, cmpPrefix(sub)), "")
	}
	return netip.PrefixFrom(addr, sub.Bits()), nil
}

func cmpPrefix(p netip.Prefix) string {
	if p.IsValid() {
		return p.String()
	}
	return "(none)"
}

// requestedMAC is the MAC the runtime asks for, normalised, or "" to have
// the daemon generate one.
func requestedMAC(conf *netConf, cniArgs string) (string, error) {
	s, from := conf.RuntimeConfig.MAC, "runtimeConfig.mac"
	if s == "" {
		a, err := loadArgs(cniArgs)
		if err != nil {
			return "", err
		}
		s, from = string(a.MAC), "CNI_ARGS MAC"
	}
	if s == "" {
		return "", nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return "", types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovlsw-cni: %s %q: want an Ethernet MAC, e.g. 02:42:0a:00:09:05", from, s), "")
	}
	return mac.String(), nil
}

// networkSubnet asks the daemon for the network's subnet.
func networkSubnet(ctx context.Context, conf *netConf) subnetFunc {
	return func() (netip.Prefix, error) {
		var n control.NetworkDetail
		if err := newClient(conf.Socket).Do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(conf.Network), nil, &n); err != nil {
			return netip.Prefix{}, cniError(err)
		}
		return n.Subnet, nil
	}
}
