package secret

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// K(testSecret, n), computed independently with Python's hmac and hashlib
// (HKDF as RFC 5869 specifies it).
var knownKeys = map[uint64]string{
	0:              "8afeca854f1789e97efe926880054da4baa030cb70ab2441842e170623d457e9",
	1:              "f5fa3171e14846e3d326781f09b1138a624f5adc52101c977bd15eb992f84bbf",
	39351:          "0b9badee843d6002a735a873b80527457584d4fd0d10865537995ead29269ab8",
	math.MaxUint64: "b1cb412e25a91ee8c7ea3dc31b55ee9d491045e2a047c6f90b723d6472854e20",
}

func key(n uint64) []byte { return expand(extract(testSecret), n) }

func TestKnownKeys(t *testing.T) {
	for n, want := range knownKeys {
		if got := hex.EncodeToString(key(n)); got != want {
			t.Errorf("K(%d) = %s, want %s", n, got, want)
		}
	}
}

// base is the start of epoch 39351 with the default interval:
// 2023-11-26 12:00 UTC.
var base = time.Unix(39351*12*3600, 0)

func TestEpochAndNext(t *testing.T) {
	def := DefaultSchedule()
	for _, tc := range []struct {
		name      string
		s         Schedule
		t         time.Time
		epoch     uint64
		next      time.Time
		nextEpoch uint64
	}{
		{"start of an epoch", def, base, 39351, base.Add(12 * time.Hour), 39352},
		{"a nanosecond before", def, base.Add(-1), 39350, base, 39351},
		{"a nanosecond after", def, base.Add(1), 39351, base.Add(12 * time.Hour), 39352},
		{"end of the epoch", def, base.Add(12*time.Hour - 1), 39351, base.Add(12 * time.Hour), 39352},
		{"other time zone", def, base.In(time.FixedZone("UTC+5:30", 5*3600+1800)), 39351, base.Add(12 * time.Hour), 39352},
		{"zero Schedule is the default", Schedule{}, base.Add(time.Hour), 39351, base.Add(12 * time.Hour), 39352},
		{"hourly", Schedule{Interval: time.Hour}, base.Add(90 * time.Minute), 39351*12 + 1, base.Add(2 * time.Hour), 39351*12 + 2},
		{"Unix epoch", def, time.Unix(0, 0), 0, time.Unix(12*3600, 0), 1},
		{"before 1970", def, time.Unix(-1, 0), 0, time.Unix(12*3600, 0), 1},
		{"zero time", def, time.Time{}, 0, time.Unix(12*3600, 0), 1},
		{"sub-second interval rounds up to 1 s", Schedule{Interval: time.Millisecond}, time.Unix(5, 5e8), 5, time.Unix(6, 0), 6},
		{"fractional interval rounds down", Schedule{Interval: 90 * time.Second / 60}, time.Unix(5, 5e8), 5, time.Unix(6, 0), 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Epoch(tc.t); got != tc.epoch {
				t.Errorf("Epoch = %d, want %d", got, tc.epoch)
			}
			next := tc.s.Next(tc.t)
			if !next.Equal(tc.next) {
				t.Errorf("Next = %v, want %v", next, tc.next)
			}
			if got := tc.s.Epoch(next); got != tc.nextEpoch {
				t.Errorf("Epoch(Next) = %d, want %d", got, tc.nextEpoch)
			}
			if got := tc.s.Epoch(next.Add(-1)); got != tc.epoch && tc.t.Unix() >= 0 {
				t.Errorf("Epoch(Next - 1ns) = %d, want %d", got, tc.epoch)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	s := DefaultSchedule()
	for _, tc := range []struct {
		name  string
		t     time.Time
		epoch uint64
	}{
		{"start of an epoch", base, 39351},
		{"middle", base.Add(6 * time.Hour), 39351},
		{"last instant", base.Add(12*time.Hour - 1), 39351},
		{"next epoch", base.Add(12 * time.Hour), 39352},
		{"epoch 0 wraps", time.Unix(0, 0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary, ring := s.Keys(testSecret, tc.t)
			want := [][]byte{key(tc.epoch), key(tc.epoch - 1), key(tc.epoch + 1)}
			if !bytes.Equal(primary, want[0]) || !slices.EqualFunc(ring, want, bytes.Equal) {
				t.Fatalf("Keys (-want +got)\n-%x %x\n+%x %x", want[0], want, primary, ring)
			}
			for _, k := range ring {
				if len(k) != KeySize {
					t.Fatalf("key of %d bytes", len(k))
				}
			}
			// The primary is a copy: changing it leaves the ring alone.
			primary[0] ^= 0xff
			if bytes.Equal(primary, ring[0]) {
				t.Fatal("primary shares memory with ring[0]")
			}
		})
	}
	if p, _ := s.Keys(testSecret, base); hex.EncodeToString(p) != knownKeys[39351] {
		t.Fatalf("primary at epoch 39351 is %x, want the known K(39351)", p)
	}
	other, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := s.Keys(testSecret, base)
	p2, _ := s.Keys(other, base)
	if bytes.Equal(p1, p2) {
		t.Fatal("two secrets give the same key")
	}
}

// TestMissedRotations: a node that stays up and follows every rotation
// (at each Next its next key becomes primary, its primary previous, and
// one new key is derived) and a node that was down and computes its ring
// once on waking hold the same keys, however many rotations it missed.
func TestMissedRotations(t *testing.T) {
	s := DefaultSchedule()
	start := base.Add(5*time.Hour + 17*time.Minute)
	_, up := s.Keys(testSecret, start)
	now := start
	for step := range 20 {
		now = s.Next(now)
		_, fresh := s.Keys(testSecret, now)
		up = [][]byte{up[2], up[0], fresh[2]}
		for _, into := range []time.Duration{0, time.Second, 3 * time.Hour, 12*time.Hour - 1} {
			p, ring := s.Keys(testSecret, now.Add(into))
			if !bytes.Equal(p, up[0]) || !slices.EqualFunc(ring, up, bytes.Equal) {
				t.Fatalf("after %d rotations, woken %v into the epoch: (-stayed up +was down)\n-%x\n+%x", step+1, into, up, ring)
			}
		}
	}
	if got, want := s.Epoch(now), s.Epoch(start)+20; got != want {
		t.Fatalf("20 rotations reached epoch %d, want %d", got, want)
	}
}

// TestSkew: two nodes whose clocks differ by less than an interval each
// hold the other's primary; two epochs apart, neither does.
func TestSkew(t *testing.T) {
	s := DefaultSchedule()
	boundary := base.Add(12 * time.Hour)
	for _, tc := range []struct {
		name   string
		a, b   time.Time
		talk   bool
		shared int // keys in both rings
	}{
		{"same time", boundary, boundary, true, 3},
		{"a minute apart across a boundary", boundary.Add(-30 * time.Second), boundary.Add(30 * time.Second), true, 2},
		{"a minute apart within an epoch", boundary.Add(time.Hour), boundary.Add(time.Hour + time.Minute), true, 3},
		{"just under an interval", boundary.Add(-1), boundary.Add(12*time.Hour - 2), true, 2},
		{"one interval within adjacent epochs", boundary.Add(-1), boundary.Add(12*time.Hour - 1), true, 2},
		{"one interval and a nanosecond", boundary.Add(-1), boundary.Add(12 * time.Hour), false, 1},
		{"two intervals", boundary, boundary.Add(24 * time.Hour), false, 1},
		{"three intervals", boundary, boundary.Add(36 * time.Hour), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, ra := s.Keys(testSecret, tc.a)
			pb, rb := s.Keys(testSecret, tc.b)
			in := func(k []byte, ring [][]byte) bool {
				return slices.ContainsFunc(ring, func(r []byte) bool { return bytes.Equal(r, k) })
			}
			if talk := in(pa, rb) && in(pb, ra); talk != tc.talk {
				t.Errorf("each holds the other's primary: %v, want %v", talk, tc.talk)
			}
			shared := 0
			for _, k := range ra {
				if in(k, rb) {
					shared++
				}
			}
			if shared != tc.shared {
				t.Errorf("%d keys shared, want %d", shared, tc.shared)
			}
		})
	}
}

func TestKeyEpoch(t *testing.T) {
	s := DefaultSchedule()
	now := base.Add(time.Hour)
	other, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := s.Keys(other, now)
	for _, tc := range []struct {
		name  string
		key   []byte
		epoch uint64
		ok    bool
	}{
		{"current", key(39351), 39351, true},
		{"previous", key(39350), 39350, true},
		{"next", key(39352), 39352, true},
		{"a week ago", key(39351 - 14), 39351 - 14, true},
		{"a year ahead", key(39351 + 730), 39351 + 730, true},
		{"edge of the window", key(39351 - derivedWindow), 39351 - derivedWindow, true},
		{"beyond the window", key(39351 - derivedWindow - 1), 0, false},
		{"other secret", otherKey, 0, false},
		{"operator key", bytes.Repeat([]byte{7}, 32), 0, false},
		{"short", key(39351)[:16], 0, false},
		{"nil", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := s.KeyEpoch(testSecret, tc.key, now)
			if n != tc.epoch || ok != tc.ok {
				t.Errorf("KeyEpoch = %d, %v; want %d, %v", n, ok, tc.epoch, tc.ok)
			}
			if got := s.Derived(testSecret, now)(tc.key); got != tc.ok {
				t.Errorf("Derived = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		says     string // "" if valid
	}{
		{0, ""},
		{DefaultInterval, ""},
		{MinInterval, ""},
		{7 * 24 * time.Hour, ""},
		{MinInterval - time.Millisecond, "shorter"},
		{500 * time.Millisecond, "shorter"},
		{-time.Hour, "shorter"},
		{time.Hour + time.Millisecond, "whole seconds"},
	} {
		t.Run(fmt.Sprint(tc.interval), func(t *testing.T) {
			err := Schedule{Interval: tc.interval}.Validate()
			if (err == nil) != (tc.says == "") || (err != nil && !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("Validate = %v, want %q", err, tc.says)
			}
		})
	}
}

func BenchmarkKeys(b *testing.B) {
	s := DefaultSchedule()
	b.ReportAllocs()
	for b.Loop() {
		s.Keys(testSecret, base)
	}
}

// BenchmarkDerivedMiss is the worst case of Derived: a key it did not
// derive, searched for in the whole window.
func BenchmarkDerivedMiss(b *testing.B) {
	managed := DefaultSchedule().Derived(testSecret, base)
	op := bytes.Repeat([]byte{7}, 32)
	for b.Loop() {
		managed(op)
	}
}
