// The key schedule: which gossip keys a node holds at a given time.
//
// Design notes: time is cut into epochs of Interval (12 h), epoch n
// starting at n*Interval after the Unix epoch, and K(n) is derived from the
// secret and n (see the package notes). At time t in epoch n a node holds
// the ring K(n-1), K(n), K(n+1) and encrypts with K(n). So every member
// computes the same keys with no message exchanged, and a node that was
// down or asleep through any number of rotations computes the current ring
// from its clock when it comes back, with nothing to catch up on.
//
// Clock skew: nodes whose clocks differ by less than one Interval are in
// the same epoch or adjacent ones, and two nodes in epochs n and n+1 each
// hold the key the other encrypts with: K(n) is the first's primary and the
// second's previous key, K(n+1) the second's primary and the first's next
// key. So around a boundary a node whose clock runs a minute fast switches
// a minute early and nothing is lost either way; the ring tolerates skew
// (plus however late a node notices the boundary) of up to an Interval,
// far beyond the minute we design for. Two epochs apart, nodes share one
// key but neither encrypts with it: gossip between them fails (Join says
// the key does not match), which is the one symptom of a clock off by an
// Interval or more. Status should show each node's epoch for that reason.
//
// No grace period: making the previous key primary for a while after each
// boundary would help only if the next key were not installed ahead; with
// it installed, a grace just moves every boundary later by the grace, and
// adds a second setting that must agree across the cluster. The next key
// installed ahead is what makes the switch lossless.
//
// The interval is part of the key derivation's input in effect (it decides
// n), so it is a cluster-wide setting like the secret: a member with a
// different Interval computes other keys and cannot talk to the rest.
//
// A caller refreshes the ring at Next, and also every minute or so: timers
// run on the monotonic clock, which stops while a machine is suspended and
// does not follow a stepped wall clock, so a timer alone could leave a
// resumed node on stale keys for hours. Refreshing an unchanged ring costs
// three HKDF computations and changes nothing.

package secret

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

const (
	// DefaultInterval is the default epoch length: keys rotate twice a day,
	// at 00:00 and 12:00 UTC.
	DefaultInterval = 12 * time.Hour
	// MinInterval is the shortest interval Validate accepts. The ring
	// tolerates less than one interval of clock skew plus refresh delay, so
	// intervals this short suit only nodes that share a clock (a lab, the
	// tests); RecommendedMinInterval is the floor for real clusters.
	MinInterval = time.Second
	// RecommendedMinInterval is ten times the one minute of clock skew we
	// design for: callers warn below it.
	RecommendedMinInterval = 10 * time.Minute
	// KeySize is the length of a gossip key: 32 bytes selects AES-256 in
	// memberlist.
	KeySize = 32
	// derivedWindow is how many epochs either side of now Derived and
	// KeyEpoch search: 1024 epochs (512 days at the default interval) at
	// one HMAC each is about a millisecond, and only keys the schedule did
	// not derive (or derived over a year ago) take the whole search.
	derivedWindow = 1024
)

// keySalt separates the gossip keys from every other use of the secret.
const keySalt = "ovlsw gossip key"

// Schedule derives the gossip keys from a cluster secret and the time. The
// zero value is the default schedule.
type Schedule struct {
	// Interval is the length of an epoch, the time each key is primary.
	// Epoch n starts n*Interval after the Unix epoch. Every member must use
	// the same Interval. It must be whole seconds and at least MinInterval
	// (Validate checks); 0 means DefaultInterval. Invalid values that are
	// not checked are rounded down to whole seconds, at least one.
	Interval time.Duration
}

// DefaultSchedule returns the default schedule.
func DefaultSchedule() Schedule {
	return Schedule{
		Interval: DefaultInterval, // two rotations a day: a leaked key decrypts half a day of traffic; clocks may differ by up to 12 h
	}
}

// Validate reports whether s is a usable schedule.
func (s Schedule) Validate() error {
	switch d := s.Interval; {
	case d == 0:
		return nil
	case d < MinInterval:
		return fmt.Errorf("key rotation interval %v is shorter than %v", d, MinInterval)
	case d%time.Second != 0:
		return fmt.Errorf("key rotation interval %v is not whole seconds", d)
	}
	return nil
}

// seconds returns the interval in whole seconds, at least 1.
func (s Schedule) seconds() int64 {
	d := s.Interval
	if d == 0 {
		d = DefaultInterval
	}
	return max(int64(d/time.Second), 1)
}

// Epoch returns the epoch t falls in: floor(Unix time / Interval). Times
// before 1970 are in epoch 0.
func (s Schedule) Epoch(t time.Time) uint64 {
	sec := t.Unix()
	if sec < 0 {
		return 0
	}
	return uint64(sec / s.seconds())
}

// Next returns when the ring changes after t: the start of the next epoch.
func (s Schedule) Next(t time.Time) time.Time {
	return time.Unix(int64(s.Epoch(t)+1)*s.seconds(), 0)
}

// Keys returns the keys a node holds at time t, in epoch n: the primary
// K(n), which encrypts, and the ring K(n), K(n-1), K(n+1) in that order
// (epoch numbers wrap, so epoch 0's previous key is K(2^64-1)). The slices
// are new on every call.
func (s Schedule) Keys(sec Secret, t time.Time) (primary []byte, ring [][]byte) {
	n := s.Epoch(t)
	prk := extract(sec)
	ring = [][]byte{expand(prk, n), expand(prk, n-1), expand(prk, n+1)}
	return bytes.Clone(ring[0]), ring
}

// KeyEpoch reports the epoch n for which key is K(n), if n is within about
// a thousand epochs of t's (so a key from any ring a node may still hold).
func (s Schedule) KeyEpoch(sec Secret, key []byte, t time.Time) (n uint64, ok bool) {
	if len(key) != KeySize {
		return 0, false
	}
	prk := extract(sec)
	now := s.Epoch(t)
	// Nearest first: the keys asked about are almost always from the
	// previous ring.
	for d := range uint64(derivedWindow + 1) {
		if bytes.Equal(expand(prk, now-d), key) {
			return now - d, true
		}
		if d > 0 && bytes.Equal(expand(prk, now+d), key) {
			return now + d, true
		}
	}
	return 0, false
}

// Derived returns a predicate reporting whether a key is one the schedule
// derives from sec, for any epoch KeyEpoch finds around t. It is what
// gossip.Agent.SetKeys takes as managed: keys an operator installed are not
// derived, and stay.
func (s Schedule) Derived(sec Secret, t time.Time) func(key []byte) bool {
	return func(key []byte) bool {
		_, ok := s.KeyEpoch(sec, key, t)
		return ok
	}
}

// extract is HKDF's first step, the same for every epoch.
func extract(sec Secret) []byte {
	prk, err := hkdf.Extract(sha256.New, sec[:], []byte(keySalt))
	if err != nil {
		panic(err) // unreachable: HMAC-SHA256 takes any key
	}
	return prk
}

// expand is HKDF's second step: K(n) from the extracted key.
func expand(prk []byte, n uint64) []byte {
	var info [8]byte
	binary.BigEndian.PutUint64(info[:], n)
	k, err := hkdf.Expand(sha256.New, prk, string(info[:]), KeySize)
	if err != nil {
		panic(err) // unreachable: 32 bytes is far below HKDF's 255*32
	}
	return k
}
