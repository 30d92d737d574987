package main

import (
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
)

func newPeers() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "peers",
		Short: "List gossip members: name, address, VTEP, VNIs, state, bindings",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var ms []control.Member
			if err := cf.get("/v1/peers", &ms); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, ms)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tGOSSIP\tVTEP\tVNIS\tSTATE\tBINDINGS")
			for _, m := range ms {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", m.Name, m.Addr, m.VTEP, joinUints(m.VNIs), m.State, m.Bindings)
			}
			return w.Flush()
		},
	}
	cf.add(c)
	return c
}

func newKeys() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Rotate gossip keys on a running node: install everywhere, use everywhere, remove the old one",
	}
	for _, op := range []string{"install", "use", "remove"} {
		var cf clientFlags
		sub := &cobra.Command{
			Use:   op + " KEY",
			Short: op + " a base64 32-byte gossip key",
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return cf.call(http.MethodPost, "/v1/keys", control.KeyRequest{Op: op, Key: args[0]}, nil)
			},
		}
		cf.add(sub)
		c.AddCommand(sub)
	}
	var cf clientFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List installed keys, the one in use first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var keys []string
			if err := cf.get("/v1/keys", &keys); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, keys)
			}
			for i, k := range keys {
				mark := ""
				if i == 0 {
					mark = "  (in use)"
				}
				fmt.Println(k + mark)
			}
			return nil
		},
	}
	cf.add(list)
	c.AddCommand(list)
	return c
}

func newToken() *cobra.Command {
	var cf clientFlags
	var rotate bool
	c := &cobra.Command{
		Use:   "token [--rotate]",
		Short: "Print this node's join token (ovlsw up --join THIS_NODE --token TOKEN); --rotate replaces it",
		Long: `Print this node's join token. A host holding it can join the cluster
through this node: ovlsw up --join <this node's address> --token TOKEN.

--rotate replaces the token: tokens this node printed before are refused
from then on (other members' tokens are their own). Members already in
the cluster are not affected; they hold the cluster secret.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var tok control.Token
			var err error
			if rotate {
				err = cf.call(http.MethodPost, "/v1/token", control.TokenRequest{Rotate: true}, &tok)
			} else {
				err = cf.get("/v1/token", &tok)
			}
			if err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, tok)
			}
			fmt.Println(tok.Token)
			return nil
		},
	}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace this node's join token; tokens printed before are refused from now on")
	cf.add(c)
	return c
}
