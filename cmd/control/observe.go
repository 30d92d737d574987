package control

// This file holds the wire types and client calls of the observability
// endpoints: GET /v1/events (newline-delimited JSON, until the client
// hangs up), GET /v1/capture (pcapng, until the count or the client hangs
// up) and POST /v1/trace.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"
)

// Event is one change on the node, as GET /v1/events streams it.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is fdb_added, fdb_moved, fdb_removed, duplicate_mac, ip_moved,
	// member_joined, member_suspect, member_dead, member_left,
	// network_added, network_removed, endpoint_added, endpoint_removed,
	// name_added, name_moved, name_removed (the name service's names:
	// Where is the network, MAC the owner) or key_rotated; follow is the
	// first event of a stream (it is live from there) and lost says a
	// follower fell behind.
	Kind   string     `json:"kind"`
	VNI    uint32     `json:"vni,omitempty"`
	MAC    string     `json:"mac,omitempty"`
	IP     netip.Addr `json:"ip,omitzero"`
	Where  string     `json:"where,omitempty"` // a port name or a VTEP: where the MAC is now
	From   string     `json:"from,omitempty"`  // where it was (a move), or the MAC an address left
	Origin string     `json:"origin,omitempty"`
	Node   string     `json:"node,omitempty"` // the member, or an entry's owner
	Name   string     `json:"name,omitempty"` // the network or endpoint
	Epoch  uint64     `json:"epoch,omitempty"`
	Lost   uint64     `json:"lost,omitempty"` // with kind lost: events this follower missed
}

// TraceRequest asks the node to trace a frame (POST /v1/trace).
type TraceRequest struct {
	Network string `json:"network"`
	From    string `json:"from"`            // an endpoint name or a port name
	To      string `json:"to"`              // an IP address or a MAC
	Proto   string `json:"proto,omitempty"` // icmp (default), tcp/PORT, udp/PORT
	// SrcMAC, if set, is the source MAC the frames carry instead of the
	// source's own: what if it sent from another (port security)?
	SrcMAC string `json:"src_mac,omitempty"`
}

// TraceStep is one decision of a trace.
type TraceStep struct {
	Stage  string `json:"stage"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// TraceFDB is the FDB entry a trace found for the destination.
type TraceFDB struct {
	Origin string         `json:"origin"`
	Port   string         `json:"port,omitempty"`
	VTEP   netip.AddrPort `json:"vtep,omitzero"`
	Node   string         `json:"node,omitempty"`
	Seq    uint64         `json:"seq"`
	Age    float64        `json:"age_seconds"`
	Dup    bool           `json:"duplicate,omitempty"`
}

// TraceOut is one copy of a traced frame leaving the switch.
type TraceOut struct {
	Port       string         `json:"port,omitempty"`
	VTEP       netip.AddrPort `json:"vtep,omitzero"`
	SourcePort uint16         `json:"source_port,omitempty"`
	Group      bool           `json:"group,omitempty"`
}

// FrameTrace is one frame's trace: what it is and what the switch does
// with it.
type FrameTrace struct {
	Frame   string      `json:"frame"` // e.g. "ARP who-has 10.0.9.3 tell 10.0.9.2"
	Port    string      `json:"port"`
	VNI     uint32      `json:"vni"`
	Steps   []TraceStep `json:"steps"`
	Verdict string      `json:"verdict"` // answered, local, remote, flood, drop
	Drop    string      `json:"drop,omitempty"`
	Answer  string      `json:"answer,omitempty"`
	FDB     *TraceFDB   `json:"fdb,omitempty"`
	Flow    uint32      `json:"flow_hash,omitempty"`
	Out     []TraceOut  `json:"out,omitempty"`
}

// Trace is the answer to POST /v1/trace: the frames the source would send,
// in order (address resolution first when --to is an IP), each traced.
type Trace struct {
	Request TraceRequest `json:"request"`
	Notes   []string     `json:"notes,omitempty"` // what the node worked out before tracing (routing via the gateway, MACs)
	Frames  []FrameTrace `json:"frames"`
}

// Stream GETs path and returns the answer's body, which the daemon keeps
// writing until it is done or ctx ends: no timeout but ctx's. A non-2xx
// answer is an *APIError.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ovlsw"+path, nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: c.http.Transport} // no overall timeout: the stream lasts
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("GET %s: %s", path, resp.Status)
		}
		return nil, &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	return resp.Body, nil
}
