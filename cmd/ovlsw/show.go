package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/vtep"
)

// clientFlags are the flags every control API client shares.
type clientFlags struct {
	socket string
	json   bool
}

func (cf *clientFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&cf.socket, "socket", control.DefaultSocket, "control socket of the ovlsw node")
	c.Flags().BoolVar(&cf.json, "json", false, "print JSON")
}

func (cf *clientFlags) get(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return control.NewClient(cf.socket).Get(ctx, path, v)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newStatus() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the node, its ports, peers and counters",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st control.Status
			if err := cf.get("/v1/status", &st); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, st)
			}
			writeStatus(os.Stdout, st)
			return nil
		},
	}
	cf.add(c)
	return c
}

func writeStatus(out io.Writer, st control.Status) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "node\t%s\n", st.Node.Name)
	fmt.Fprintf(w, "vtep\t%s\n", st.Node.VTEP)
	fmt.Fprintf(w, "vnis\t%s\n", joinUints(st.Node.VNIs))
	fmt.Fprintf(w, "pid\t%d (%d goroutines)\n", st.Node.PID, st.Node.Goroutines)
	fmt.Fprintf(w, "uptime\t%s\n", time.Since(st.Node.Started).Round(time.Second))
	fmt.Fprintf(w, "offload\t%s\n", st.Offload)
	fmt.Fprintf(w, "fdb\t%d entries, %d MACs refused at the learning limits\n", st.FDB.Entries, st.FDB.Refused)
	if e := st.Encryption; e != nil {
		nets := strings.Join(e.Networks, ",")
		if nets == "" {
			nets = "none"
		}
		fmt.Fprintf(w, "encryption	%s, %s, rekey every %v (epoch %d), public key %s published %v, keys of %d peers; encrypted networks: %s\n",
			e.Mode, e.Suite, time.Duration(e.RekeyInterval*float64(time.Second)), e.Epoch, cmp.Or(e.PublicKey, "-"), e.Published, e.PeersWithKeys, nets)
	}
	if g := st.Gossip; g != nil {
		bound := ""
		if g.Bind.IsValid() {
			bound = fmt.Sprintf(" (advertised; bound to %s)", g.Bind)
		}
		fmt.Fprintf(w, "gossip\t%s%s, %d members alive, encrypted: %v\n", g.Addr, bound, g.Members, g.Encrypted)
		if g.Cluster != "" {
			fmt.Fprintf(w, "cluster\t%s, gossip key epoch %d, rotated every %v\n", g.Cluster, g.KeyEpoch, time.Duration(g.KeyRotation*float64(time.Second)))
		} else {
			fmt.Fprintf(w, "cluster\tnone: --insecure (any host reaching the gossip port can join)\n")
		}
		fmt.Fprintf(w, "bindings\t%d local, %d remote\n", g.LocalBindings, g.RemoteBindings)
		fmt.Fprintf(w, "gossip messages\t%d in, %d out, %d malformed\n", g.MessagesIn, g.MessagesOut, g.Malformed)
	}
	w.Flush()

	fmt.Fprintln(out, "\nPORTS")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tVNI\tMTU\tRX FRAMES\tRX BYTES\tTX FRAMES\tTX BYTES\tQUEUE DROPS\tERROR\t")
	for _, p := range st.Ports {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.Name, p.VNI, p.MTU, p.RxFrames, p.RxBytes, p.TxFrames, p.TxBytes, p.QueueDrops, p.Error)
	}
	w.Flush()

	fmt.Fprintln(out, "\nPEERS")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "VTEP\tVNIS\tRX FRAMES\tRX BYTES\tTX FRAMES\tTX BYTES\t")
	for _, p := range st.Peers {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t\n", p.Addr, joinUints(p.VNIs), p.RxFrames, p.RxBytes, p.TxFrames, p.TxBytes)
	}
	w.Flush()

	fmt.Fprintln(out, "\nPROXY")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "arp_answered\t%d\nnd_answered\t%d\nflooded\t%d\ndropped\t%d\ngratuitous_sent\t%d\n",
		st.Proxy.ARPAnswered, st.Proxy.NDAnswered, st.Proxy.Flooded, st.Proxy.Dropped, st.Proxy.GratuitousSent)
	w.Flush()

	if st.DNS != nil {
		writeDNS(out, st.DNS)
	}

	fmt.Fprintln(out, "\nDROPS")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, r := range vtep.DropReasons() {
		fmt.Fprintf(w, "%s\t%d\t\n", r, st.Drops[r.String()])
	}
	w.Flush()
}

func newFDB() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "fdb",
		Short: "List forwarding entries: VNI, MAC, IPs, where, origin, age",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var es []control.FDBEntry
			if err := cf.get("/v1/fdb", &es); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, es)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "VNI\tMAC\tIP\tWHERE\tORIGIN\tNODE\tSEQ\tAGE")
			for _, e := range es {
				ips := make([]string, len(e.IPs))
				for i, ip := range e.IPs {
					ips[i] = ip.String()
				}
				ip, node := strings.Join(ips, ","), e.Node
				if ip == "" {
					ip = "-"
				}
				if node == "" {
					node = "-"
				}
				origin := e.Origin
				if e.Dup {
					origin += " (duplicate)"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.VNI, e.MAC, ip, e.Where, origin, node, e.Seq,
					time.Duration(e.Age*float64(time.Second)))
			}
			return w.Flush()
		},
	}
	cf.add(c)
	return c
}

func joinUints(vs []uint32) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ",")
}
