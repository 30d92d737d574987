package main

// This file holds ovlsw capture, trace and events: clients of the control
// API's observability endpoints.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
)

// interrupted is a context that ends on SIGINT or SIGTERM: streams end
// cleanly, files are closed.
func interrupted() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newCapture() *cobra.Command {
	var socket, port, peer, file string
	var vni uint32
	var count uint64
	c := &cobra.Command{
		Use:   "capture (--port NAME | --vni N | --peer IP) [--count N] [-w FILE]",
		Short: "Capture the frames the switch sees at a port, VNI or peer, as pcapng",
		Long: `Capture the frames the switch sees at one point, as pcapng on stdout or in a file:

  ovlsw capture --port ovl42 | tshark -r -
  ovlsw capture --vni 42 -w vni42.pcapng --count 100
  ovlsw capture --peer 192.168.91.2 | wireshark -k -i -

--port is a port name (ovlsw status) or an endpoint name. Each packet's
direction (in: read from the port or received from the peer; out: written
or sent) is in its pcapng flags and its comment, with the VNI and, for a
frame the switch dropped, the drop reason (tshark -T fields -e frame.comment).
Frames are copied off the data path into a bounded buffer: a reader that
falls behind loses frames (ovlsw_capture_lost_total), forwarding never waits.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			given := 0
			if port != "" {
				q.Set("port", port)
				given++
			}
			if c.Flags().Changed("vni") {
				if err := fdb.CheckVNI(vni); err != nil {
					return errors.New(flagText(err.Error()))
				}
				q.Set("vni", strconv.FormatUint(uint64(vni), 10))
				given++
			}
			if peer != "" {
				if _, err := netip.ParseAddr(peer); err != nil {
					return fmt.Errorf("--peer %q is not an IP address", peer)
				}
				q.Set("peer", peer)
				given++
			}
			if given != 1 {
				return errors.New("give one of --port, --vni or --peer")
			}
			if c.Flags().Changed("count") {
				if count == 0 {
					return errors.New("--count 0: give the number of frames to capture, from 1")
				}
				q.Set("count", strconv.FormatUint(count, 10))
			}
			var out io.Writer = os.Stdout
			if file == "" || file == "-" {
				if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					return errors.New("pcapng is binary: pipe it (| tshark -r -) or give -w FILE")
				}
			} else {
				f, err := os.Create(file)
				if err != nil {
					return fmt.Errorf("-w: %w", err)
				}
				defer f.Close()
				out = f
			}
			ctx, cancel := interrupted()
			defer cancel()
			body, err := control.NewClient(socket).Stream(ctx, "/v1/capture?"+q.Encode())
			if err != nil {
				return err
			}
			defer body.Close()
			if _, err := io.Copy(out, body); err != nil && ctx.Err() == nil && !errors.Is(err, syscall.EPIPE) {
				return fmt.Errorf("capture: %w", err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&socket, "socket", control.DefaultSocket, "control socket of the ovlsw node")
	f.StringVar(&port, "port", "", "capture at this port (a port or endpoint `NAME`)")
	f.Uint32Var(&vni, "vni", 0, "capture every frame of this VNI, at its ports and peers")
	f.StringVar(&peer, "peer", "", "capture the frames exchanged with the VTEP at this `IP`")
	f.Uint64Var(&count, "count", 0, "stop after N frames (default: until interrupted)")
	f.StringVarP(&file, "write", "w", "", "write pcapng to `FILE` instead of stdout")
	return c
}

func newTrace() *cobra.Command {
	var cf clientFlags
	var req control.TraceRequest
	c := &cobra.Command{
		Use:   "trace --network NET --from ENDPOINT|PORT --to IP|MAC [--proto tcp/80]",
		Short: "Show what the switch would do with a frame, step by step, without sending it",
		Long: `Build the frames the source would send and walk them through the switch's
forwarding decisions in a dry run (nothing is learned, counted or sent):
admission and port security, the ARP/ND proxy's answer or not, the FDB
entry (origin, owner, age), the flood policy and rate, and the VTEP and
outer UDP source port each copy would leave by, or why it is dropped.
With --to IP, the address question (ARP, or ND for IPv6) is traced first,
then the packet to the MAC it resolves to (via the gateway for an address
outside the network's subnet).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, v string }{{"--network", req.Network}, {"--from", req.From}, {"--to", req.To}} {
				if f.v == "" {
					return fmt.Errorf("%s is required", f.name)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var t control.Trace
			if err := control.NewClient(cf.socket).Do(ctx, "POST", "/v1/trace", req, &t); err != nil {
				return err
			}
			if cf.json {
				return printJSON(os.Stdout, t)
			}
			writeTrace(os.Stdout, t)
			return nil
		},
	}
	cf.add(c)
	f := c.Flags()
	f.StringVar(&req.Network, "network", "", "`NETWORK` the source is on (required)")
	f.StringVar(&req.From, "from", "", "the source: an endpoint or port `NAME` on this node (required)")
	f.StringVar(&req.To, "to", "", "the destination `IP` or MAC (required)")
	f.StringVar(&req.Proto, "proto", "icmp", "what the packet is: icmp, tcp/PORT or udp/PORT")
	f.StringVar(&req.SrcMAC, "src-mac", "", "send from this `MAC` instead of the source's own (what port security makes of a changed MAC)")
	return c
}

func writeTrace(out io.Writer, t control.Trace) {
	for _, n := range t.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	for i, f := range t.Frames {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s\n  from port %s, VNI %d\n", f.Frame, f.Port, f.VNI)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, s := range f.Steps {
			fmt.Fprintf(w, "  %s\t%s\t%s\n", s.Stage, s.Result, s.Detail)
		}
		w.Flush()
		switch f.Verdict {
		case "drop":
			fmt.Fprintf(out, "  => dropped (%s)\n", f.Drop)
		case "answered":
			fmt.Fprintf(out, "  => answered on port %s: %s\n", f.Port, f.Answer)
		default:
			var outs []string
			for _, o := range f.Out {
				if o.Port != "" {
					outs = append(outs, "port "+o.Port)
				} else {
					outs = append(outs, fmt.Sprintf("VTEP %v from UDP port %d", o.VTEP, o.SourcePort))
				}
			}
			fmt.Fprintf(out, "  => %s: %s\n", f.Verdict, strings.Join(outs, ", "))
		}
	}
}

func newEvents() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "events",
		Short: "Follow the node's changes as they happen: FDB, members, networks, endpoints",
		Long: `Follow the node's changes until interrupted: FDB entries added, moved and
removed; MAC duplicates flagged and addresses moving between MACs; members
joining, suspect, dead and leaving; networks and endpoints added and
removed; gossip key rotations. A follower that falls behind loses events
and is told how many (kind lost); the node never waits for it.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, cancel := interrupted()
			defer cancel()
			body, err := control.NewClient(cf.socket).Stream(ctx, "/v1/events")
			if err != nil {
				return err
			}
			defer body.Close()
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			w := bufio.NewWriter(os.Stdout)
			for sc.Scan() {
				if cf.json {
					w.Write(sc.Bytes())
					w.WriteByte('\n')
				} else {
					var e control.Event
					if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
						return fmt.Errorf("events: %w", err)
					}
					w.WriteString(eventLine(e))
				}
				if err := w.Flush(); err != nil {
					return nil // stdout closed
				}
			}
			if err := sc.Err(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("events: %w", err)
			}
			return nil
		},
	}
	cf.add(c)
	return c
}

// eventLine formats an event for a terminal.
func eventLine(e control.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-16s", e.Time.Local().Format("15:04:05.000"), e.Kind)
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	if e.VNI != 0 {
		add("vni", strconv.FormatUint(uint64(e.VNI), 10))
	}
	add("name", e.Name)
	add("node", e.Node)
	add("mac", e.MAC)
	if e.IP.IsValid() {
		add("ip", e.IP.String())
	}
	add("at", e.Where)
	add("from", e.From)
	add("origin", e.Origin)
	if e.Epoch != 0 {
		add("epoch", strconv.FormatUint(e.Epoch, 10))
	}
	if e.Lost != 0 {
		add("lost", strconv.FormatUint(e.Lost, 10))
	}
	b.WriteByte('\n')
	return b.String()
}
