package main

// This file holds the mapping of control API failures onto CNI error
// codes; requests go through cmd/control's client, whose errors keep the
// HTTP status (DEL must tell "nothing attached", a 404, from a refusal).

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/ovlsw/ovlsw/cmd/control"
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

// newClient returns the control API client for a socket.
func newClient(socket string) *control.Client { return control.NewClient(socket) }

// cniError turns a control request failure into a CNI error: a daemon that
// is down or does not answer in time is "try again later" (11), a refusal
// carries the daemon's message (100), anything else is internal (999).
func cniError(err error) *types.Error {
	var ae *control.APIError
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return types.NewError(types.ErrTryAgainLater, "ovlsw-cni: "+err.Error()+` (or set "socket" in the network config)`, "")
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater, "ovlsw-cni: the ovlsw daemon did not answer in time", err.Error())
	case errors.As(err, &ae) && ae.Status/100 == 4:
		return types.NewError(errRefused, "ovlsw-cni: "+ae.Msg, "")
	}
	return types.NewError(types.ErrInternal, "ovlsw-cni: "+err.Error(), "")
}
