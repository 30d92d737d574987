package main

// This file holds the plugin's commands: ADD attaches the container's
// network namespace through the node's ovlsw daemon, DEL detaches it, CHECK
// compares the daemon's endpoint with the interface in the namespace, STATUS
// asks whether the daemon serves the network.
//
// Design notes:
//   - The CNI protocol (environment, stdin, versions, error JSON) is left to
//     github.com/containernetworking/cni's pkg/skel and types/100, the
//     skeleton the reference plugins use, rather than re-implemented.
//   - Addresses come from the daemon, which allocates from the network's
//     subnet; an "ipam" section is refused rather than silently ignored. A
//     runtime may ask for one address and a MAC (args.go).
//   - Every spec version a current runtime sends is served (0.3.0 to
//     1.1.0); skel refuses CHECK before 0.4.0 and STATUS and GC before
//     1.1.0 as the spec says, and results are converted to the config's
//     version by the library's converters.
//   - DEL succeeds when nothing is attached (a 404), when the namespace is
//     gone, and when no daemon listens on the socket: a port lives exactly as
//     long as the daemon holds its TAP, so a daemon that is not running has
//     nothing left to clean up, and failing DEL would only wedge the
//     runtime's cleanup. That case is noted on stderr. A daemon that is
//     running but does not answer is "try again later" (11): it may still
//     hold the port.
//   - Names: the endpoint's DNS name is the container's name where the
//     runtime passes one (CNI_ARGS K8S_POD_NAME, as Podman and the
//     kubelet do), else its ID as `docker ps` shortens it; the "aliases"
//     capability (runtimeConfig.aliases, Podman's --network-alias) adds
//     aliases. The result's "dns" names the network's DNS address and its
//     name as the search domain, unless the config gives its own.
//   - GC (spec 1.1) is a no-op: ports of namespaces that disappear are
//     removed by the daemon itself, and an endpoint made by `ovlsw attach`
//     must not be collected because no runtime listed it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// requestTimeout bounds one command's talk with the daemon; attach is a few
// netlink calls, so this is generous, and runtimes impose their own limits.
const requestTimeout = 30 * time.Second

// netConf is the plugin's network configuration:
//
//	{"cniVersion": "1.0.0", "name": "overlay", "type": "ovlsw-cni",
//	 "network": "default", "socket": "/run/ovlsw/ovlsw.sock",
//	 "capabilities": {"ips": true, "mac": true}}
type netConf struct {
	types.PluginConf

	// Network is the ovlsw network to attach to; default "default".
	Network string `json:"network"`
	// Socket is the control socket of this node's daemon; default
	// control.DefaultSocket.
	Socket string `json:"socket"`
	// RuntimeConfig holds what the runtime passes for the capabilities the
	// config enables: "ips" (at most one ADDRESS[/PREFIX]) and "mac".
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
		MAC string   `json:"mac,omitempty"`
		// Aliases are more DNS names per network name (Podman's
		// --network-alias): the "aliases" capability.
		Aliases map[string][]string `json:"aliases,omitempty"`
	} `json:"runtimeConfig"`
}

// parseConf decodes and checks the network config from stdin.
func parseConf(data []byte) (*netConf, error) {
	conf := &netConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ovlsw-cni: parse network config: "+err.Error(), "")
	}
	if conf.Network == "" {
		conf.Network = "default"
	}
	if conf.Socket == "" {
		conf.Socket = control.DefaultSocket
	}
	if conf.IPAM.Type != "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovlsw-cni: ipam %q is not supported: the ovlsw daemon allocates addresses from network %s's subnet; remove \"ipam\"", conf.IPAM.Type, conf.Network), "")
	}
	if len(conf.RuntimeConfig.IPs) > 1 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("ovlsw-cni: runtimeConfig.ips has %d addresses; an ovlsw endpoint has one", len(conf.RuntimeConfig.IPs)), "")
	}
	if err := cniversion.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ovlsw-cni: parse prevResult: "+err.Error(), "")
	}
	return conf, nil
}

// dnsName is the endpoint's DNS name: the container's name if the runtime
// gave one, else its ID as endpointName shortens it.
func dnsName(args *skel.CmdArgs) string {
	if a, err := loadArgs(args.Args); err == nil && a.K8S_POD_NAME != "" {
		return string(a.K8S_POD_NAME)
	}
	return strings.TrimSuffix(endpointName(args), "/"+args.IfName)
}

// endpointName names the daemon's endpoint CONTAINER/IFNAME. A runtime's
// random hex ID is shortened to 12 digits as `docker ps` does; any other ID
// is kept whole, since DEL without a namespace finds the endpoint by name.
func endpointName(args *skel.CmdArgs) string {
	id := args.ContainerID
	if len(id) > 12 && strings.Trim(id, "0123456789abcdef") == "" {
		id = id[:12]
	}
	return id + "/" + args.IfName
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	res, err := add(conf, args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// add attaches and returns the result: prevResult (if any) with the new
// interface, its address and the default route appended.
func add(conf *netConf, args *skel.CmdArgs) (*types100.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	addr, err := requestedAddress(conf, args.Args, networkSubnet(ctx, conf))
	if err != nil {
		return nil, err
	}
	mac, err := requestedMAC(conf, args.Args)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(args.Netns); err != nil {
		return nil, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("ovlsw-cni: network namespace %s: %v", args.Netns, err), "")
	}
	req := control.AttachRequest{
		Netns: args.Netns, Network: conf.Network, Address: addr, IfName: args.IfName,
		MAC: mac, Name: endpointName(args), DNSName: dnsName(args),
		Aliases: conf.RuntimeConfig.Aliases[conf.Name], NoResolvConf: true,
	}
	var ep control.Endpoint
	if err := newClient(conf.Socket).Do(ctx, http.MethodPost, "/v1/attach", req, &ep); err != nil {
		return nil, cniError(err)
	}

	// The result is built as the newest version this library implements
	// and converted to the config's by types.PrintResult (the version
	// package's converters), so 0.3.x and 0.4.0 runtimes get theirs.
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, DNS: conf.DNS}
	if conf.PrevResult != nil {
		prev, err := types100.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "ovlsw-cni: convert prevResult: "+err.Error(), "")
		}
		res = prev
		res.CNIVersion = types100.ImplementedSpecVersion
	}
	if ep.DNS.IsValid() && len(conf.DNS.Nameservers) == 0 {
		res.DNS = types.DNS{Nameservers: []string{ep.DNS.String()}, Search: []string{ep.Network}}
	}
	res.Interfaces = append(res.Interfaces, &types100.Interface{
		Name: ep.IfName, Mac: ep.MAC, Mtu: ep.MTU, Sandbox: args.Netns,
	})
	idx := len(res.Interfaces) - 1
	if ep.Address.IsValid() {
		ip := &types100.IPConfig{Interface: types100.Int(idx), Address: ipNet(ep.Address)}
		if ep.Gateway.IsValid() {
			ip.Gateway = ep.Gateway.AsSlice()
		}
		res.IPs = append(res.IPs, ip)
	}
	if ep.Gateway.IsValid() {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if ep.Gateway.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		res.Routes = append(res.Routes, &types.Route{Dst: ipNet(dst), GW: ep.Gateway.AsSlice()})
	}
	return res, nil
}

// ipNet is p as CNI results spell an address: the address with its mask.
func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c := newClient(conf.Socket)
	req := control.DetachRequest{Netns: args.Netns, IfName: args.IfName}
	if req.Netns == "" {
		// The runtime no longer knows the namespace. The daemon drops the
		// port of a namespace that is destroyed; one that lingers (held open
		// elsewhere) is found by the name ADD gave it.
		var eps []control.Endpoint
		err := c.Do(ctx, http.MethodGet, "/v1/endpoints", nil, &eps)
		if err != nil {
			return delError(err)
		}
		for _, ep := range eps {
			if ep.Name == endpointName(args) && ep.IfName == args.IfName && ep.Network == conf.Network {
				req.Netns = ep.Netns
			}
		}
		if req.Netns == "" {
			return nil
		}
	}
	err = c.Do(ctx, http.MethodPost, "/v1/detach", req, nil)
	if err == nil || control.IsNotFound(err) {
		return nil
	}
	return delError(err)
}

// delError is nil for a daemon that is not running (see the design notes),
// else the CNI error.
func delError(err error) error {
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintf(os.Stderr, "ovlsw-cni: DEL: %v; nothing to detach, its ports went with it\n", err)
		return nil
	}
	return cniError(err)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var eps []control.Endpoint
	if err := newClient(conf.Socket).Do(ctx, http.MethodGet, "/v1/endpoints", nil, &eps); err != nil {
		return cniError(err)
	}
	var ep *control.Endpoint
	for i := range eps {
		if control.NetnsPath(eps[i].Netns) == control.NetnsPath(args.Netns) && eps[i].IfName == args.IfName {
			ep = &eps[i]
		}
	}
	if ep == nil {
		return checkFailed("no ovlsw endpoint %s in %s", args.IfName, args.Netns)
	}
	if ep.Network != conf.Network {
		return checkFailed("%s in %s is attached to network %s, not %s", args.IfName, args.Netns, ep.Network, conf.Network)
	}
	if conf.PrevResult != nil {
		prev, err := types100.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, "ovlsw-cni: convert prevResult: "+err.Error(), "")
		}
		if err := checkPrevResult(prev, args, ep); err != nil {
			return err
		}
	}
	return checkInterface(args.Netns, ep)
}

// checkPrevResult compares the addresses ADD reported for our interface
// with the endpoint's.
func checkPrevResult(prev *types100.Result, args *skel.CmdArgs, ep *control.Endpoint) error {
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(prev.Interfaces) {
			continue
		}
		ifc := prev.Interfaces[*ip.Interface]
		if ifc.Name != args.IfName || ifc.Sandbox != args.Netns {
			continue
		}
		if got := prefixOf(ip.Address); got != ep.Address {
			return checkFailed("%s in %s: ADD gave %v, the endpoint has %v", args.IfName, args.Netns, got, ep.Address)
		}
	}
	return nil
}

// checkInterface looks inside the namespace: the interface exists, is up,
// has the endpoint's MAC and address, and the default route via the gateway.
func checkInterface(path string, ep *control.Endpoint) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("ovlsw-cni: network namespace %s: %v", path, err), "")
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("ovlsw-cni: netlink in %s: %v", path, err), "")
	}
	defer h.Close()
	link, err := h.LinkByName(ep.IfName)
	if err != nil {
		return checkFailed("%s in %s: %v", ep.IfName, path, err)
	}
	attrs := link.Attrs()
	if mac, err := net.ParseMAC(ep.MAC); err == nil && attrs.HardwareAddr.String() != mac.String() {
		return checkFailed("%s in %s has MAC %v, the endpoint %v", ep.IfName, path, attrs.HardwareAddr, mac)
	}
	if attrs.Flags&net.FlagUp == 0 {
		return checkFailed("%s in %s is down", ep.IfName, path)
	}
	if ep.Address.IsValid() {
		addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("ovlsw-cni: addresses of %s in %s: %v", ep.IfName, path, err), "")
		}
		found := false
		for _, a := range addrs {
			found = found || (a.IPNet != nil && prefixOf(*a.IPNet) == ep.Address)
		}
		if !found {
			return checkFailed("%s in %s does not have address %v", ep.IfName, path, ep.Address)
		}
	}
	if ep.Gateway.IsValid() {
		family := netlink.FAMILY_V4
		if ep.Gateway.Is6() {
			family = netlink.FAMILY_V6
		}
		routes, err := h.RouteList(nil, family)
		if err != nil {
			return types.NewError(types.ErrInternal, fmt.Sprintf("ovlsw-cni: routes in %s: %v", path, err), "")
		}
		// The default route goes via the gateway on this link, or via
		// another link: a container on several networks keeps its first
		// network's default route (tap.Place adds none where one exists).
		found := false
		for _, r := range routes {
			isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask))
			gw, _ := netip.AddrFromSlice(r.Gw)
			found = found || (isDefault && (gw.Unmap() == ep.Gateway || r.LinkIndex != attrs.Index))
		}
		if !found {
			return checkFailed("%s in %s has no default route via %v", ep.IfName, path, ep.Gateway)
		}
	}
	return nil
}

// prefixOf is n as a netip.Prefix (an IPv4 address unmapped); invalid if n
// is not an address and mask of one family.
func prefixOf(n net.IPNet) netip.Prefix {
	addr, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 {
		return netip.Prefix{}
	}
	if addr.Is4In6() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(addr.Unmap(), ones)
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func checkFailed(format string, args ...any) error {
	return types.NewError(errCheckFailed, "ovlsw-cni: CHECK: "+fmt.Sprintf(format, args...), "")
}

// cmdStatus (spec 1.1) answers whether ADD can succeed: the daemon runs and
// serves the configured network.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var n control.NetworkDetail
	err = newClient(conf.Socket).Do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(conf.Network), nil, &n)
	switch {
	case err == nil:
		return nil
	case control.IsNotFound(err), errors.Is(err, control.ErrNotRunning):
		return types.NewError(errPluginNotAvailable, "ovlsw-cni: "+err.Error(), "")
	}
	return cniError(err)
}
