package vtep

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/vtep/offload"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

// sealRig is a vnetRig whose VNI 42 is encrypted, and the keys of its
// peer, which knows the rig's public key as the rig knows its.
type sealRig struct {
	*vnetRig
	keys, peerKeys *seal.Keys
	self           netip.Addr // the rig's address as the peer sees it
}

func newSealRig(tb testing.TB) *sealRig {
	tb.Helper()
	r := &sealRig{vnetRig: newVnetRig(tb), self: netip.MustParseAddr("192.0.2.1")}
	mk := func(b byte) *seal.Keys {
		k, err := seal.New(seal.Config{Private: bytes.Repeat([]byte{b}, 32), Secret: [32]byte{1}})
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	r.keys, r.peerKeys = mk(1), mk(2)
	if err := r.keys.SetPeerKey(r.peer.Addr(), r.peerKeys.PublicKey()); err != nil {
		tb.Fatal(err)
	}
	if err := r.peerKeys.SetPeerKey(r.self, r.keys.PublicKey()); err != nil {
		tb.Fatal(err)
	}
	r.sw.SetSealing(r.keys)
	r.sw.SetEncrypted([]uint32{42})
	return r
}

// now is the peer's time.
func (r *sealRig) now() seal.Time { return r.peerKeys.At(time.Now().UnixNano()) }

// sealed returns datagram d sealed by the peer.
func (r *sealRig) sealed(tb testing.TB, d []byte) []byte {
	tb.Helper()
	out := make([]byte, len(d)+seal.Overhead)
	if err := r.peerKeys.Peer(r.self).SealFrom(out, d, r.now()); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestSealedSend: a super-frame for a remote MAC of an encrypted network
// leaves as sealed datagrams in UDP GSO messages (equal sizes but the last,
// within the GSO limits), none showing the payload, which the peer opens
// into the segments, whole and in order.
func TestSealedSend(t *testing.T) {
	r := newSealRig(t)
	payload := bytes.Repeat([]byte("secret payload! "), 4000)
	const mss = 1398
	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, superFrame(t, fpRemote, payload, mss)))
	if len(r.conn.sent) == 0 {
		t.Fatal("nothing sent")
	}
	var got []byte
	segs := 0
	from := r.peerKeys.Peer(r.self)
	for _, m := range r.conn.sent {
		if bytes.Contains(m.Buf[:m.N], []byte("secret payload")) {
			t.Fatal("payload visible on the wire")
		}
		if m.N > MaxSegmentedPayload || m.Segment > 0 && (m.N+m.Segment-1)/m.Segment > MaxSegments {
			t.Fatalf("message of %d bytes in segments of %d breaks the GSO limits", m.N, m.Segment)
		}
		step := m.Segment
		if step == 0 {
			step = m.N
		}
		for off := 0; off < m.N; off += step {
			d := bytes.Clone(m.Buf[off:min(off+step, m.N)])
			if off+step < m.N && len(d) != step {
				t.Fatalf("a segment before the last is %d bytes, not %d", len(d), step)
			}
			pt, v := from.Open(d, r.now())
			if v != seal.Opened {
				t.Fatalf("datagram %d: %v", segs, v)
			}
			vni, inner, _, ok := decap(pt)
			if !ok || vni != 42 {
				t.Fatalf("datagram %d: not VXLAN VNI 42 inside", segs)
			}
			got = append(got, parseTCP(t, inner).Payload...)
			segs++
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("opened %d bytes, want the %d sent", len(got), len(payload))
	}
	if want := (len(payload) + mss - 1) / mss; segs != want {
		t.Errorf("%d datagrams, want %d", segs, want)
	}
}

// TestSealedSendSmall: small datagrams of one flow, sealed, still leave
// as one GSO message.
func TestSealedSendSmall(t *testing.T) {
	r := newSealRig(t)
	sc := newSendScratch(r.pa)
	sc.grow(8)
	var frames [][]byte
	for i := range 8 {
		frames = append(frames, udpLikeFrame(t, i))
	}
	r.sw.sendBatch(r.pa, sc, readInto(sc, frames...))
	if len(r.conn.sent) != 1 || r.conn.frames() != 8 {
		t.Fatalf("%d messages of %d datagrams, want 1 of 8", len(r.conn.sent), r.conn.frames())
	}
	m := r.conn.sent[0]
	for off := 0; off < m.N; off += m.Segment {
		if _, v := r.peerKeys.Peer(r.self).Open(bytes.Clone(m.Buf[off:off+m.Segment]), r.now()); v != seal.Opened {
			t.Fatal(v)
		}
	}
}

// udpLikeFrame is a small TCP frame to fpRemote of one flow, i its
// sequence, with a virtio-net header asking for nothing.
func udpLikeFrame(tb testing.TB, i int) []byte {
	f := tcpFrame(tb, fpA, fpRemote, uint32(1000+i*10), bytes.Repeat([]byte{byte(i)}, 10), true)
	out := make([]byte, offload.VirtioNetHdrLen+len(f))
	copy(out[offload.VirtioNetHdrLen:], f)
	return out
}

// TestSealedNoKey: without the peer's public key nothing is sent, in
// plaintext or otherwise; the frames are counted as no_key.
func TestSealedNoKey(t *testing.T) {
	r := newSealRig(t)
	if err := r.keys.SetPeerKey(r.peer.Addr(), nil); err != nil {
		t.Fatal(err)
	}
	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, superFrame(t, fpRemote, bytes.Repeat([]byte{1}, 5000), 1398)))
	if len(r.conn.sent) != 0 {
		t.Fatalf("%d messages sent without a key", len(r.conn.sent))
	}
	if n := r.sw.drops[dropNoKey].Load(); n != 4 {
		t.Errorf("no_key %d, want 4", n)
	}
}

// TestSealedReceive: sealed datagrams from the peer are opened and merged
// into one super-frame; plaintext of the encrypted VNI, replays, forgeries,
// keys of a past epoch and sealed datagrams from a stranger are dropped,
// each counted by its reason.
func TestSealedReceive(t *testing.T) {
	r := newSealRig(t)
	const mss, n = 1000, 5
	plain := tcpDatagrams(t, n, mss, func(i int) byte { return byte('a' + i) })
	var sealed [][]byte
	for _, d := range plain {
		sealed = append(sealed, r.sealed(t, d))
	}
	replays := make([][]byte, len(sealed))
	for i, d := range sealed {
		replays[i] = bytes.Clone(d)
	}
	var rs recvScratch
	r.sw.receiveBatch(asDatagrams(sealed, r.peer), &rs)
	if len(r.b.frames) != 1 || len(r.b.frames[0]) != offload.VirtioNetHdrLen+ethHeaderLen+20+20+n*mss {
		t.Fatalf("port b got %d writes, want one merged super-frame", len(r.b.frames))
	}
	r.sw.receiveBatch(asGROBuffer(replays, r.peer), &rs)
	forged := r.sealed(t, plain[0])
	forged[len(forged)-1] ^= 1
	// The peer as it was two epochs ago (a process of then: its sender
	// never goes back in time).
	then, err := seal.New(seal.Config{Private: bytes.Repeat([]byte{2}, 32), Secret: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	_ = then.SetPeerKey(r.self, r.keys.PublicKey())
	old := make([]byte, len(plain[0])+seal.Overhead)
	past := r.now()
	past.Epoch -= 2
	if err := then.Peer(r.self).SealFrom(old, plain[0], past); err != nil {
		t.Fatal(err)
	}
	stranger := netip.MustParseAddrPort("192.0.2.99:4789")
	r.sw.receiveBatch(asDatagrams([][]byte{plain[1], forged, old}, r.peer), &rs)
	r.sw.receiveBatch(asDatagrams([][]byte{r.sealed(t, plain[2])}, stranger), &rs)
	if len(r.b.frames) != 1 {
		t.Errorf("port b got %d writes, want only the first batch's", len(r.b.frames))
	}
	for reason, want := range map[DropReason]uint64{dropReplay: n, dropPlaintext: 1, dropAuth: 1, dropKeyExpired: 1, dropNotMember: 1} {
		if got := r.sw.drops[reason].Load(); got != want {
			t.Errorf("%v drops %d, want %d", reason, got, want)
		}
	}
}

// TestPlainVNIUnchanged: a VNI that is not encrypted still takes and sends
// plain VXLAN on a switch with keys.
func TestPlainVNIUnchanged(t *testing.T) {
	r := newSealRig(t)
	r.sw.SetEncrypted(nil)
	var rs recvScratch
	r.sw.receiveBatch(asDatagrams(tcpDatagrams(t, 2, 500, func(int) byte { return 1 }), r.peer), &rs)
	if len(r.b.frames) != 1 {
		t.Fatalf("port b got %d writes, want 1", len(r.b.frames))
	}
	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, udpLikeFrame(t, 0)))
	if len(r.conn.sent) != 1 || r.conn.sent[0].Buf[0] != 0x08 {
		t.Fatal("a plain VNI's frame did not leave as plain VXLAN")
	}
}

// TestSealedAllocs: sealing and opening add no allocation per frame.
func TestSealedAllocs(t *testing.T) {
	r := newSealRig(t)
	r.conn.keep, r.a.keep, r.b.keep = false, false, false
	sf := superFrame(t, fpRemote, bytes.Repeat([]byte{1}, 60000), 1398)
	sc := newSendScratch(r.pa)
	send := func() { r.sw.sendBatch(r.pa, sc, readInto(sc, sf)) }
	send()
	if n := testing.AllocsPerRun(100, send); n != 0 {
		t.Errorf("sendBatch of a sealed super-frame: %v allocs, want 0", n)
	}
	// Fresh datagrams for every run: opened ones are consumed in place,
	// and the same counter again would be a replay.
	const runs = 102
	plain := tcpDatagrams(t, 40, 1398, func(int) byte { return 2 })
	batches := make([][]Message, runs)
	for i := range batches {
		var ds [][]byte
		for _, d := range plain {
			ds = append(ds, r.sealed(t, d))
		}
		batches[i] = asDatagrams(ds, r.peer)
	}
	var rs recvScratch
	next := 0
	recv := func() { r.sw.receiveBatch(batches[next], &rs); next++ }
	recv()
	before := r.b.written.Load()
	if n := testing.AllocsPerRun(100, recv); n != 0 {
		t.Errorf("receiveBatch of sealed datagrams: %v allocs, want 0", n)
	}
	if r.b.written.Load() == before {
		t.Error("nothing was delivered: the test measured nothing")
	}
}

// BenchmarkSealedSend: a 64 KB super-frame segmented and sealed, against
// BenchmarkOffloadSend for the same without sealing.
func BenchmarkSealedSend(b *testing.B) {
	r := newSealRig(b)
	r.conn.keep = false
	payload := bytes.Repeat([]byte{1}, 65000)
	sf := superFrame(b, fpRemote, payload, 1366)
	sc := newSendScratch(r.pa)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.sw.sendBatch(r.pa, sc, readInto(sc, sf))
	}
}

// BenchmarkSealedReceive: 45 sealed TCP segments of one flow opened and
// merged into one TAP write (datagrams sealed ahead, outside the timer).
func BenchmarkSealedReceive(b *testing.B) {
	r := newSealRig(b)
	r.b.keep = false
	plain := tcpDatagrams(b, 45, 1366, func(int) byte { return 3 })
	const ahead = 64
	var batches [ahead][]Message
	refill := func() {
		for i := range batches {
			var ds [][]byte
			for _, d := range plain {
				ds = append(ds, r.sealed(b, d))
			}
			batches[i] = asDatagrams(ds, r.peer)
		}
	}
	refill()
	var rs recvScratch
	b.SetBytes(int64(45 * 1366))
	b.ReportAllocs()
	next := 0
	for b.Loop() {
		if next == ahead {
			b.StopTimer()
			refill()
			next = 0
			b.StartTimer()
		}
		r.sw.receiveBatch(batches[next], &rs)
		next++
	}
}

// TestTraceSealed: a trace to a remote MAC of an encrypted network says
// the datagram is sealed for a peer with a key, and that nothing is sent
// (no_key) to one without.
func TestTraceSealed(t *testing.T) {
	r := newSealRig(t)
	frame := tcpFrame(t, fpA, fpRemote, 1000, []byte("hello"), true)
	tr, err := r.sw.Trace(r.pa.id, frame)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Verdict != "remote" || !hasStep(tr, "encryption", "sealed") {
		t.Fatalf("trace with a key: %+v", tr)
	}
	r.sw.SetSealing(nil) // the node's keys gone: nothing may leave
	tr, err = r.sw.Trace(r.pa.id, frame)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Verdict != "drop" || tr.Drop != "no_key" || !hasStep(tr, "encryption", "drop") {
		t.Fatalf("trace without a key: %+v", tr)
	}
}

func hasStep(tr Trace, stage, result string) bool {
	for _, s := range tr.Steps {
		if s.Stage == stage && s.Result == result {
			return true
		}
	}
	return false
}
