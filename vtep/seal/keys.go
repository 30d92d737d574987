package seal

// This file holds the registry of peers: this node's key pair (or the
// static network key), the cluster secret, the session and suite of this
// process, and one Peer per remote VTEP address, kept while the process
// lives so the switch can hold on to it.

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Config configures Keys. Exactly one of Private and Static is set.
type Config struct {
	// Private is this node's X25519 private key (32 bytes): DH mode, in
	// which every peer's public key must be given (SetPeerKey).
	Private []byte
	// Static is a network key shared by every node (32 bytes): static
	// mode, for static peers without gossip. Every peer has a key at once.
	Static []byte
	// Secret is the cluster secret mixed into every key; zero for none.
	Secret [32]byte
	// Interval is the rekey interval, the length of an epoch; 0 means
	// DefaultInterval. It must be the same on every node.
	Interval time.Duration
	// Suite is the AEAD this node seals with; 0 means Preferred. Receivers
	// open both suites whatever this says.
	Suite Suite
	// Session is this process's session; 0 picks a random one (tests set
	// it for vectors). It must never repeat with the same keys.
	Session uint32
}

// Keys is the registry of peers' sealing state. Safe for concurrent use.
type Keys struct {
	interval time.Duration
	suite    Suite
	session  uint32
	priv     *ecdh.PrivateKey // DH mode
	static   []byte           // static mode
	shared   *sender          // static mode: one sender (one counter) for every peer

	mu     sync.Mutex
	secret [32]byte
	peers  map[netip.Addr]*Peer
	pubs   map[netip.Addr][]byte // DH mode: the public key given per peer
	smat   *material             // static mode: every peer's material
}

// New checks cfg and returns an empty registry.
func New(cfg Config) (*Keys, error) {
	if (cfg.Private == nil) == (cfg.Static == nil) {
		return nil, errors.New("seal: give a private key or a static network key")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < MinInterval {
		return nil, fmt.Errorf("seal: rekey interval %v is shorter than %v", cfg.Interval, MinInterval)
	}
	if cfg.Suite == 0 {
		cfg.Suite = Preferred()
	}
	if !cfg.Suite.valid() {
		return nil, fmt.Errorf("seal: unknown suite %d", cfg.Suite)
	}
	for cfg.Session == 0 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("seal: session: %w", err)
		}
		cfg.Session = binary.BigEndian.Uint32(b[:])
	}
	k := &Keys{interval: cfg.Interval, suite: cfg.Suite, session: cfg.Session, secret: cfg.Secret,
		peers: map[netip.Addr]*Peer{}, pubs: map[netip.Addr][]byte{}}
	if cfg.Private != nil {
		priv, err := ecdh.X25519().NewPrivateKey(cfg.Private)
		if err != nil {
			return nil, fmt.Errorf("seal: private key: %w", err)
		}
		k.priv = priv
	} else {
		if len(cfg.Static) != KeyLen {
			return nil, fmt.Errorf("seal: the network key must be %d bytes, not %d", KeyLen, len(cfg.Static))
		}
		k.static = append([]byte(nil), cfg.Static...)
		k.shared = &sender{suite: k.suite, session: k.session}
		k.smat = newMaterial(k.static, &k.secret, [PublicKeyLen]byte{}, [PublicKeyLen]byte{})
	}
	return k, nil
}

// GenerateKey returns a new X25519 private key.
func GenerateKey() ([]byte, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: generate key: %w", err)
	}
	return priv.Bytes(), nil
}

// PublicKey returns the public key of private key priv.
func PublicKey(priv []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("seal: private key: %w", err)
	}
	return k.PublicKey().Bytes(), nil
}

// PublicKey returns this node's public key; nil in static mode.
func (k *Keys) PublicKey() []byte {
	if k.priv == nil {
		return nil
	}
	return k.priv.PublicKey().Bytes()
}

// Static reports whether k is in static mode.
func (k *Keys) Static() bool { return k.static != nil }

// Suite returns the suite this node seals with.
func (k *Keys) Suite() Suite { return k.suite }

// Interval returns the rekey interval.
func (k *Keys) Interval() time.Duration { return k.interval }

// At returns the Time of unix time now (nanoseconds).
func (k *Keys) At(now int64) Time { return Time{Epoch: Epoch(now, k.interval), Nano: now} }

// Peer returns the state of the VTEP at addr, made on first use and the
// same pointer for as long as k lives.
func (k *Keys) Peer(addr netip.Addr) *Peer {
	addr = addr.Unmap()
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.peers[addr]
	if p == nil {
		p = &Peer{keys: k, tx: k.shared}
		if p.tx == nil {
			p.tx = &sender{suite: k.suite, session: k.session}
		}
		if k.smat != nil {
			p.mat.Store(k.smat)
		}
		k.peers[addr] = p
	}
	return p
}

// SetPeerKey gives the public key of the VTEP at addr (DH mode); nil
// forgets it, and the peer can then neither be sealed to nor opened from.
// An unchanged key changes nothing; a new one starts new keys.
func (k *Keys) SetPeerKey(addr netip.Addr, pub []byte) error {
	if k.priv == nil {
		return errors.New("seal: static mode has no peer keys")
	}
	p := k.Peer(addr)
	k.mu.Lock()
	defer k.mu.Unlock()
	addr = addr.Unmap()
	if pub == nil {
		delete(k.pubs, addr)
		p.mat.Store(nil)
		return nil
	}
	if old, ok := k.pubs[addr]; ok && string(old) == string(pub) {
		return nil
	}
	m, err := dhMaterial(k.priv, pub, &k.secret)
	if err != nil {
		return err
	}
	k.pubs[addr] = append([]byte(nil), pub...)
	p.mat.Store(m)
	return nil
}

// SetSecret replaces the cluster secret: every key is derived anew (the
// peers' public keys stay). An unchanged secret changes nothing.
func (k *Keys) SetSecret(s [32]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s == k.secret {
		return
	}
	k.secret = s
	if k.static != nil {
		k.smat = newMaterial(k.static, &k.secret, [PublicKeyLen]byte{}, [PublicKeyLen]byte{})
		for _, p := range k.peers {
			p.mat.Store(k.smat)
		}
		return
	}
	for addr, pub := range k.pubs {
		if m, err := dhMaterial(k.priv, pub, &k.secret); err == nil {
			k.peers[addr].mat.Store(m)
		}
	}
}

// Known returns how many peers have a key.
func (k *Keys) Known() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, p := range k.peers {
		if p.HasKey() {
			n++
		}
	}
	return n
}
