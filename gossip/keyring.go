// Scheduled keys: SetKeys brings memberlist's keyring to a ring of keys
// computed elsewhere (gossip/secret's Schedule derives one from the cluster
// secret and the time), beside any keys an operator installed.
//
// Design notes: SetKeys installs the new primary, makes it encrypt, removes
// the keys the schedule derived that left the ring, and only then installs
// the ring's other keys. The primary is installed before it is used and
// nothing goes before it is no longer used, so no message this node sends
// or may receive finds its key missing; the non-primary keys installed
// last are the next key (nobody encrypts with it yet) or, after a jump of
// several epochs, keys of epochs this node could not talk in anyway.
//
// They are installed after the removals, and removals go from the last key
// to the first, because of how memberlist's Keyring removes: GetKeys hands
// out its internal slice, which memberlist reads without the lock to
// decrypt each packet, and RemoveKey deletes in place (append(keys[:i],
// keys[i+1:]...)), shifting every key after the removed one under those
// readers. Removing the last key shifts nothing. Installing next last keeps
// the ring in the order primary, previous, next; the next SetKeys makes
// next primary (primary moves to the front, the rest keep their order:
// new primary, old primary, old previous), so the key to drop is last. A
// removal shifts only when an operator's key or, after a jump of two
// epochs, a kept key sits behind a stale one; then a decryption racing it
// may skip one key and drop that packet, which gossip repairs.
//
// An operator's keys stay: SetKeys removes only keys that managed reports
// as derived. An operator's choice of primary stays too: if the primary is
// a key managed does not report and the ring does not hold, SetKeys
// installs the scheduled keys but does not use them, until the operator
// makes a managed key primary again (UseKey); the next SetKeys then moves
// the primary on with the schedule.

package gossip

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/memberlist"
)

// setKeysMu serialises SetKeys (of every agent: calls are rare), so that
// two concurrent calls cannot interleave their steps.
var setKeysMu sync.Mutex

// SetKeys makes the keyring hold every key of ring, with primary (which
// need not be listed in ring) encrypting, and removes the keys that
// managed reports as derived by the schedule but are no longer in ring.
// Keys managed does not report (installed by an operator with InstallKey)
// stay, and so does an operator's primary (see the notes in keyring.go).
// A nil managed manages nothing: SetKeys then removes no key. managed may
// be slow; it is called without the agent's locks, but must not call
// SetKeys.
//
// Call it with the schedule's keys once after New, then at every epoch
// boundary and every minute or so. To join with the whole ring rather
// than Config.SecretKey alone (which matters when the clocks straddle an
// epoch boundary), start the agent without Config.Join, call SetKeys, then
// Join.
//
// It returns ErrNoEncryption if the agent was started without a
// SecretKey, and an error without changing anything if a key is not a
// valid AES key length. It is safe for concurrent use, but concurrent
// InstallKey, UseKey or RemoveKey calls may undo part of what it does.
func (a *Agent) SetKeys(primary []byte, ring [][]byte, managed func(key []byte) bool) error {
	if a.keyring == nil {
		return ErrNoEncryption
	}
	if err := memberlist.ValidateKey(primary); err != nil {
		return fmt.Errorf("gossip: set keys: primary key: %w", err)
	}
	for i, k := range ring {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("gossip: set keys: ring key %d: %w", i, err)
		}
	}
	if managed == nil {
		managed = func([]byte) bool { return false }
	}
	keep := func(k []byte) bool { return bytes.Equal(k, primary) || holds(ring, k) }

	setKeysMu.Lock()
	defer setKeysMu.Unlock()
	have := a.ListKeys()
	installed, removed := 0, 0
	if !holds(have, primary) {
		if err := a.keyring.AddKey(bytes.Clone(primary)); err != nil {
			return fmt.Errorf("gossip: set keys: install primary: %w", err)
		}
		installed++
	}
	operatorPrimary := len(have) > 0 && !keep(have[0]) && !managed(have[0])
	if !operatorPrimary && (len(have) == 0 || !bytes.Equal(have[0], primary)) {
		if err := a.keyring.UseKey(primary); err != nil {
			return fmt.Errorf("gossip: set keys: use primary: %w", err)
		}
	}
	have = a.ListKeys()
	for i := len(have) - 1; i > 0; i-- { // have[0] is the primary
		if k := have[i]; !keep(k) && managed(k) {
			if err := a.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("gossip: set keys: remove: %w", err)
			}
			removed++
		}
	}
	for _, k := range ring {
		if !holds(have, k) {
			if err := a.keyring.AddKey(bytes.Clone(k)); err != nil {
				return fmt.Errorf("gossip: set keys: install: %w", err)
			}
			have = append(have, k)
			installed++
		}
	}
	if installed > 0 || removed > 0 {
		a.log.Debug("gossip keyring updated", "installed", installed, "removed", removed,
			"keys", len(have)-removed, "operator_primary", operatorPrimary)
	}
	return nil
}

// holds reports whether keys contains k.
func holds(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(h []byte) bool { return bytes.Equal(h, k) })
}
