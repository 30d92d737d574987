package daemon

// This file holds the cluster glue: the gossip agent's start (after the
// switch, which it hands member VTEPs directly), its subscription to the
// FDB's changes (fdb publishes, the agent announces local entries and
// withdraws them when they go), the advertiser of this node's VNIs, and
// the gossip key ring. Nothing is relayed through the node: the switch owns
// the peer set, which gossip and the static --peer list feed.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/gossip/secret"
	"github.com/ovlsw/ovlsw/vtep"
)

// leaveTimeout bounds how long leaving the cluster waits for the leave to
// go out to the members still alive.
const leaveTimeout = 2 * time.Second

// clusterConfig configures the cluster glue.
type clusterConfig struct {
	Name       string
	Bind       netip.Addr
	Advertise  netip.AddrPort // the gossip address members are told; invalid: Bind
	VTEP       netip.AddrPort
	GossipPort int             // 0: gossip's default
	Trust      *trust          // the cluster secret and join key, or a static key, or none
	Schedule   secret.Schedule // the gossip keys' rotation, with the cluster secret
	Join       []string        // members to join; none founds a cluster
	Log        *slog.Logger
}

// cluster is this node's membership of the gossip cluster.
type cluster struct {
	cfg     clusterConfig
	log     *slog.Logger
	agent   *gossip.Agent
	unsub   func()      // the agent's FDB subscription
	rotator *keyRotator // nil without a cluster secret

	// The VNI advertiser: requests, the VNIs to publish, its stop signal,
	// its exit.
	advert     chan struct{}
	vnis       func() []uint32
	advertStop chan struct{}
	advertDone sync.WaitGroup
	closeOnce  sync.Once
}

// startCluster starts the gossip agent, feeding t and sw, and joins
// cfg.Join. onNetworks receives the cluster's networks whenever they
// change; vnis gives the VNIs to advertise when advertise asks.
func startCluster(cfg clusterConfig, t *fdb.Table, sw *vtep.Switch, onNetworks func([]gossip.Network), vnis func() []uint32) (*cluster, error) {
	gc := gossip.DefaultConfig()
	gc.Name, gc.BindAddr, gc.VTEP, gc.VNIs, gc.Logger = cfg.Name, cfg.Bind, cfg.VTEP, vnis(), cfg.Log
	gc.AdvertiseAddr = cfg.Advertise
	if cfg.GossipPort != 0 {
		gc.GossipPort = cfg.GossipPort
	}
	tr := cfg.Trust
	switch {
	case tr.secure():
		gc.SecretKey, _ = cfg.Schedule.Keys(tr.secret, time.Now())
		gc.JoinServer = tr.joinServer()
	case tr.static != nil:
		gc.SecretKey = tr.static
	}
	gc.OnNetworks = onNetworks
	a, err := gossip.New(gc, t, sw)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("gossip port %d on %v is already in use (another ovlsw?): stop it or choose another gossip port", gc.GossipPort, cfg.Bind)
		}
		return nil, err
	}
	c := &cluster{cfg: cfg, log: cfg.Log, agent: a, advert: make(chan struct{}, 1), vnis: vnis, advertStop: make(chan struct{})}
	c.unsub = t.Subscribe(a.OnFDBEvent)
	if tr.secure() {
		// The whole ring before the join: a member whose clock is in the
		// next epoch already encrypts with the next key.
		c.rotator = newKeyRotator(a, tr.secret, cfg.Schedule, cfg.Log)
		if err := c.rotator.start(); err != nil {
			c.close(false)
			return nil, err
		}
	}
	c.advertDone.Add(1)
	go c.advertiser()
	if len(cfg.Join) > 0 {
		if err := c.join(gc.GossipPort); err != nil {
			c.close(false)
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) join(port int) error {
	join, err := joinAddrs(c.cfg.Join, netip.AddrPortFrom(c.cfg.Bind, uint16(port)))
	if err != nil {
		return err
	}
	if _, err := c.agent.Join(join); err != nil {
		if errors.Is(err, gossip.ErrKeyMismatch) {
			return fmt.Errorf("cannot join %s: the cluster refused our gossip: the key does not match: %s", strings.Join(c.cfg.Join, ","), c.keyAdvice())
		}
		return fmt.Errorf("cannot join %s: %w (is ovlsw up there, with the same gossip port?)", strings.Join(c.cfg.Join, ","), err)
	}
	return nil
}

// keyAdvice says what to check when the cluster refuses this node's keys.
func (c *cluster) keyAdvice() string {
	tr := c.cfg.Trust
	switch {
	case tr.cfg.Key != nil:
		return "check the gossip key file on both sides"
	case tr.secure():
		return fmt.Sprintf("this node holds the secret of cluster %s (%s): if the cluster there is another, remove that file and join with a token from one of its members (`ovlsw token`); if not, check that the clocks agree within the key rotation interval and that both sides use the same interval",
			tr.secret.Fingerprint(), tr.cfg.SecretFile)
	default:
		return "this node runs with --insecure and the cluster encrypts its gossip: join with a token from a member (`ovlsw token`) instead"
	}
}

// joinAddrs gives every join address a port (memberlist would otherwise
// use this node's own gossip port) and refuses this node's own address. An
// IPv6 address may come bare ("2001:db8::1"), bracketed ("[2001:db8::1]")
// or with a port ("[2001:db8::1]:7946"); it leaves in the last form.
func joinAddrs(join []string, self netip.AddrPort) ([]string, error) {
	defPort := uint16(gossip.DefaultConfig().GossipPort)
	out := make([]string, 0, len(join))
	for _, j := range join {
		host, port := j, defPort
		if h, p, err := net.SplitHostPort(j); err == nil {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("join address %q: bad port", j)
			}
			host, port = h, uint16(n)
		} else if len(j) > 2 && j[0] == '[' && j[len(j)-1] == ']' {
			host = j[1 : len(j)-1]
		}
		if host == "" || strings.ContainsAny(host, "[]") {
			return nil, fmt.Errorf("join address %q: want HOST or HOST:PORT (IPv6 as [IP]:PORT)", j)
		}
		if ip, err := netip.ParseAddr(host); err == nil && netip.AddrPortFrom(ip.Unmap(), port) == self {
			return nil, fmt.Errorf("join address %s is this node's own gossip address: name another member", j)
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	return out, nil
}

// advertise asks the advertiser to publish the VNIs in the node's gossip
// metadata. It never blocks: memberlist's UpdateNode waits (up to a
// second) for the update to go out, which must not hold up the caller.
func (c *cluster) advertise() {
	select {
	case c.advert <- struct{}{}:
	default: // one is pending; it will publish the latest set
	}
}

// advertiser publishes the VNI set whenever advertise asks, until
// advertStop closes.
func (c *cluster) advertiser() {
	defer c.advertDone.Done()
	for {
		select {
		case <-c.advertStop:
			return
		case <-c.advert:
			if err := c.agent.SetVNIs(c.vnis(), time.Second); err != nil && !errors.Is(err, gossip.ErrClosed) {
				c.log.Warn("advertise VNIs", "err", err)
			}
		}
	}
}

// close stops the cluster glue; with leave, it leaves the cluster first,
// withdrawing this node's bindings everywhere. Idempotent.
func (c *cluster) close(leave bool) error {
	var err error
	c.closeOnce.Do(func() {
		close(c.advertStop)
		c.unsub()
		if c.rotator != nil {
			c.rotator.close()
		}
		if leave {
			if lerr := c.agent.Leave(leaveTimeout); lerr != nil {
				c.log.Warn("leave", "err", lerr)
			}
		}
		err = c.agent.Close()
		c.advertDone.Wait()
	})
	return err
}

// readKeyFile reads a base64 gossip key of 32 bytes.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	key, err := DecodeKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	return key, nil
}

// DecodeKey decodes a base64 gossip key and checks it is 32 bytes.
func DecodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, errors.New("want a 32-byte key in base64 (make one with: head -c 32 /dev/urandom | base64)")
	}
	return key, nil
}

// errNotEncrypted answers key operations on a node without a gossip key.
var errNotEncrypted = userErrorf("gossip is not encrypted on this node: it runs with --insecure and no gossip key file")

// encrypted reports whether gossip is encrypted.
func (c *cluster) encrypted() bool { return c.cfg.Trust.secure() || c.cfg.Trust.static != nil }

// listKeys returns the key ring, base64.
func (c *cluster) listKeys() ([]string, error) {
	if !c.encrypted() {
		return nil, errNotEncrypted
	}
	var out []string
	for _, k := range c.agent.ListKeys() {
		out = append(out, base64.StdEncoding.EncodeToString(k))
	}
	return out, nil
}

// keyOp installs, uses or removes a base64 key.
func (c *cluster) keyOp(op, b64 string) error {
	key, err := DecodeKey(b64)
	if err != nil {
		return userErrorf("key: %v", err)
	}
	switch op {
	case "install":
		err = c.agent.InstallKey(key)
	case "use":
		err = c.agent.UseKey(key)
	case "remove":
		err = c.agent.RemoveKey(key)
	default:
		return userErrorf("key operation %q: want install, use or remove", op)
	}
	if errors.Is(err, gossip.ErrNoEncryption) {
		return errNotEncrypted
	}
	if err != nil {
		return userErrorf("%v", err)
	}
	c.log.Info("gossip key "+op+"ed", "key", b64[:6]+"...")
	return nil
}
