package seal

// This file holds a peer's sealing state: the sender (the key in use and
// its counter, shared by every peer in static mode) and the receive keys
// with their replay windows. Seal and Open run on the data path: once a key
// exists they take no lock longer than a replay-window check, and allocate
// nothing. Deriving a key (a new epoch, generation or session) allocates,
// which happens a few times an hour.

import (
	"crypto/cipher"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// Verdict says what Open made of a datagram.
type Verdict uint8

// Verdicts. Every one but Opened is a reason to drop the datagram.
const (
	Opened    Verdict = iota // authentic and new: its plaintext is returned
	NotSealed                // not a sealed datagram (plaintext VXLAN, say)
	Malformed                // too short, or a header that breaks the format
	NoKey                    // no key is known for the sender (its public key is unknown)
	Expired                  // sealed under an epoch the receiver no longer (or not yet) accepts
	Replayed                 // a counter already accepted, or older than the window
	Forged                   // failed authentication (also: too many unknown keys tried)
)

// ErrExhausted is returned by Seal when the sender's counter space of the
// epoch is used up (MaxCounter); it clears when the next epoch begins.
var ErrExhausted = errors.New("seal: counter space of this epoch exhausted")

// ErrNoKey is returned by Seal when the peer has no key (its public key is
// not known yet).
var ErrNoKey = errors.New("seal: no key for this peer")

// Time is the time as Seal and Open need it: the epoch and unix
// nanoseconds. Keys.At makes one, once per batch.
type Time struct {
	Epoch uint64
	Nano  int64
}

// txKey is the key a sender seals with: one (material, epoch, generation)
// and the next counter of its generation.
type txKey struct {
	mat   *material
	epoch uint64
	gen   uint64
	hdr   Header // Phase, Suite, Session: the same for every datagram
	aead  cipher.AEAD
	next  atomic.Uint64 // next counter within the generation: 0..2^GenBits
}

// sender holds the key a peer (or, in static mode, every peer) is sent to
// under. Counters come from an atomic, so concurrent Seals of one peer
// never share one.
type sender struct {
	suite   Suite
	session uint32
	cur     atomic.Pointer[txKey]
	mu      sync.Mutex // serialises rotations
}

// key returns the key to seal with at epoch under mat and reserves a
// counter of it, rotating if the epoch, the material or the generation
// moved on. The epoch never goes back (a clock stepped back keeps the
// newest key) and the generation only rises within an epoch, whatever the
// material, so (session, epoch, generation) never repeats and no key ever
// restarts its counter.
func (s *sender) key(mat *material, epoch uint64) (*txKey, uint64, error) {
	for {
		k := s.cur.Load()
		if k != nil && k.mat == mat && k.epoch >= epoch {
			if c := k.next.Add(1) - 1; c < 1<<GenBits {
				return k, k.gen<<GenBits | c, nil
			}
		}
		if err := s.rotate(k, mat, epoch); err != nil {
			return nil, 0, err
		}
	}
}

// rotate replaces old with the next key, unless another Seal did first.
func (s *sender) rotate(old *txKey, mat *material, epoch uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Load() != old {
		return nil // rotated meanwhile: try the new one
	}
	var gen uint64
	switch {
	case old == nil || epoch > old.epoch:
		gen = 0
	default: // same (or, clock stepped back, an older) epoch: next generation
		epoch, gen = old.epoch, old.gen+1
	}
	if gen > MaxCounter>>GenBits {
		return ErrExhausted
	}
	key := mat.derive(keyID{out: true, suite: s.suite, session: s.session, epoch: epoch, gen: gen})
	aead, err := newAEAD(s.suite, key)
	clear(key)
	if err != nil {
		return err
	}
	s.cur.Store(&txKey{mat: mat, epoch: epoch, gen: gen, aead: aead,
		hdr: Header{Phase: uint8(epoch), Suite: s.suite, Session: s.session}})
	return nil
}

// rxKey is one key a peer sends under, as seen by the receiver: a session,
// epoch and suite, the AEADs of the generations seen, and the replay
// window over the whole counter (generation included).
type rxKey struct {
	mat     *material
	session uint32
	epoch   uint64
	suite   Suite
	gens    atomic.Pointer[genAEAD] // the latest generation's AEAD

	mu  sync.Mutex // guards win
	win Window
}

type genAEAD struct {
	gen  uint64
	aead cipher.AEAD
	prev *genAEAD // the generation before, kept for datagrams still in flight
}

// aead returns the AEAD of generation gen, if known.
func (k *rxKey) aead(gen uint64) cipher.AEAD {
	for g, i := k.gens.Load(), 0; g != nil && i < 2; g, i = g.prev, i+1 {
		if g.gen == gen {
			return g.aead
		}
	}
	return nil
}

// Receive-side bounds. A sender uses one session per process and one epoch
// at a time, so a peer has a handful of live keys; more are forged or
// stale. New keys are derived from a budget, so a flood of datagrams with
// made-up sessions or generations costs a few derivations a second, not
// one a datagram.
const (
	maxRxKeys      = 8                       // per peer: 2 sessions x 3 epochs, and room
	deriveBurst    = 16                      // derivations a peer may cause at once
	deriveInterval = int64(50 * 1000 * 1000) // one more every 50 ms (20 a second)
)

// Peer is the sealing state of one remote VTEP. Safe for concurrent use.
type Peer struct {
	keys *Keys
	mat  atomic.Pointer[material] // nil: no key known
	tx   *sender

	rx      atomic.Pointer[[]*rxKey] // copy-on-write under rxMu
	rxMu    sync.Mutex
	gone    []keyName // keys dropped for room while their epoch was still accepted, under rxMu
	budget  float64   // derivation tokens, under rxMu
	budgetT int64     // when budget was last refilled
}

// HasKey reports whether the peer's key is known: whether Seal can work.
func (p *Peer) HasKey() bool { return p.mat.Load() != nil }

// Seal seals the datagram in b in place: b[HeaderLen:len(b)-TagLen] is the
// plaintext (VXLAN header and inner frame), the header is written in front
// and the tag over the last TagLen bytes. It returns ErrNoKey if the peer's
// key is unknown and ErrExhausted past the counter's limit; the datagram
// must then not be sent.
func (p *Peer) Seal(b []byte, t Time) error {
	if len(b) < Overhead {
		return errShort
	}
	return p.SealFrom(b, b[HeaderLen:len(b)-TagLen], t) // exact overlap: the AEAD works in place
}

// SealFrom seals plaintext src into dst, which must be exactly
// HeaderLen+len(src)+TagLen bytes and must not overlap src (other than
// src being dst[HeaderLen:len(dst)-TagLen] itself, as Seal has it): the
// copy into a send buffer and the encryption are one pass.
func (p *Peer) SealFrom(dst, src []byte, t Time) error {
	if len(dst) != len(src)+Overhead {
		return errShort
	}
	k, c, err := p.txKey(t)
	if err != nil {
		return err
	}
	h := k.hdr
	h.Counter = c
	_ = h.Encode(dst)
	k.aead.Seal(dst[HeaderLen:HeaderLen], nonceOf(dst), src, dst[:HeaderLen])
	return nil
}

var errShort = errors.New("seal: buffer does not fit the sealed header and tag")

func (p *Peer) txKey(t Time) (*txKey, uint64, error) {
	mat := p.mat.Load()
	if mat == nil {
		return nil, 0, ErrNoKey
	}
	return p.tx.key(mat, t.Epoch)
}

// Open authenticates and decrypts the sealed datagram b in place and
// returns its plaintext (the VXLAN datagram, inside b), or a verdict saying
// why it must be dropped. A counter is accepted at most once per key.
func (p *Peer) Open(b []byte, t Time) ([]byte, Verdict) {
	var h Header
	switch err := h.Decode(b); {
	case err == ErrNotSealed:
		return nil, NotSealed
	case err != nil:
		return nil, Malformed
	}
	mat := p.mat.Load()
	if mat == nil {
		return nil, NoKey
	}
	epoch, ok := resolveEpoch(h.Phase, t.Epoch)
	if !ok {
		return nil, Expired
	}
	k, fresh := p.rxKey(mat, &h, epoch)
	if k == nil {
		return nil, Replayed
	}
	gen := h.Counter >> GenBits
	aead := k.aead(gen)
	if aead == nil {
		if aead = p.rxGen(k, gen, t.Nano); aead == nil {
			return nil, Forged
		}
	}
	k.mu.Lock()
	ok = k.win.Check(h.Counter)
	k.mu.Unlock()
	if !ok {
		return nil, Replayed
	}
	ct := b[HeaderLen:]
	pt, err := aead.Open(ct[:0], nonceOf(b), ct, b[:HeaderLen])
	if err != nil {
		return nil, Forged
	}
	if fresh {
		k = p.adopt(k, t.Epoch)
	}
	k.mu.Lock()
	ok = k.win.Mark(h.Counter)
	k.mu.Unlock()
	if !ok {
		return nil, Replayed // a copy opened concurrently got there first
	}
	return pt, Opened
}

// resolveEpoch maps the 8-bit phase of a header to the epoch among now-1,
// now and now+1 (clock skew and a rekey in flight) with those low bits.
func resolveEpoch(phase uint8, now uint64) (uint64, bool) {
	for _, e := range [3]uint64{now, now - 1, now + 1} {
		if uint8(e) == phase && (e != now-1 || now > 0) {
			return e, true
		}
	}
	return 0, false
}

// keyName names a receive key of a peer's material.
type keyName struct {
	session uint32
	epoch   uint64
	suite   Suite
}

func (k *rxKey) name() keyName { return keyName{k.session, k.epoch, k.suite} }

// rxKey finds the receive key h names, or makes a candidate (fresh) that
// joins the peer's keys only once a datagram under it authenticates, so
// forged headers never evict a real key. nil: a key dropped for room while
// its epoch is still accepted, whose window is gone: its datagrams could be
// replays, so none is taken.
func (p *Peer) rxKey(mat *material, h *Header, epoch uint64) (k *rxKey, fresh bool) {
	if l := p.rx.Load(); l != nil {
		for _, k := range *l {
			if k.session == h.Session && k.epoch == epoch && k.suite == h.Suite && k.mat == mat {
				return k, false
			}
		}
	}
	name := keyName{h.Session, epoch, h.Suite}
	p.rxMu.Lock()
	for _, g := range p.gone {
		if g == name {
			p.rxMu.Unlock()
			return nil, false
		}
	}
	p.rxMu.Unlock()
	k = &rxKey{mat: mat, session: h.Session, epoch: epoch, suite: h.Suite}
	return k, true
}

// rxGen derives generation gen's AEAD for k, within the budget, and makes
// it k's latest (a later generation) or keeps it as the one before.
func (p *Peer) rxGen(k *rxKey, gen uint64, now int64) cipher.AEAD {
	if !p.spend(now) {
		return nil
	}
	key := k.mat.derive(keyID{out: false, suite: k.suite, session: k.session, epoch: k.epoch, gen: gen})
	aead, err := newAEAD(k.suite, key)
	clear(key)
	if err != nil {
		return nil
	}
	k.mu.Lock() // serialises changes of gens
	defer k.mu.Unlock()
	cur := k.gens.Load()
	switch {
	case cur == nil || gen > cur.gen:
		k.gens.Store(&genAEAD{gen: gen, aead: aead, prev: trim(cur)})
	case cur.prev == nil || gen > cur.prev.gen:
		k.gens.Store(&genAEAD{gen: cur.gen, aead: cur.aead, prev: &genAEAD{gen: gen, aead: aead}})
	}
	return aead
}

// trim returns g without its predecessors: a chain is at most two long.
func trim(g *genAEAD) *genAEAD {
	if g == nil {
		return nil
	}
	return &genAEAD{gen: g.gen, aead: g.aead}
}

// spend takes one derivation token, refilling the budget by the time.
func (p *Peer) spend(now int64) bool {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if p.budgetT == 0 || now < p.budgetT {
		p.budget, p.budgetT = deriveBurst, now
	}
	p.budget = min(deriveBurst, p.budget+float64(now-p.budgetT)/float64(deriveInterval))
	p.budgetT = now
	if p.budget < 1 {
		return false
	}
	p.budget--
	return true
}

// adopt adds the authenticated candidate k to the peer's keys, or returns
// the equal key another goroutine added first. Keys of epochs the receiver
// no longer accepts are dropped, and the oldest beyond maxRxKeys.
func (p *Peer) adopt(k *rxKey, epoch uint64) *rxKey {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	var old []*rxKey
	if l := p.rx.Load(); l != nil {
		old = *l
	}
	next := make([]*rxKey, 0, len(old)+1)
	for _, o := range old {
		if o.session == k.session && o.epoch == k.epoch && o.suite == k.suite && o.mat == k.mat {
			return o
		}
		if o.epoch+1 >= epoch && o.mat == k.mat {
			next = append(next, o)
		}
	}
	next = append(next, k)
	if drop := len(next) - maxRxKeys; drop > 0 {
		for _, o := range next[:drop] {
			p.gone = append(p.gone, o.name())
		}
		next = next[drop:]
	}
	// Forget dropped keys whose epoch is no longer accepted anyway.
	p.gone = slices.DeleteFunc(p.gone, func(g keyName) bool { return g.epoch+1 < epoch })
	p.rx.Store(&next)
	return k
}
