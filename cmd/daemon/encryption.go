package daemon

// This file holds the node's encryption owner (issue 16, docs/encryption.md):
// this node's data key pair, kept beside the state file like the cluster
// secret; the seal.Keys the switch seals and opens encrypted networks'
// datagrams with; which networks are encrypted; and the publication of the
// public key in gossip while the cluster has an encrypted network.
//
// Design notes:
//   - Keys are derived, never exchanged (vtep/seal): every member publishes
//     its X25519 public key in its node metadata, and each pair derives its
//     directional keys from their shared secret, the cluster secret, the
//     epoch (unix time / --rekey-interval) and the sender's session, so a
//     rekey is a clock tick, not a message, and cannot get out of step.
//   - The cluster secret is mixed in, so a host that is not a member (no
//     secret) cannot derive a key even with a member's private key; with
//     --insecure there is no secret and only the key pairs protect the data.
//   - Static mode (--network-key-file) replaces the key pairs by one 32-byte
//     key every node holds, for static --peer setups: nodes then found
//     separate clusters with separate secrets, so the secret is not mixed in.
//   - The public key is published only while some network is encrypted, so
//     a cluster without encrypted networks keeps metadata that nodes which
//     predate them read.
//   - `ovlsw keys` installs operator gossip keys one node at a time; mixing
//     them into data keys would leave pairs mid-rotation without a common
//     key, so data keys follow the cluster secret and the clock instead.

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/gossip/secret"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

var _ gossip.MemberKeys = (*vtep.Switch)(nil)

// DefaultDataKeyPath is the data key pair's file of a node whose state
// file is state: beside it, ".datakey" for ".state.json".
func DefaultDataKeyPath(state string) string {
	return strings.TrimSuffix(state, ".state.json") + ".datakey"
}

// publishTimeout bounds the wait for the data key's metadata update to
// reach one member; it goes out either way.
const publishTimeout = 5 * time.Second

// encryptionConfig configures the node's encryption.
type encryptionConfig struct {
	KeyFile        string        // the X25519 private key, mode 0600; made if missing
	NetworkKeyFile string        // static mode: a base64 32-byte network key instead
	Interval       time.Duration // the rekey interval, cluster-wide
	Secret         secret.Secret // the cluster secret; zero without one
	Log            *slog.Logger
}

// encryption is the node's encryption owner.
type encryption struct {
	keys   *seal.Keys
	pub    []byte // nil in static mode
	static bool
	sw     *vtep.Switch
	log    *slog.Logger

	// mu guards the encrypted networks by name and the publisher.
	mu        sync.Mutex
	encrypted map[string]uint32
	agent     dataKeySetter // nil until gossip runs
	published bool          // our key is (being) published
}

// dataKeySetter is what encryption needs of the agent: *gossip.Agent.
type dataKeySetter interface {
	SetDataKey(key []byte, timeout time.Duration) error
}

// newEncryption loads (or makes) the node's key pair, or reads the static
// network key, and hands the keys to the switch.
func newEncryption(cfg encryptionConfig, sw *vtep.Switch) (*encryption, error) {
	e := &encryption{sw: sw, log: cfg.Log, encrypted: map[string]uint32{}}
	sc := seal.Config{Interval: cfg.Interval}
	if cfg.NetworkKeyFile != "" {
		key, err := readKeyFile(cfg.NetworkKeyFile)
		if err != nil {
			return nil, configErrorf("network key file: %v", strings.TrimPrefix(err.Error(), "gossip key file: "))
		}
		sc.Static, e.static = key, true
	} else {
		priv, err := secret.Load(cfg.KeyFile)
		if cfg.KeyFile == "" { // a node built without New (tests): a key of this process only
			priv, err = secret.Generate()
		} else if errors.Is(err, fs.ErrNotExist) {
			if priv, err = secret.Generate(); err == nil { // any 32 random bytes are an X25519 private key
				err = secret.Save(cfg.KeyFile, priv)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("data key: %w", err)
		}
		sc.Private = priv[:]
		sc.Secret = cfg.Secret
		if e.pub, err = seal.PublicKey(priv[:]); err != nil {
			return nil, err
		}
	}
	k, err := seal.New(sc)
	if err != nil {
		return nil, configErrorf("%v", err)
	}
	e.keys = k
	sw.SetSealing(k)
	return e, nil
}

// setAgent gives the owner the gossip agent, to publish the key with.
func (e *encryption) setAgent(a dataKeySetter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.agent = a
	e.syncLocked()
}

// networkChanged is the network registry's word that a network changed
// (old, n) or went (n the zero Network); called with the registry's lock
// held, so it must not call back into it.
func (e *encryption) networkChanged(old, n gossip.Network) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old.Name != "" {
		delete(e.encrypted, old.Name)
	}
	if n.Name != "" && n.Encrypted {
		e.encrypted[n.Name] = n.VNI
	}
	e.syncLocked()
}

// syncLocked tells the switch the encrypted VNIs and publishes (or
// withdraws) the public key as the cluster has encrypted networks or not.
func (e *encryption) syncLocked() {
	vnis := make([]uint32, 0, len(e.encrypted))
	for _, v := range e.encrypted {
		vnis = append(vnis, v)
	}
	slices.Sort(vnis)
	e.sw.SetEncrypted(vnis)
	want := len(vnis) > 0 && e.pub != nil
	if e.agent == nil || want == e.published {
		return
	}
	e.published = want
	key, a := e.pub, e.agent
	if !want {
		key = nil
	}
	// Not here: the metadata update waits for a member's ack.
	go func() {
		if err := a.SetDataKey(key, publishTimeout); err != nil && !errors.Is(err, gossip.ErrClosed) {
			e.log.Debug("data key published; no member has acknowledged yet", "err", err)
		}
	}()
}

// status reports the node's encryption for ovlsw status; no key appears in
// it, only the public key's fingerprint.
func (e *encryption) status() *control.Encryption {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &control.Encryption{Suite: e.keys.Suite().String(), RekeyInterval: e.keys.Interval().Seconds(),
		Epoch: e.keys.At(time.Now().UnixNano()).Epoch, PeersWithKeys: e.keys.Known(), Published: e.published}
	if e.static {
		st.Mode = "static network key"
	} else {
		st.Mode = "x25519"
		st.PublicKey = secret.Secret(e.pub).Fingerprint()
	}
	for name := range e.encrypted {
		st.Networks = append(st.Networks, name)
	}
	slices.Sort(st.Networks)
	return st
}

// encryptedMTU returns the largest MTU of network n on a node whose plain
// overlay MTU is maxMTU: seal.Overhead less for an encrypted network.
func encryptedMTU(maxMTU int, n gossip.Network) int {
	if n.Encrypted {
		return maxMTU - seal.Overhead
	}
	return maxMTU
}

// checkEncrypted refuses what an encrypted network cannot be: one in
// multicast mode, whose floods go to a group rather than to peers sealed
// one by one.
func checkEncrypted(n gossip.Network) error {
	if n.Encrypted && n.Group.IsValid() {
		return userErrorf("network %s: an encrypted network cannot use a multicast group (each datagram is sealed for one peer)", n.Name)
	}
	return nil
}
