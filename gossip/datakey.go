// Data keys: each node's X25519 public key for encrypted networks
// (vtep/seal), published in its node metadata and handed, per member VTEP,
// to whoever derives the pairwise keys from them.
//
// Design notes: the metadata travels in memberlist's gossip, which is
// encrypted and authenticated with keys derived from the cluster secret,
// so only a member can publish a data key, and a member's key reaches every
// other member with its metadata, with no message of its own. The pairwise
// keys mix in the cluster secret as well (vtep/seal), so a key injected
// into open gossip (--insecure) still gives its author nothing to read.

package gossip

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// MaxVNIsWithKey is how many VNIs fit in the node metadata beside a data
// key: (512 - 1 - 19 - 8 - 2 - 32) / 3 = 150.
const MaxVNIsWithKey = (maxMeta - 1 - 19 - 8 - 2 - DataKeyLen) / 3

// MemberKeys is an optional interface of the Members sink: it is given the
// data key of every alive member that publishes one, by the address of its
// VTEP. *vtep.Switch satisfies it. Called with the agent's lock held, when
// the set changes; it must not block for long.
type MemberKeys interface {
	SetMemberKeys(keys map[netip.Addr][]byte)
}

// SetDataKey publishes key (DataKeyLen bytes) as this node's data key in
// its metadata, or withdraws it (nil), and advertises the change, waiting
// up to timeout for it to reach one member (it goes out either way).
func (a *Agent) SetDataKey(key []byte, timeout time.Duration) error {
	if key != nil && len(key) != DataKeyLen {
		return fmt.Errorf("gossip: data key of %d bytes, want %d", len(key), DataKeyLen)
	}
	a.vniMu.Lock()
	defer a.vniMu.Unlock()
	if slices.Equal(a.dataKey, key) && (key == nil) == (a.dataKey == nil) {
		return nil
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	vnis := a.cfg.VNIs
	a.mu.Unlock()
	md := encodeMeta(&meta{VTEP: a.cfg.VTEP, Epoch: a.epoch, VNIs: vnis, DataKey: key})
	if len(md) > maxMeta {
		return fmt.Errorf("gossip: %d VNIs and a data key do not fit in the node metadata (at most %d VNIs with a key)", len(vnis), MaxVNIsWithKey)
	}
	a.dataKey = slices.Clone(key)
	a.meta.Store(&md)
	if err := a.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: advertise data key: %w", err)
	}
	return nil
}

// syncKeysLocked gives the Members sink, if it takes them, the data keys
// of the alive members, when they changed. Called with a.mu held.
func (a *Agent) syncKeysLocked() {
	mk, ok := a.peers.(MemberKeys)
	if !ok {
		return
	}
	keys := make(map[netip.Addr]string)
	for _, m := range a.members {
		if m.state != stateAlive || len(m.meta.DataKey) != DataKeyLen || !m.meta.VTEP.Addr().IsValid() || m.meta.VTEP == a.cfg.VTEP {
			continue
		}
		keys[m.meta.VTEP.Addr().Unmap()] = string(m.meta.DataKey)
	}
	if a.memberKeys != nil && maps.Equal(keys, a.memberKeys) {
		return
	}
	a.memberKeys = keys
	out := make(map[netip.Addr][]byte, len(keys))
	for addr, k := range keys {
		out[addr] = []byte(k)
	}
	mk.SetMemberKeys(out)
}
