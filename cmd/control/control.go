// Package control is the daemon's control API: JSON over HTTP on a unix
// socket. The daemon serves it; ovlsw status, fdb and the other client
// commands call it. Anyone can read it with
// `curl --unix-socket /run/ovlsw/ovlsw.sock http://ovlsw/v1/status`.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/ovlsw/ovlsw.sock"

// Node describes the running daemon.
type Node struct {
	Name    string         `json:"name"`
	VTEP    netip.AddrPort `json:"vtep"`
	VNIs    []uint32       `json:"vnis"`
	Started time.Time      `json:"started"`
	PID     int            `json:"pid"`
	// Goroutines is the daemon's goroutine count: a constant few plus one
	// reader per port queue and per receive socket, so it tracks ports,
	// and a count that grows while ports do not is a leak.
	Goroutines int `json:"goroutines"`
}

// Status is the answer to GET /v1/status.
type Status struct {
	Node       Node        `json:"node"`
	Gossip     *Gossip     `json:"gossip,omitempty"`
	FDB        FDBStat     `json:"fdb"`
	Encryption *Encryption `json:"encryption,omitempty"`
	Stats
}

// Encryption describes the node's encrypted networks (no key, only the
// public key's fingerprint). Drops by reason are in Stats.Drops.
type Encryption struct {
	Mode          string   `json:"mode"`                 // "x25519" or "static network key"
	PublicKey     string   `json:"public_key,omitempty"` // fingerprint of this node's public key
	Suite         string   `json:"suite"`                // the AEAD this node seals with
	RekeyInterval float64  `json:"rekey_interval_seconds"`
	Epoch         uint64   `json:"epoch"`
	Published     bool     `json:"published"`       // the public key is in this node's gossip metadata
	PeersWithKeys int      `json:"peers_with_keys"` // VTEPs whose keys are known
	Networks      []string `json:"networks"`        // the encrypted networks
}

// FDBStat summarises the forwarding table.
type FDBStat struct {
	Entries int    `json:"entries"`
	Refused uint64 `json:"refused"` // MACs not learned: a port or VNI at its limit
}

// FDBEntry is one row of GET /v1/fdb.
type FDBEntry struct {
	VNI    uint32       `json:"vni"`
	MAC    string       `json:"mac"`
	IPs    []netip.Addr `json:"ips,omitempty"`
	Where  string       `json:"where"` // a port name, or the VTEP address
	Port   string       `json:"port,omitempty"`
	VTEP   string       `json:"vtep,omitempty"`
	Origin string       `json:"origin"`
	Node   string       `json:"node,omitempty"`
	Seq    uint64       `json:"seq"`
	Age    float64      `json:"age_seconds"`
	Dup    bool         `json:"duplicate,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Client talks to a daemon's control socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Socket: path, http: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
		Timeout: 10 * time.Second,
	}}
}

// Get fetches path (e.g. "/v1/status") and decodes the JSON answer into v.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	return c.Do(ctx, http.MethodGet, path, nil, v)
}

// Do sends a request with an optional JSON body and decodes the answer.
func (c *Client) Do(ctx context.Context, method, path string, body, v any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytesReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ovlsw"+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.Socket, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// APIError is a non-2xx answer: its HTTP status (400 a refused request,
// 404 nothing of that name, 500 a daemon failure) and the daemon's message.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// IsNotFound reports whether err is the daemon's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// ErrNotRunning is wrapped by Do when no daemon listens on the socket: the
// file is missing or refuses connections.
var ErrNotRunning = errors.New("no ovlsw is running")

// explain turns a dial failure into advice.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w at %s: start one with `ovlsw up`, or pass --socket with its path", ErrNotRunning, c.Socket)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("permission denied on %s: the control socket is root's only; run as root", c.Socket)
	}
	return fmt.Errorf("control socket %s: %w", c.Socket, err)
}
