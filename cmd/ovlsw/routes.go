package main

// This file holds the CLI side of routing between subnets: reading
// repeated --subnet and --gateway flags into a network, and `ovlsw routes`.

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// setSubnets fills n's subnets from the --subnet and --gateway flags: each
// gateway goes with the subnet that holds it. One subnet is sent as
// Subnet and Gateway, as to nodes that know only one; several as Subnets.
func setSubnets(n *control.Network, subnets, gateways []string) error {
	subs := make([]control.Subnet, 0, len(subnets))
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--subnet %q: want a CIDR prefix, e.g. 10.0.9.0/24", s)
		}
		subs = append(subs, control.Subnet{Subnet: p})
	}
	if len(subs) == 0 && len(gateways) > 0 {
		return fmt.Errorf("--gateway needs a --subnet to be in")
	}
	for _, g := range gateways {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return fmt.Errorf("--gateway %q is not an IP address", g)
		}
		found := false
		for i := range subs {
			if !subs[i].Subnet.Contains(a) {
				continue
			}
			if subs[i].Gateway.IsValid() {
				return fmt.Errorf("--gateway %v: subnet %v has gateway %v already", a, subs[i].Subnet, subs[i].Gateway)
			}
			subs[i].Gateway, found = a, true
			break
		}
		if !found {
			if len(subs) == 1 {
				subs[0].Gateway = a // the daemon says why it is wrong
				continue
			}
			return fmt.Errorf("--gateway %v is in none of the subnets given", a)
		}
	}
	switch len(subs) {
	case 0:
	case 1:
		n.Subnet, n.Gateway = subs[0].Subnet, subs[0].Gateway
	default:
		n.Subnets = subs
	}
	return nil
}

// subnetsText formats n's subnets and gateways for the network table.
func subnetsText(n control.Network) (subnet, gateway string) {
	subs := n.Subnets
	if len(subs) == 0 && n.Subnet.IsValid() {
		subs = []control.Subnet{{Subnet: n.Subnet, Gateway: n.Gateway}}
	}
	var ss, gs []string
	for _, s := range subs {
		ss = append(ss, s.Subnet.String())
		if s.Gateway.IsValid() {
			gs = append(gs, s.Gateway.String())
		}
	}
	subnet, gateway = strings.Join(ss, ","), strings.Join(gs, ",")
	if subnet == "" {
		subnet = "-"
	}
	if gateway == "" {
		gateway = "-"
	}
	return subnet, gateway
}

func newRoutes() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "routes",
		Short: "List what the node routes: each network's subnets, gateways, router MAC and destinations",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var rs control.Routes
			if err := cf.get("/v1/routes", &rs); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, rs)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NETWORK\tVNI\tDESTINATION\tGATEWAY\tVIA MAC\tWHERE")
			for _, n := range rs.Networks {
				for _, s := range n.Subnets {
					gw := "-"
					if s.Gateway.IsValid() {
						gw = s.Gateway.String()
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", n.Network, n.VNI, s.Subnet, gw, n.RouterMAC, "gateway")
				}
				for _, h := range n.Hosts {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", n.Network, n.VNI, h.Address, "-", h.MAC, h.Where)
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			st := rs.Stats
			fmt.Printf("\nrouted %d, echo replies %d, time exceeded %d, unreachable %d, too big %d, errors rate-limited %d\n",
				st.Routed, st.EchoReplies, st.TimeExceeded, st.Unreachable, st.TooBig, st.Limited)
			return nil
		},
	}
	cf.add(c)
	return c
}

// prefixFlag is a pflag.Value holding a CIDR prefix.
type prefixFlag struct{ p *netip.Prefix }

func (f prefixFlag) String() string {
	if f.p == nil || !f.p.IsValid() {
		return ""
	}
	return f.p.String()
}

func (f prefixFlag) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("want a CIDR prefix, e.g. 10.0.9.0/24")
	}
	*f.p = p
	return nil
}

func (prefixFlag) Type() string { return "CIDR" }
