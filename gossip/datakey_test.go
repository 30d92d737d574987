package gossip

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"
)

// keyRecorder is a Members that also takes data keys.
type keyRecorder struct {
	recorder
	keys map[netip.Addr][]byte // under recorder.mu
}

func (r *keyRecorder) SetMemberKeys(keys map[netip.Addr][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = maps.Clone(keys)
}

func (r *keyRecorder) getKeys() map[netip.Addr][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.keys)
}

// TestDataKeyReachesMembers: a data key published with SetDataKey reaches
// the other members' MemberKeys sink by the publisher's VTEP address, a
// new one replaces it and withdrawing it takes it away; the VNIs advertised
// meanwhile stay.
func TestDataKeyReachesMembers(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	// b's sink, swapped in for one that takes keys.
	kr := &keyRecorder{}
	b.agent.mu.Lock()
	b.agent.peers = kr
	b.agent.mu.Unlock()
	for i, key := range [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), nil} {
		if err := a.agent.SetDataKey(key, time.Second); err != nil {
			t.Logf("SetDataKey: %v (a timeout still sends)", err)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("key %d at b", i), func() error {
			got, ok := kr.getKeys()[a.vtep.Addr()]
			if !bytes.Equal(got, key) || ok != (key != nil) {
				return fmt.Errorf("b holds %x for a", got)
			}
			return nil
		})
	}
	if err := a.agent.SetDataKey(make([]byte, 5), time.Second); err == nil {
		t.Error("a 5-byte data key was taken")
	}
	// The VNIs survive the metadata changes.
	for _, m := range b.agent.Members() {
		if m.Name == a.name && fmt.Sprint(m.VNIs) != fmt.Sprint(a.vnis) {
			t.Errorf("a's VNIs at b: %v, want %v", m.VNIs, a.vnis)
		}
	}
}
