package gossip

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/gossip/secret"
)

var sched = secret.DefaultSchedule()

// epochTime is a time in epoch n of a test timeline: an hour into it,
// counting from epoch 0 that starts on 2026-03-01 00:00 UTC.
func epochTime(n int) time.Time {
	return time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC).Add(time.Duration(n) * sched.Interval)
}

func mustSecret(t *testing.T) secret.Secret {
	t.Helper()
	s, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startKeyed starts node i with the schedule's keys for sec at time at, as
// the daemon does: the primary as Config.SecretKey, then SetKeys, then
// (if join is not nil) Join.
func startKeyed(t *testing.T, i int, sec secret.Secret, at time.Time, join *node) (*node, error) {
	t.Helper()
	primary, _ := sched.Keys(sec, at)
	n, err := startNode(t, i, 0, nil, func(c *Config) { c.SecretKey = primary })
	if err != nil {
		t.Fatal(err)
	}
	moveTo(t, n, sec, at)
	if join != nil {
		_, err = n.agent.Join([]string{join.agent.Addr().String()})
	}
	return n, err
}

// moveTo sets n's keys to the schedule's at time at and checks the keyring
// is exactly the ring, in its order (primary, previous, next).
func moveTo(t *testing.T, n *node, sec secret.Secret, at time.Time) {
	t.Helper()
	primary, ring := sched.Keys(sec, at)
	if err := n.agent.SetKeys(primary, ring, sched.Derived(sec, at)); err != nil {
		t.Fatalf("%s: SetKeys: %v", n.name, err)
	}
	if got := n.agent.ListKeys(); !slices.EqualFunc(got, ring, bytes.Equal) {
		t.Fatalf("%s: keyring at epoch %d (-want +got)\n-%x\n+%x", n.name, sched.Epoch(at), ring, got)
	}
}

// announcer has every node announce one more binding and waits until all
// have arrived everywhere.
type announcer struct {
	nodes  []*node
	owners map[*node][]Binding
	next   int
}

func (an *announcer) round(t *testing.T, what string) {
	t.Helper()
	if an.owners == nil {
		an.owners = map[*node][]Binding{}
	}
	for _, n := range an.nodes {
		b := testBinding(n, an.next, 100)
		if err := n.agent.Announce(b); err != nil {
			t.Fatalf("%s: announce: %v", n.name, err)
		}
		an.owners[n] = append(an.owners[n], b)
	}
	an.next++
	waitFor(t, settle, what, func() error { return converged(an.nodes, an.owners) })
}

// TestSetKeysRotation moves two agents through three key rotations, one
// after the other, and checks bindings announced after each move arrive:
// with one agent an epoch ahead, and with both in the new epoch. Then the
// removed keys no longer get in.
func TestSetKeysRotation(t *testing.T) {
	sec := mustSecret(t)
	a, err := startKeyed(t, 0, sec, epochTime(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startKeyed(t, 1, sec, epochTime(0), a)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	an := &announcer{nodes: []*node{a, b}}
	an.round(t, "epoch 0")
	for e := 1; e <= 3; e++ {
		moveTo(t, a, sec, epochTime(e))
		an.round(t, fmt.Sprintf("a at epoch %d, b at %d", e, e-1))
		moveTo(t, b, sec, epochTime(e))
		an.round(t, fmt.Sprintf("both at epoch %d", e))
	}

	// Both now hold K(2), K(3), K(4). K(1) left their rings.
	k1, _ := sched.Keys(sec, epochTime(1))
	_, err = startNode(t, 2, 0, []string{a.agent.Addr().String()}, func(c *Config) { c.SecretKey = k1 })
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("join with a removed key: %v, want ErrKeyMismatch", err)
	}
	c, err := startKeyed(t, 3, sec, epochTime(3), b)
	if err != nil {
		t.Fatalf("join with the current ring: %v", err)
	}
	an.nodes = append(an.nodes, c)
	an.round(t, "a third node at epoch 3")
}

// TestSetKeysJump: one agent follows five rotations one by one, the other
// (asleep, say) jumps from the first epoch to the last; they end with the
// same keyring and keep talking.
func TestSetKeysJump(t *testing.T) {
	sec := mustSecret(t)
	a, err := startKeyed(t, 0, sec, epochTime(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startKeyed(t, 1, sec, epochTime(0), a)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	an := &announcer{nodes: []*node{a, b}}
	an.round(t, "epoch 0")
	for e := 1; e <= 5; e++ {
		moveTo(t, b, sec, epochTime(e).Add(time.Duration(e)*time.Minute))
	}
	moveTo(t, a, sec, epochTime(5).Add(7*time.Hour))
	an.round(t, "after the jump")
	if ka, kb := a.agent.ListKeys(), b.agent.ListKeys(); !slices.EqualFunc(ka, kb, bytes.Equal) {
		t.Fatalf("keyrings differ:\na %x\nb %x", ka, kb)
	}
}

// TestSetKeysJoin joins an agent at epoch 0 with other secrets and clocks.
func TestSetKeysJoin(t *testing.T) {
	sec := mustSecret(t)
	a, err := startKeyed(t, 0, sec, epochTime(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPrimary, _ := sched.Keys(mustSecret(t), epochTime(0))
	boundary := sched.Next(epochTime(0))
	for i, tc := range []struct {
		name string
		join func(t *testing.T, i int) error
		ok   bool
	}{
		{"other secret", func(t *testing.T, i int) error {
			_, err := startKeyed(t, i, mustSecret(t), epochTime(0), a)
			return err
		}, false},
		{"other secret's key in Config", func(t *testing.T, i int) error {
			_, err := startNode(t, i, 0, []string{a.agent.Addr().String()}, func(c *Config) { c.SecretKey = otherPrimary })
			return err
		}, false},
		{"clock two epochs ahead", func(t *testing.T, i int) error {
			_, err := startKeyed(t, i, sec, epochTime(2), a)
			return err
		}, false},
		{"clock a minute ahead, past the boundary", func(t *testing.T, i int) error {
			_, err := startKeyed(t, i, sec, boundary.Add(30*time.Second), a)
			return err
		}, true},
		{"clock an epoch behind", func(t *testing.T, i int) error {
			_, err := startKeyed(t, i, sec, epochTime(-1), a)
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.join(t, i+1)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("join: %v", err)
			case !tc.ok && !errors.Is(err, ErrKeyMismatch):
				t.Fatalf("join: %v, want ErrKeyMismatch", err)
			}
		})
	}
}

// TestSetKeysOperator runs one agent through rotations with an operator's
// key beside the schedule's, checking the keyring in order after each
// step.
func TestSetKeysOperator(t *testing.T) {
	sec := mustSecret(t)
	op := bytes.Repeat([]byte{0x0b}, 32)
	op16 := bytes.Repeat([]byte{0x16}, 16)
	names := map[string]string{hex.EncodeToString(op): "O", hex.EncodeToString(op16): "O16"}
	for e := -2; e <= 20; e++ {
		k, _ := sched.Keys(sec, epochTime(e))
		names[hex.EncodeToString(k)] = fmt.Sprintf("K%d", e)
	}
	k := func(e int) []byte { p, _ := sched.Keys(sec, epochTime(e)); return p }
	set := func(e int) func(*Agent) error {
		return func(a *Agent) error {
			p, ring := sched.Keys(sec, epochTime(e))
			return a.SetKeys(p, ring, sched.Derived(sec, epochTime(e)))
		}
	}
	n, err := startNode(t, 0, 0, nil, func(c *Config) { c.SecretKey = k(0) })
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		do   func(*Agent) error
		want string // keyring, primary first
	}{
		{"started with K0", func(*Agent) error { return nil }, "K0"},
		{"schedule at epoch 0", set(0), "K0 K-1 K1"},
		{"again: no change", set(0), "K0 K-1 K1"},
		{"operator installs O", func(a *Agent) error { return a.InstallKey(op) }, "K0 K-1 K1 O"},
		{"rotation keeps O", set(1), "K1 K0 O K2"},
		{"operator uses O", func(a *Agent) error { return a.UseKey(op) }, "O K1 K0 K2"},
		{"rotation keeps O primary", set(2), "O K1 K2 K3"},
		{"operator goes back to the schedule", func(a *Agent) error { return a.UseKey(k(2)) }, "K2 O K1 K3"},
		{"rotation moves the primary on", set(3), "K3 K2 O K4"},
		{"operator removes O", func(a *Agent) error { return a.RemoveKey(op) }, "K3 K2 K4"},
		{"operator removes a scheduled key", func(a *Agent) error { return a.RemoveKey(k(4)) }, "K3 K2"},
		{"schedule puts it back", set(3), "K3 K2 K4"},
		{"jump ten epochs", set(13), "K13 K12 K14"},
		{"nil managed removes nothing", func(a *Agent) error {
			p, ring := sched.Keys(sec, epochTime(14))
			return a.SetKeys(p, ring, nil)
		}, "K14 K13 K12 K15"},
		{"managed again removes the leftover", set(14), "K14 K13 K15"},
		{"16-byte operator key", func(a *Agent) error { return a.InstallKey(op16) }, "K14 K13 K15 O16"},
		{"jump two epochs behind an operator key", set(16), "K16 K15 O16 K17"},
		{"primary of a bad length", func(a *Agent) error {
			return wantErr(a.SetKeys(k(17)[:20], nil, nil), "primary key: key size")
		}, "K16 K15 O16 K17"},
		{"ring key of a bad length", func(a *Agent) error {
			return wantErr(a.SetKeys(k(17), [][]byte{k(18), nil}, nil), "ring key 1: key size")
		}, "K16 K15 O16 K17"},
	} {
		if err := step.do(n.agent); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		var got []string
		for _, key := range n.agent.ListKeys() {
			got = append(got, names[hex.EncodeToString(key)])
		}
		if strings.Join(got, " ") != step.want {
			t.Fatalf("%s: keyring (-want +got)\n-%s\n+%s", step.name, step.want, strings.Join(got, " "))
		}
	}

	plain, err := startNode(t, 1, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ring := sched.Keys(sec, epochTime(0))
	if err := plain.agent.SetKeys(p, ring, nil); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("SetKeys without encryption = %v, want ErrNoEncryption", err)
	}
}

// wantErr turns an expected error into nil and anything else into an error.
func wantErr(err error, says string) error {
	if err == nil || !strings.Contains(err.Error(), says) {
		return fmt.Errorf("got error %v, want one saying %q", err, says)
	}
	return nil
}
