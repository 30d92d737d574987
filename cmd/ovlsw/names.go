package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
)

func newNames() *cobra.Command {
	var cf clientFlags
	var network string
	c := &cobra.Command{
		Use:   "names [--network NAME]",
		Short: "List the names the switch answers DNS queries with: name, aliases, service, addresses, node",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			path := "/v1/names"
			if network != "" {
				path += "?network=" + url.QueryEscape(network)
			}
			var ns []control.Name
			if err := cf.get(path, &ns); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, ns)
			}
			writeNames(os.Stdout, ns)
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&network, "network", "", "only this network's names")
	return c
}

func writeNames(out io.Writer, ns []control.Name) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NETWORK\tNAME\tALIASES\tSERVICE\tADDRESSES\tNODE\tMAC")
	for _, n := range ns {
		ips := make([]string, len(n.IPs))
		for i, ip := range n.IPs {
			ips[i] = ip.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Network, n.Name, dash(strings.Join(n.Aliases, ",")),
			dash(n.Service), dash(strings.Join(ips, ",")), n.Node, n.MAC)
	}
	w.Flush()
}

// writeDNS writes the name service's counters for ovlsw status.
func writeDNS(out io.Writer, d *control.DNS) {
	fmt.Fprintln(out, "\nDNS")
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	ups := dash(strings.Join(d.Upstreams, ", "))
	if len(d.Upstreams) == 0 {
		ups = "none: outside names answered REFUSED"
	}
	fmt.Fprintf(w, "upstreams\t%s\n", ups)
	fmt.Fprintf(w, "queries\t%d (%d over TCP)\n", d.Queries, d.TCP)
	fmt.Fprintf(w, "answered\t%d (%d no data)\n", d.Answered, d.NoData)
	fmt.Fprintf(w, "nxdomain\t%d\n", d.NXDomain)
	fmt.Fprintf(w, "forwarded\t%d (%d answers relayed, %d servfail)\n", d.Forwarded, d.Upstream, d.ServFail)
	fmt.Fprintf(w, "refused\t%d\n", d.Refused)
	fmt.Fprintf(w, "formerr\t%d\n", d.FormErr)
	fmt.Fprintf(w, "truncated\t%d\n", d.Truncated)
	reasons := make([]string, 0, len(d.Dropped))
	for r := range d.Dropped {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "dropped %s\t%d\n", r, d.Dropped[r])
	}
	w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
