package main

// This file holds the plugin's side of the control API: one JSON request
// over the daemon's unix socket, answered with the HTTP status kept (DEL
// must tell "nothing attached", a 404, from a refusal), and the mapping of
// failures onto CNI error codes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
)

// Plugin-specific CNI error codes (the spec leaves 100 and up to plugins).
const (
	// errRefused: the daemon refused the request (no such network, address
	// taken, interface name in use, ...); the message is the daemon's.
	errRefused uint = 100
	// errCheckFailed: CHECK found the endpoint missing or not as attached.
	errCheckFailed uint = 101
	// errPluginNotAvailable is the spec's (1.1) STATUS answer for a plugin
	// that cannot serve ADD now.
	errPluginNotAvailable uint = 50
)

// client sends requests to one daemon's control socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(socket string) *client {
	return &client{socket: socket, http: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// apiError is a non-2xx answer: the status and the daemon's message.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// downError says no daemon listens on the socket: it does not exist or
// refuses connections. Every port the daemon owned is gone with it, since a
// port lives exactly as long as the daemon holds its TAP.
type downError struct {
	socket string
	err    error
}

func (e *downError) Error() string {
	return fmt.Sprintf("no ovlsw daemon is running at %s (%s): start one with `ovlsw up`, or set \"socket\" in the network config", e.socket, e.reason())
}

// reason is the dial's errno, without the request around it.
func (e *downError) reason() string {
	var errno syscall.Errno
	if errors.As(e.err, &errno) {
		return errno.Error()
	}
	return e.err.Error()
}

func (e *downError) Unwrap() error { return e.err }

// do sends method path with body as JSON and decodes a 2xx answer into v
// (if v is not nil).
func (c *client) do(ctx context.Context, method, path string, body, v any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
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
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return &downError{socket: c.socket, err: err}
		}
		return fmt.Errorf("control socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return &apiError{status: resp.StatusCode, msg: e.Error}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// isNotFound reports whether err is the daemon's 404.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == http.StatusNotFound
}

// cniError turns a control request failure into a CNI error: a daemon that
// is down or does not answer in time is "try again later" (11), a refusal
// carries the daemon's message (100), anything else is internal (999).
func cniError(err error) *types.Error {
	var (
		ae *apiError
		de *downError
	)
	switch {
	case errors.As(err, &de):
		return types.NewError(types.ErrTryAgainLater, "ovlsw-cni: "+de.Error(), "")
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater, "ovlsw-cni: the ovlsw daemon did not answer in time", err.Error())
	case errors.As(err, &ae) && ae.status/100 == 4:
		return types.NewError(errRefused, "ovlsw-cni: "+ae.msg, "")
	}
	return types.NewError(types.ErrInternal, "ovlsw-cni: "+err.Error(), "")
}
