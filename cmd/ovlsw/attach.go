package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// call sends one control request.
func (cf *clientFlags) call(method, path string, body, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return control.NewClient(cf.socket).Do(ctx, method, path, body, v)
}

func newAttach() *cobra.Command {
	var cf clientFlags
	var req control.AttachRequest
	var ip string
	c := &cobra.Command{
		Use:   "attach --netns NAME|PATH --network NAME",
		Short: "Put a network namespace on an overlay network through a new TAP port",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req.DNSName = req.Name
			if ip != "" {
				p, err := netip.ParsePrefix(ip)
				if err != nil {
					return fmt.Errorf("--ip %q: want ADDRESS/PREFIX, e.g. 10.0.9.5/24", ip)
				}
				req.Address = p
			}
			var ep control.Endpoint
			if err := cf.call(http.MethodPost, "/v1/attach", req, &ep); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, ep)
			}
			writeEndpoints(os.Stdout, []control.Endpoint{ep})
			return nil
		},
	}
	cf.add(c)
	f := c.Flags()
	f.StringVar(&req.Netns, "netns", "", "network namespace: a name under /run/netns or a path (/proc/PID/ns/net)")
	f.StringVar(&req.Network, "network", "default", "network to attach to")
	f.StringVar(&ip, "ip", "", "`ADDRESS/PREFIX` for the interface, in one of the network's subnets (default: allocated)")
	f.Var(prefixFlag{&req.Subnet}, "subnet", "allocate the address from this `CIDR`, one of the network's subnets (default: the first with room)")
	f.StringVar(&req.IfName, "ifname", "eth0", "interface name inside the namespace")
	f.StringVar(&req.MAC, "mac", "", "MAC address (default: generated, locally administered)")
	f.StringVar(&req.Name, "name", "", "endpoint `NAME`, unique in the network, which its other endpoints resolve (default: the namespace's name)")
	f.StringArrayVar(&req.Aliases, "alias", nil, "another DNS `NAME` of the endpoint (repeatable)")
	f.StringVar(&req.Service, "service", "", "`SERVICE` the endpoint is a task of: tasks.SERVICE resolves to every task, SERVICE to all in a fresh random order")
	f.BoolVar(&req.NoResolvConf, "no-resolv-conf", false, "do not write /etc/netns/NETNS/resolv.conf (nameserver: the network's DNS address)")
	f.BoolVar(&req.NoPortSecurity, "no-port-security", false, "let the port send from other MACs and claim other addresses (a container that routes or bridges)")
	_ = c.MarkFlagRequired("netns")
	return c
}

func newDetach() *cobra.Command {
	var cf clientFlags
	var req control.DetachRequest
	c := &cobra.Command{
		Use:   "detach --netns NAME|PATH",
		Short: "Remove an attached interface and free its address",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var ep control.Endpoint
			if err := cf.call(http.MethodPost, "/v1/detach", req, &ep); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, ep)
			}
			fmt.Printf("detached %s from %s, %v freed\n", ep.Name, ep.Network, ep.Address.Addr())
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&req.Netns, "netns", "", "network namespace: a name under /run/netns or a path")
	c.Flags().StringVar(&req.IfName, "ifname", "eth0", "interface name inside the namespace")
	_ = c.MarkFlagRequired("netns")
	return c
}

func writeEndpoints(out io.Writer, eps []control.Endpoint) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ENDPOINT\tNETWORK\tNODE\tIFNAME\tMAC\tADDRESS\tGATEWAY")
	for _, ep := range eps {
		gw := "-"
		if ep.Gateway.IsValid() {
			gw = ep.Gateway.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ep.Name, ep.Network, ep.Node, ep.IfName, ep.MAC, ep.Address, gw)
	}
	w.Flush()
}

func newNetwork() *cobra.Command {
	c := &cobra.Command{Use: "network", Short: "Create, list, inspect and remove overlay networks"}
	c.AddCommand(newNetworkCreate(), newNetworkLs(), newNetworkInspect(), newNetworkRm())
	return c
}

func newNetworkCreate() *cobra.Command {
	var cf clientFlags
	var n control.Network
	var vni uint32
	var subnets, gateways []string
	var group, dnsAddr string
	c := &cobra.Command{
		Use:   "create NAME --vni N [--subnet CIDR]... [--gateway IP]... [--dns-address IP] [--mtu N] [--group ADDR] [--encrypted]",
		Short: "Create an overlay network",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n.Name, n.VNI = args[0], vni
			if err := fdb.CheckVNI(vni); err != nil {
				return errors.New(flagText(err.Error()))
			}
			var err error
			if err := setSubnets(&n, subnets, gateways); err != nil { // routes.go
				return err
			}
			if group != "" {
				if n.Group, err = netip.ParseAddr(group); err != nil {
					return fmt.Errorf("--group %q is not an IP address", group)
				}
				if err := gossip.CheckGroup(n.Group); err != nil {
					return err
				}
			}
			if dnsAddr != "" {
				if n.DNS, err = netip.ParseAddr(dnsAddr); err != nil {
					return fmt.Errorf("--dns-address %q is not an IP address", dnsAddr)
				}
				sub := n.Subnet
				for _, s := range n.Subnets {
					if s.Subnet.Contains(n.DNS) {
						sub = s.Subnet
					}
				}
				if len(n.Subnets) > 0 && !sub.Contains(n.DNS) {
					sub = n.Subnets[0].Subnet
				}
				if err := gossip.CheckDNS(n.DNS, sub); err != nil {
					return fmt.Errorf("--dns-address: %v", err)
				}
			}
			var d control.NetworkDetail
			if err := cf.call(http.MethodPost, "/v1/networks", n, &d); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, d)
			}
			writeNetworks(os.Stdout, []control.Network{d.Network})
			return nil
		},
	}
	cf.add(c)
	c.Flags().Uint32Var(&vni, "vni", 0, "VXLAN network identifier, 1..16777215")
	c.Flags().StringArrayVar(&subnets, "subnet", nil, "`CIDR` to allocate endpoint addresses from; repeat for several subnets, IPv4 and IPv6, which every node routes between")
	c.Flags().StringArrayVar(&gateways, "gateway", nil, "gateway `IP` of the subnet that holds it (endpoints get a default route via it); repeat for each subnet")
	c.Flags().StringVar(&dnsAddr, "dns-address", "", "`IP` in a subnet of the network where every node's switch answers its DNS queries (default: the first subnet's gateway)")
	c.Flags().IntVar(&n.MTU, "mtu", 0, "MTU of the network's ports (default: the node's overlay MTU: underlay MTU minus 50, or 70 over IPv6)")
	c.Flags().StringVar(&n.Flood, "flood", "", "flood policy (see ovlsw up --flood; default: the node's)")
	c.Flags().BoolVar(&n.Encrypted, "encrypted", false, "seal every datagram of the network between nodes (keys per pair of nodes, rotated; see docs/encryption.md); its MTU is 32 bytes less")
	c.Flags().StringVar(&group, "group", "", "underlay multicast group `ADDR` the network's floods go to, as a kernel vxlan's group (default: a copy to each node)")
	_ = c.MarkFlagRequired("vni")
	return c
}

func newNetworkLs() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "ls",
		Short: "List networks",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var ns []control.Network
			if err := cf.get("/v1/networks", &ns); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, ns)
			}
			writeNetworks(os.Stdout, ns)
			return nil
		},
	}
	cf.add(c)
	return c
}

func newNetworkInspect() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a network and its endpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var d control.NetworkDetail
			if err := cf.get("/v1/networks/"+args[0], &d); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, d)
			}
			writeNetworks(os.Stdout, []control.Network{d.Network})
			if d.RouterMAC != "" {
				fmt.Printf("router MAC %s: every node answers for the gateways and routes between the subnets\n", d.RouterMAC)
			}
			fmt.Println()
			writeEndpoints(os.Stdout, d.Endpoints)
			return nil
		},
	}
	cf.add(c)
	return c
}

func newNetworkRm() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a network with no endpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return cf.call(http.MethodDelete, "/v1/networks/"+args[0], nil, nil)
		},
	}
	cf.add(c)
	return c
}

func writeNetworks(out io.Writer, ns []control.Network) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NETWORK\tVNI\tSUBNET\tGATEWAY\tDNS\tMTU\tFLOOD\tGROUP\tENCRYPTED")
	for _, n := range ns {
		subnet, gw := subnetsText(n) // routes.go
		group, dnsAddr := "-", "-"
		if n.Group.IsValid() {
			group = n.Group.String()
		}
		if n.DNS.IsValid() {
			dnsAddr = n.DNS.String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%v\n", n.Name, n.VNI, subnet, gw, dnsAddr, n.MTU, n.Flood, group, n.Encrypted)
	}
	w.Flush()
}
