package testbed

import (
	"context"
	"slices"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// JoinToken returns the join token of the ovlsw node whose control socket
// is socket (`ovlsw token`), for the nodes that join it.
func JoinToken(ctx context.Context, socket string) (string, error) {
	var tok control.Token
	if err := control.NewClient(socket).Get(ctx, "/v1/token", &tok); err != nil {
		return "", err
	}
	return tok.Token, nil
}

// NeedsToken reports whether `ovlsw up` with args joins a cluster and has no
// other way in than a join token: no --token or --token-file of its own, no
// --gossip-key-file (which provides the cluster secret) and no --insecure.
func NeedsToken(args []string) bool {
	if !slices.Contains(args, "--join") {
		return false
	}
	for _, a := range args {
		switch a {
		case "--token", "--token-file", "--gossip-key-file", "--insecure", "--insecure=true":
			return false
		}
	}
	return true
}
