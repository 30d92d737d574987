package vtep

// This file holds the switch's side of encrypted networks (vtep/seal,
// docs/encryption.md): which VNIs are encrypted, the sealing of the
// datagrams queued for the wire, and the opening of those received, with
// the drops that encryption adds.
//
// Design notes:
//   - Sealing is one step after encapsulation and segmentation: toPeers
//     queues plain VXLAN datagrams as before (one, or a UDP GSO run of
//     equal-size ones), then sealQueued rewrites the messages it queued.
//     Each datagram is sealed from where it was built into the batch's
//     arena (seal.Peer.SealFrom), stride plus seal.Overhead apart, so a
//     GSO run stays a GSO run: one pass of the AEAD over the bytes, which
//     both reads the plaintext and writes the ciphertext, and no copy of
//     its own. A flood seals the one plaintext once per peer, each under
//     that peer's key.
//   - Nothing of an encrypted network ever leaves in plaintext: a
//     datagram for a VTEP with no key (its public key not yet gossiped, an
//     FDB entry for a VTEP that is no peer, a multicast group) is dropped
//     and counted as no_key.
//   - On receive, a datagram whose first byte is seal.Type is opened in
//     place before anything else looks at it, and its plaintext, a VXLAN
//     datagram, takes the plain path from there (VNI, membership, GRO).
//     A plaintext datagram of an encrypted VNI is dropped (plaintext), so
//     an attacker who can spoof a member's address cannot inject frames
//     (Docker's CVE-2023-28840 family).

import (
	"maps"
	"net/netip"

	"github.com/ovlsw/ovlsw/vtep/seal"
)

// sealBox is the sealing configuration, replaced whole under s.mu: the
// keys, the encrypted VNIs and the members' public keys as gossip gave
// them.
type sealBox struct {
	keys    *seal.Keys
	vnis    map[uint32]bool
	members map[netip.Addr][]byte
}

// sealBoxLocked returns a copy of the current box to change. Called with
// s.mu held.
func (s *Switch) sealBoxLocked() *sealBox {
	if old := s.sealing.Load(); old != nil {
		next := *old
		return &next
	}
	return &sealBox{}
}

// SetSealing gives the switch the keys it seals and opens datagrams of
// encrypted networks with (SetEncrypted); nil takes them away, after which
// encrypted VNIs send nothing. The members' public keys already given
// (SetMemberKeys) are handed to k. Safe for concurrent use.
func (s *Switch) SetSealing(k *seal.Keys) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.sealBoxLocked()
	next.keys = k
	s.sealing.Store(next)
	s.applyMemberKeysLocked(nil, next.members)
	s.rebuildPeersLocked()
}

// SetEncrypted sets the VNIs whose datagrams are sealed, replacing the
// set. Safe for concurrent use.
func (s *Switch) SetEncrypted(vnis []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.sealBoxLocked()
	next.vnis = make(map[uint32]bool, len(vnis))
	for _, v := range vnis {
		next.vnis[v] = true
	}
	s.sealing.Store(next)
}

// SetMemberKeys gives the public keys of the cluster's members by their
// VTEP address (gossip.MemberKeys): pairwise keys are derived from them
// (seal.Keys.SetPeerKey), and a member no longer listed has its key
// forgotten. It does not block: gossip calls it with its lock held.
func (s *Switch) SetMemberKeys(keys map[netip.Addr][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.sealBoxLocked()
	old := next.members
	next.members = maps.Clone(keys)
	s.sealing.Store(next)
	s.applyMemberKeysLocked(old, next.members)
}

// applyMemberKeysLocked hands the keys in now to the sealing keys and
// forgets those only in old. Called with s.mu held.
func (s *Switch) applyMemberKeysLocked(old, now map[netip.Addr][]byte) {
	sb := s.sealing.Load()
	if sb == nil || sb.keys == nil || sb.keys.Static() {
		return
	}
	for addr, pub := range now {
		if err := sb.keys.SetPeerKey(addr, pub); err != nil {
			s.log.Warn("a member's data key is unusable: its encrypted traffic is dropped", "vtep", addr, "err", err)
		}
	}
	for addr := range old {
		if _, ok := now[addr]; !ok {
			_ = sb.keys.SetPeerKey(addr, nil)
		}
	}
}

// Encrypted returns the encrypted VNIs (for status).
func (s *Switch) Encrypted() map[uint32]bool {
	if sb := s.sealing.Load(); sb != nil {
		return maps.Clone(sb.vnis)
	}
	return nil
}

// sealPeerLocked returns the sealing state of the VTEP at addr, or nil
// without keys. Called with s.mu held.
func (s *Switch) sealPeerLocked(addr netip.Addr) *seal.Peer {
	if sb := s.sealing.Load(); sb != nil && sb.keys != nil {
		return sb.keys.Peer(addr)
	}
	return nil
}

// encrypted reports whether vni's datagrams are sealed, and the box.
func (s *Switch) encrypted(vni uint32) (*sealBox, bool) {
	sb := s.sealing.Load()
	if sb == nil || len(sb.vnis) == 0 {
		return nil, false
	}
	return sb, sb.vnis[vni]
}

// sealScratch is a port reader's storage for sealing: its own arena, so
// the datagrams sealed for one peer lie back to back and a run of small
// ones becomes one GSO message, and the messages being rebuilt.
type sealScratch struct {
	arena  arena
	msgs   []Message
	ctrs   []*trafficCounters
	frames []int
	peers  []*seal.Peer
}

// sealQueued seals the messages of sc's remote queue from first on, which
// toPeers just queued for a frame of an encrypted VNI, into the sealing
// arena, and drops (counting no_key) those to a peer it cannot seal to.
// Sealed datagrams are seal.Overhead longer, so a GSO run is cut where it
// would pass MaxSegmentedPayload, and a sealed datagram for the same peer
// and flow as the message before joins it as one more segment, as
// appendDatagram does for plain ones.
func (s *Switch) sealQueued(sc *sendScratch, sb *sealBox, first int, now int64) {
	q, ss := &sc.remote, &sc.seal
	if sb.keys == nil {
		s.drops.add(dropNoKey, uint64(q.dropFrom(first)))
		return
	}
	t := sb.keys.At(now)
	ss.msgs, ss.ctrs, ss.frames, ss.peers = ss.msgs[:0], ss.ctrs[:0], ss.frames[:0], ss.peers[:0]
	for i := first; i < len(q.msgs); i++ {
		m, sp, ctr := &q.msgs[i], q.peers[i], q.ctrs[i]
		if sp == nil || !sp.HasKey() {
			s.drops.add(dropNoKey, uint64(q.frames[i]))
			continue
		}
		seg := m.Segment
		if seg == 0 {
			seg = m.N
		}
		for off := 0; off < m.N; off += seg {
			src := m.Buf[off:min(off+seg, m.N)]
			if !s.sealOne(q, ss, first, src, m, sp, ctr, t) {
				s.drops.add(dropNoKey, 1)
			}
		}
	}
	q.truncate(first)
	q.msgs = append(q.msgs, ss.msgs...)
	q.ctrs = append(q.ctrs, ss.ctrs...)
	q.frames = append(q.frames, ss.frames...)
	q.peers = append(q.peers, ss.peers...)
	clear(ss.msgs)
	clear(ss.ctrs)
	clear(ss.peers)
}

// sealOne seals datagram src of message m (to peer sp) into the arena:
// behind the last sealed message if it can take it, else as a new one. It
// reports false if the datagram could not be sealed.
func (s *Switch) sealOne(q *remoteQueue, ss *sealScratch, first int, src []byte, m *Message, sp *seal.Peer, ctr *trafficCounters, t seal.Time) bool {
	n := len(src) + seal.Overhead
	// The message to extend: the last one rebuilt, else the one queued
	// before this frame's.
	var last *Message
	var lastFrames *int
	switch {
	case len(ss.msgs) > 0 && ss.peers[len(ss.peers)-1] == sp && ss.ctrs[len(ss.ctrs)-1] == ctr:
		last, lastFrames = &ss.msgs[len(ss.msgs)-1], &ss.frames[len(ss.frames)-1]
	case len(ss.msgs) == 0 && first > 0 && q.peers[first-1] == sp && q.ctrs[first-1] == ctr:
		last, lastFrames = &q.msgs[first-1], &q.frames[first-1]
	}
	if last != nil && last.Addr == m.Addr && last.Flow == m.Flow {
		size := last.Segment
		if size == 0 {
			size = last.N
		}
		if n <= size && last.N%size == 0 && *lastFrames < MaxSegments && last.N+n <= MaxSegmentedPayload {
			if buf, ok := ss.arena.extend(last.Buf[:last.N], n); ok {
				if sp.SealFrom(buf[last.N:], src, t) != nil {
					return false // the arena bytes are wasted until the batch ends
				}
				last.Buf, last.N, last.Segment = buf, len(buf), size
				*lastFrames++
				return true
			}
		}
	}
	dst := ss.arena.take(n)
	if sp.SealFrom(dst, src, t) != nil {
		return false
	}
	ss.msgs = append(ss.msgs, Message{Buf: dst, N: n, Addr: m.Addr, Flow: m.Flow})
	ss.ctrs = append(ss.ctrs, ctr)
	ss.frames = append(ss.frames, 1)
	ss.peers = append(ss.peers, sp)
	return true
}

// dropFrom removes the messages from first on and returns how many frames
// they carried.
func (q *remoteQueue) dropFrom(first int) int {
	n := 0
	for _, f := range q.frames[first:] {
		n += f
	}
	q.truncate(first)
	return n
}

// truncate keeps the first n messages.
func (q *remoteQueue) truncate(n int) {
	clear(q.msgs[n:])
	clear(q.ctrs[n:])
	clear(q.peers[n:])
	q.msgs, q.ctrs, q.frames, q.peers = q.msgs[:n], q.ctrs[:n], q.frames[:n], q.peers[:n]
}

// unseal applies encryption to one received datagram d from the VTEP
// from (nil: neither peer nor member): a sealed one is opened in place and
// its plaintext returned, a plaintext one of an encrypted VNI is dropped.
// It counts what it drops and reports whether d goes on.
func (s *Switch) unseal(d []byte, from *peer, sb *sealBox, t seal.Time) ([]byte, bool) {
	if !seal.IsSealed(d) {
		if len(d) >= HeaderLen && sb.vnis[uint32(d[4])<<16|uint32(d[5])<<8|uint32(d[6])] {
			s.drops.add(dropPlaintext, 1)
			return nil, false
		}
		return d, true
	}
	if from == nil || from.seal == nil {
		s.drops.add(dropNotMember, 1)
		return nil, false
	}
	pt, v := from.seal.Open(d, t)
	switch v {
	case seal.Opened:
		return pt, true
	case seal.NoKey:
		s.drops.add(dropNoKey, 1)
	case seal.Expired:
		s.drops.add(dropKeyExpired, 1)
	case seal.Replayed:
		s.drops.add(dropReplay, 1)
	case seal.Malformed:
		s.drops.add(dropShort, 1)
	default:
		s.drops.add(dropAuth, 1)
	}
	return nil, false
}
