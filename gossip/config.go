// Configuration: the Config, its defaults and validation, and the memberlist
// configuration built from it (timers, keyring, transport, log routing).
// transport.go builds the transport itself.

package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures an Agent.
type Config struct {
	// Name is this node's name, unique in the cluster. It owns the
	// bindings this node announces. At most 255 bytes.
	Name string
	// BindAddr is the address the gossip listeners bind (UDP and TCP).
	// The zero value binds every address (0.0.0.0), and memberlist then
	// advertises the first private address it finds.
	BindAddr netip.Addr
	// GossipPort is the gossip UDP and TCP port; 0 picks a free port
	// (Agent.Addr reports it).
	GossipPort int
	// AdvertiseAddr, if valid, is the gossip address other members are
	// told to reach this node at (memberlist's AdvertiseAddr and
	// AdvertisePort), for a host behind NAT or with several addresses;
	// port 0 means GossipPort. The zero value advertises the bound address.
	AdvertiseAddr netip.AddrPort
	// VTEP is this node's VXLAN endpoint, advertised in the node metadata
	// and used for bindings announced without one.
	VTEP netip.AddrPort
	// VNIs are the VXLAN networks this node serves (at most MaxVNIs). Only
	// members serving a VNI receive its broadcast and unknown traffic.
	VNIs []uint32
	// Join lists members ("host:port" or "host") that New joins. If none
	// can be joined New fails; an empty list starts a new cluster.
	Join []string
	// SecretKey, if set, encrypts all gossip with AES-GCM through
	// memberlist's keyring. It must be 16, 24 or 32 bytes (32 selects
	// AES-256, the recommended size). Every member must hold the key.
	SecretKey []byte
	// Logger receives the agent's logs, and memberlist's own at debug
	// level. Nil discards them.
	Logger *slog.Logger
	// Transport, if set, replaces memberlist's UDP/TCP transport (tests
	// use memberlist.MockNetwork). BindAddr, GossipPort and JoinServer are
	// then unused.
	Transport memberlist.Transport
	// JoinServer, if set, serves the join protocol (gossip/join) on the
	// gossip TCP port: it is called with every incoming stream whose first
	// byte is join.Magic, that byte still unread, each in a goroutine of
	// its own (join.Server.Serve fits). The stream is closed when it
	// returns. Close closes the streams it is serving and waits for it, so
	// it must return once its stream is closed. Nil closes join streams at
	// once. Streams with any other first byte go to memberlist.
	JoinServer func(net.Conn)
	// Tune, if set, is called last on the memberlist configuration, to
	// override timers (ProbeInterval, GossipInterval, PushPullInterval,
	// SuspicionMult, ...). It must not replace the delegates, the name or
	// the keyring.
	Tune func(*memberlist.Config)
	// DuplicateMoves is N of the EVPN duplicate-MAC rule (RFC 7432
	// section 15): a MAC that moves between nodes more than DuplicateMoves
	// times within DuplicateWindow is flagged Duplicate in the FDB and
	// logged, and this node stops taking it over (Announce returns
	// ErrDuplicate). 0 disables detection.
	DuplicateMoves int
	// DuplicateWindow is M of the rule: the span in which moves are
	// counted. The flag clears DuplicateWindow after the last move that
	// set it.
	DuplicateWindow time.Duration
	// RetransmitMult sets how many times each broadcast, memberlist's
	// (membership) and ours (bindings), is sent: RetransmitMult *
	// ceil(log10(N+1)) for N members, by every member that finds it new. A
	// member misses a broadcast with probability about e^-(that count);
	// push/pull repairs misses, but only every 30 s or more (scaled up past
	// 32 members). 0 means the default; Tune may still override
	// memberlist's.
	RetransmitMult int
	// TombstoneTTL is how long a withdrawal is remembered, so that a late,
	// older announcement of the same binding is not installed again. It
	// also bounds how long bindings of a failed node are parked in case it
	// comes back, and so is the grace period for which a failed or departed
	// node's addresses stay claimed (Agent.Claims, Agent.UsedIPs) before an
	// allocator may hand them out again. It should exceed the time a
	// broadcast stays in the retransmit queues (seconds); push/pull repairs
	// anything later. (Deleted networks are remembered NetworkTombstoneTTL.)
	TombstoneTTL time.Duration
	// Now is the clock for duplicate detection, tombstone ageing and the
	// time stamped on network writes; nil means time.Now.
	Now func() time.Time
	// OnNetworks, if set, is called with the full list of live networks,
	// as Agent.Networks returns it, whenever that list changes: by
	// PutNetwork or DeleteNetwork here, or by gossip (which includes
	// joining: it may be called before New returns). It is called from one
	// goroutine of the agent, without the agent's lock held, one call at a
	// time and in order; changes in quick succession may be coalesced into
	// one call with the latest list. It may call the Agent's methods other
	// than Close (which waits for it) and should return promptly.
	OnNetworks func([]Network)
}

// DefaultConfig returns the defaults. Name, VTEP and VNIs must still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:        netip.IPv4Unspecified(), // every interface, like memberlist
		GossipPort:      7946,                    // memberlist's and Serf's usual port
		DuplicateMoves:  5,                       // RFC 7432 section 15 default N
		DuplicateWindow: 180 * time.Second,       // RFC 7432 section 15 default M
		TombstoneTTL:    2 * time.Minute,         // minutes of retransmits; push/pull (30 s) repairs the rest
		RetransmitMult:  8,                       // 16 sends at 10-99 nodes: ~1 miss in 9e6; memberlist's 4 (1 in 3000) left 50-node joins unconverged for a minute
	}
}

// maxQueued bounds our broadcast queue; older broadcasts beyond it are
// pruned and push/pull delivers their information instead. One queued
// broadcast per (VNI, MAC), so this is also the burst of distinct MACs that
// gossip delivers promptly.
const maxQueued = 1 << 16

func (c *Config) validate() error {
	switch {
	case c.Name == "" || len(c.Name) > 255:
		return fmt.Errorf("gossip: node name %q must be 1 to 255 bytes", c.Name)
	case !c.VTEP.Addr().IsValid() || c.VTEP.Port() == 0:
		return fmt.Errorf("gossip: VTEP %v is not a valid address and port", c.VTEP)
	case len(sortedVNIs(c.VNIs)) > MaxVNIs:
		return fmt.Errorf("gossip: %d VNIs, at most %d fit in the node metadata", len(c.VNIs), MaxVNIs)
	case c.GossipPort < 0 || c.GossipPort > 65535:
		return fmt.Errorf("gossip: port %d out of range", c.GossipPort)
	case c.AdvertiseAddr.IsValid() && (c.AdvertiseAddr.Addr().IsUnspecified() || c.AdvertiseAddr.Addr().IsMulticast()):
		return fmt.Errorf("gossip: advertise address %v is not a unicast address", c.AdvertiseAddr)
	case c.RetransmitMult < 0:
		return errors.New("gossip: negative RetransmitMult")
	case c.DuplicateMoves < 0 || (c.DuplicateMoves > 0 && c.DuplicateWindow <= 0):
		return errors.New("gossip: DuplicateMoves needs a positive DuplicateWindow")
	}
	for _, v := range c.VNIs {
		if v > MaxVNI {
			return fmt.Errorf("gossip: VNI %d exceeds 24 bits", v)
		}
	}
	if len(c.SecretKey) > 0 {
		if err := memberlist.ValidateKey(c.SecretKey); err != nil {
			return fmt.Errorf("gossip: secret key: %w", err)
		}
	}
	return nil
}

// memberlistConfig builds the memberlist configuration; d is the delegate.
func (c *Config) memberlistConfig(d *delegate, logger *slog.Logger) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.RetransmitMult = c.RetransmitMult
	if c.BindAddr.IsValid() {
		mc.BindAddr = c.BindAddr.String()
	}
	mc.BindPort = c.GossipPort
	mc.AdvertisePort = c.GossipPort
	if a := c.AdvertiseAddr; a.IsValid() {
		mc.AdvertiseAddr = a.Addr().Unmap().String()
		if a.Port() != 0 {
			mc.AdvertisePort = int(a.Port())
		}
	}
	mc.Transport = c.Transport
	mc.Delegate = d
	mc.Events = d
	mc.Logger = log.New(&logWriter{l: logger}, "", 0)
	if len(c.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(nil, bytes.Clone(c.SecretKey))
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = kr
	}
	if c.Tune != nil {
		c.Tune(mc)
	}
	// Last, so that it binds what Tune left, and nothing can fail after
	// it has bound the port. The caller shuts it down if memberlist does
	// not start.
	if mc.Transport == nil {
		t, err := newTransport(mc, c.JoinServer)
		if err != nil {
			return nil, fmt.Errorf("gossip: start memberlist on %v:%d: %w", c.BindAddr, c.GossipPort, err)
		}
		mc.Transport = t
	}
	return mc, nil
}

// logWriter routes memberlist's log lines ("[DEBUG] memberlist: ...") to
// slog at debug level, keeping memberlist's own level as an attribute.
// logWriter turns memberlist's log lines into debug records, except
// gossip refused for its encryption, which an operator must hear of: a
// warning at most every refusedEvery, counting the refusals in between.
type logWriter struct {
	l *slog.Logger

	mu         sync.Mutex
	lastWarn   time.Time
	suppressed int
}

// refusedEvery rate-limits the warning about refused gossip: a host
// without the key may send many packets a second.
const refusedEvery = 10 * time.Second

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	if refusedEncryption(line) {
		w.mu.Lock()
		now := time.Now()
		if now.Sub(w.lastWarn) < refusedEvery {
			w.suppressed++
			w.mu.Unlock()
			return len(p), nil
		}
		n := w.suppressed
		w.lastWarn, w.suppressed = now, 0
		w.mu.Unlock()
		w.l.Warn("refused gossip not encrypted with this cluster's key: a host without the join token, or a member whose clock is off by more than the key rotation interval",
			"memberlist", line, "refused_since_last_warning", n)
		return len(p), nil
	}
	w.l.Debug(line, "memberlist_level", level)
	return len(p), nil
}

// refusedEncryption reports whether a memberlist log line says a packet or
// stream that arrived was refused for its encryption: "Decrypt packet
// failed", or "failed to receive: No installed keys could decrypt the
// message" or "...: encryption is configured but remote state is not
// encrypted". A failed join of our own is the caller's error, not this.
func refusedEncryption(line string) bool {
	l := strings.ToLower(line)
	if strings.Contains(l, "decrypt packet failed") {
		return true
	}
	return strings.Contains(l, "failed to receive") &&
		(strings.Contains(l, "decrypt") || strings.Contains(l, "remote state is not encrypted"))
}

var _ io.Writer = (*logWriter)(nil)
