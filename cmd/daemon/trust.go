package daemon

// This file holds the node's trust: the cluster secret, from which every
// member derives the gossip keys (keys.go), and this node's join key, which
// a joiner's token must carry.
//
// Design notes: a node that founds a cluster (no join addresses) makes the
// cluster secret S and keeps it beside its state file, mode 0600. Every node
// also makes its own join key J and keeps it likewise; `ovlsw token` prints
// a join token with J and the fingerprint of S. A joiner with a token asks
// the member it joins for S over an authenticated exchange (gossip/join: it
// proves it holds J, the member seals S under a key derived from J, and the
// joiner checks S has the token's fingerprint), then gossips with the keys
// derived from S like every member. A host without a valid token learns
// nothing and cannot decrypt, so it cannot join, announce a binding, or
// become a member whose VXLAN frames are accepted. `ovlsw token --rotate`
// replaces J: tokens printed before are refused by this node from then on;
// no other node is involved, since each node answers for its own J. A
// restarted node finds S in its files and needs no token, whether it was
// stopped with SIGTERM (which leaves the cluster gracefully: a departure,
// not a revocation), SIGUSR2 or a crash; removing the files makes it a
// stranger that needs a token again. --insecure keeps
// the old open behaviour (plain gossip, or a static --gossip-key-file key);
// --gossip-key-file without --insecure provides S itself.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/gossip/join"
	"github.com/ovlsw/ovlsw/gossip/secret"
)

// joinTimeout bounds one token exchange with a member.
const joinTimeout = 10 * time.Second

// DefaultSecretPath is the cluster secret's file of a node whose state file
// is state: beside it, ".secret" for ".state.json".
func DefaultSecretPath(state string) string {
	return strings.TrimSuffix(state, ".state.json") + ".secret"
}

// DefaultJoinKeyPath is the join key's file of a node whose state file is
// state: beside it, ".joinkey" for ".state.json".
func DefaultJoinKeyPath(state string) string {
	return strings.TrimSuffix(state, ".state.json") + ".joinkey"
}

// trustConfig configures the node's trust.
type trustConfig struct {
	SecretFile  string
	JoinKeyFile string
	Insecure    bool           // plain gossip or a static key, no token
	Key         []byte         // a key from --gossip-key-file: S itself (or the static key, insecure)
	Token       string         // a join token, to obtain S from a member
	Join        []string       // the members to join, host[:port]
	Self        netip.AddrPort // this node's gossip address, not to be joined
	Out         io.Writer      // where a founder prints its token
	Log         *slog.Logger
}

// trust holds the node's cluster secret and join key.
type trust struct {
	cfg     trustConfig
	log     *slog.Logger
	secret  secret.Secret // zero without one: --insecure
	static  []byte        // --insecure with a key file: the static gossip key
	founded bool          // this process made the secret: announce the token once the node is up

	// mu guards joinKey, which `ovlsw token --rotate` replaces.
	mu      sync.Mutex
	joinKey secret.Secret
}

// loadTrust finds the cluster secret (a key file, the secret file, a join
// token's exchange, or a new one when founding) and the join key.
func loadTrust(ctx context.Context, cfg trustConfig) (*trust, error) {
	t := &trust{cfg: cfg, log: cfg.Log}
	if cfg.Insecure {
		t.log.Warn("insecure: gossip is open to any host that reaches the gossip port, which can then join, send VXLAN and announce bindings; drop --insecure to require the cluster's join token",
			"gossip_encrypted", cfg.Key != nil)
		t.static = cfg.Key
		return t, nil
	}
	addrs, err := joinAddrs(cfg.Join, cfg.Self)
	if err != nil {
		return nil, err // a join list that cannot work, whatever the token
	}
	switch {
	case cfg.Key != nil:
		copy(t.secret[:], cfg.Key)
	case cfg.Token != "":
		tok, err := join.ParseToken(cfg.Token)
		if err != nil {
			return nil, configErrorf("join token: %v", err)
		}
		if s, err := secret.Load(cfg.SecretFile); err == nil && s.Fingerprint() == tok.Cluster {
			t.secret = s // joined before: nothing to ask
			break
		}
		if len(cfg.Join) == 0 {
			return nil, configErrorf("a join token is for joining a cluster: give the member to join too")
		}
		if t.secret, err = fetchSecret(ctx, cfg.Join, addrs, tok); err != nil {
			return nil, err
		}
		if err := secret.Save(cfg.SecretFile, t.secret); err != nil {
			return nil, fmt.Errorf("cluster secret: %w", err)
		}
		t.log.Info("cluster secret obtained with the join token", "cluster", t.secret.Fingerprint())
	default:
		s, err := secret.Load(cfg.SecretFile)
		switch {
		case err == nil:
			t.secret = s
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("cluster secret: %w", err)
		case len(cfg.Join) > 0:
			return nil, configErrorf("joining a cluster needs a join token: run `ovlsw token` on the member to join and give what it prints as the join token")
		default:
			if t.secret, err = secret.Generate(); err != nil {
				return nil, err
			}
			if err := secret.Save(cfg.SecretFile, t.secret); err != nil {
				return nil, fmt.Errorf("cluster secret: %w", err)
			}
			t.founded = true
		}
	}
	j, err := secret.Load(cfg.JoinKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		if j, err = secret.Generate(); err == nil {
			err = secret.Save(cfg.JoinKeyFile, j)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("join key: %w", err)
	}
	t.joinKey = j
	return t, nil
}

// announce prints the join token of a cluster this process founded, once
// the node is up (a start that fails says only why).
func (t *trust) announce() {
	if !t.founded {
		return
	}
	t.log.Info("founded a cluster", "cluster", t.secret.Fingerprint(), "secret_file", t.cfg.SecretFile)
	if t.cfg.Out != nil {
		fmt.Fprintf(t.cfg.Out, "ovlsw: founded cluster %s. Join other nodes with:\n  ovlsw up --join <this node's address> --token %s\n(`ovlsw token` prints the token again)\n",
			t.secret.Fingerprint(), t.token())
	}
}

// fetchSecret obtains the cluster secret with tok from the first of addrs
// (joins, as joinAddrs gave them ports) that gives it.
func fetchSecret(ctx context.Context, joins, addrs []string, tok join.Token) (secret.Secret, error) {
	var errs []string
	var last error
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(ctx, joinTimeout)
		s, err := join.Request(ctx, a, tok)
		cancel()
		if err == nil {
			return s, nil
		}
		errs, last = append(errs, err.Error()), err
	}
	// One line: each member's answer, in order; the last one wrapped.
	if len(errs) > 1 {
		return secret.Secret{}, fmt.Errorf("cannot join %s: %s; %w", strings.Join(joins, ","), strings.Join(errs[:len(errs)-1], "; "), last)
	}
	return secret.Secret{}, fmt.Errorf("cannot join %s: %w", strings.Join(joins, ","), last)
}

// secure reports whether the node gossips with the cluster secret's keys.
func (t *trust) secure() bool { return !t.secret.IsZero() }

// token returns this node's join token; "" when insecure.
func (t *trust) token() string {
	if !t.secure() {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return join.Token{Key: t.joinKey, Cluster: t.secret.Fingerprint()}.String()
}

// errInsecure answers token requests on an --insecure node.
var errInsecure = userErrorf("this node runs with --insecure: it has no cluster secret and no join token")

// rotateToken replaces the join key, so that tokens printed before are
// refused from now on, and returns the new token.
func (t *trust) rotateToken() (string, error) {
	if !t.secure() {
		return "", errInsecure
	}
	j, err := secret.Generate()
	if err != nil {
		return "", err
	}
	if err := secret.Save(t.cfg.JoinKeyFile, j); err != nil {
		return "", fmt.Errorf("join key: %w", err)
	}
	t.mu.Lock()
	t.joinKey = j
	t.mu.Unlock()
	t.log.Info("join token rotated: tokens printed before are refused from now on")
	return t.token(), nil
}

// joinServer answers joiners' token exchanges; nil when insecure.
func (t *trust) joinServer() func(net.Conn) {
	if !t.secure() {
		return nil
	}
	s := &join.Server{
		Key: func() secret.Secret {
			t.mu.Lock()
			defer t.mu.Unlock()
			return t.joinKey
		},
		Secret: func() secret.Secret { return t.secret },
		OnRefused: func(remote net.Addr, why string) {
			t.log.Warn("refused a join: the host did not present this node's join token (none, wrong, or one printed before `ovlsw token --rotate`)",
				"from", remote, "why", why)
		},
	}
	return s.Serve
}
