package vtep

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/tap/taptest"
	"github.com/ovlsw/ovlsw/vtep/offload"
)

var vnetOffloads = tap.Offloads{VnetHdr: true, CSUM: true, TSO4: true, TSO6: true}

// vnetRig is a switch on a recording conn with two recording ports with
// virtio-net headers on VNI 42 (MACs fpA and fpB) and one peer.
type vnetRig struct {
	sw     *Switch
	conn   *nullConn
	a, b   *nullDevice
	pa, pb *port
	peer   netip.AddrPort
}

var (
	fpA      = fdb.MAC{2, 0, 0, 0, 0xa, 1}
	fpB      = fdb.MAC{2, 0, 0, 0, 0xa, 2}
	fpRemote = fdb.MAC{2, 0, 0, 0, 0xa, 0xbb}
)

func newVnetRig(tb testing.TB) *vnetRig {
	tb.Helper()
	r := &vnetRig{conn: &nullConn{closed: make(chan struct{}), keep: true}, peer: netip.MustParseAddrPort("192.0.2.2:4789")}
	sw, err := New(Config{Conn: r.conn, FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sw.Close() })
	r.sw = sw
	r.a, r.b = newNullDevice(), newNullDevice()
	r.a.offloads, r.b.offloads = vnetOffloads, vnetOffloads
	r.a.keep, r.b.keep = true, true
	ida, err := sw.AddPort(PortConfig{VNI: 42, Device: r.a})
	if err != nil {
		tb.Fatal(err)
	}
	idb, err := sw.AddPort(PortConfig{VNI: 42, Device: r.b})
	if err != nil {
		tb.Fatal(err)
	}
	r.pa, r.pb = sw.ports.Load().byID[ida], sw.ports.Load().byID[idb]
	waitReading(tb, &r.conn.reads, &r.a.reads, &r.b.reads)
	sw.SetPeers(42, []netip.AddrPort{r.peer})
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: fpA}, fdb.Location{Port: ida}, fdb.OriginLocal, 1)
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: fpB}, fdb.Location{Port: idb}, fdb.OriginLocal, 1)
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: fpRemote}, fdb.Location{VTEP: r.peer}, fdb.OriginLearned, 1)
	return r
}

// tcpFrame builds an Ethernet/IPv4/TCP frame with correct checksums.
func tcpFrame(tb testing.TB, src, dst fdb.MAC, seq uint32, payload []byte, psh bool) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: net.IPv4(10, 9, 0, 1), DstIP: net.IPv4(10, 9, 0, 2), Id: 7}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: seq, Ack: 99, ACK: true, PSH: psh, Window: 512}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// superFrame is what a TAP with TSO hands over: a virtio-net header asking
// for segmentation into mss-byte segments, then one frame with the whole
// payload and only the pseudo-header sum in the TCP checksum field.
func superFrame(tb testing.TB, dst fdb.MAC, payload []byte, mss int) []byte {
	f := tcpFrame(tb, fpA, dst, 1000, payload, true)
	const l4 = ethHeaderLen + 20
	tcpLen := len(f) - l4
	pseudo := pseudoHeaderSum6(netip.AddrFrom4([4]byte{10, 9, 0, 1}), netip.AddrFrom4([4]byte{10, 9, 0, 2}), uint32(tcpLen), 6)
	f[l4+16], f[l4+17] = 0, 0
	p := checksum(nil, pseudo)
	f[l4+16], f[l4+17] = byte(p>>8), byte(p)
	h := offload.VirtioNetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: l4 + 20,
		GSOSize: uint16(mss), CsumStart: l4, CsumOffset: 16}
	out := make([]byte, offload.VirtioNetHdrLen+len(f))
	h.Encode(out)
	copy(out[offload.VirtioNetHdrLen:], f)
	return out
}

// tcpPayload parses frame with gopacket, checks its TCP checksum and
// returns the TCP layer.
func parseTCP(tb testing.TB, frame []byte) *layers.TCP {
	tb.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if tcp == nil || ip == nil {
		tb.Fatalf("not TCP/IPv4: %v", pkt)
	}
	l4 := frame[ethHeaderLen+int(ip.IHL)*4 : ethHeaderLen+int(ip.Length)]
	src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
	dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
	if got := checksum(l4, pseudoHeaderSum6(src, dst, uint32(len(l4)), 6)); got != 0xffff {
		tb.Errorf("TCP checksum of segment seq %d does not verify (sum %#x)", tcp.Seq, got)
	}
	return tcp
}

func readInto(sc *sendScratch, frames ...[]byte) int {
	for i, f := range frames {
		sc.sizes[i] = copy(sc.bufs[i], f)
	}
	return len(frames)
}

// TestOffloadSendSegments: a TSO super-frame for a remote MAC leaves as UDP
// GSO messages of equal-size VXLAN datagrams whose inner frames are the
// segments, checksums complete, the payload whole and in order.
func TestOffloadSendSegments(t *testing.T) {
	r := newVnetRig(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4000) // 46 segments of 1460-byte datagrams: two GSO messages
	const mss = 1398
	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, superFrame(t, fpRemote, payload, mss)))

	if len(r.conn.sent) < 2 {
		t.Fatalf("%d messages sent, want the super-frame split over at least 2 GSO messages", len(r.conn.sent))
	}
	var got []byte
	seq := uint32(1000)
	segs := 0
	for _, m := range r.conn.sent {
		if m.Addr != r.peer {
			t.Fatalf("sent to %v", m.Addr)
		}
		step := m.Segment
		if step == 0 {
			step = m.N
		}
		for off := 0; off < m.N; off += step {
			d := m.Buf[off:min(off+step, m.N)]
			vni, inner, _, ok := decap(d)
			if !ok || vni != 42 {
				t.Fatalf("datagram %d: not VXLAN VNI 42", segs)
			}
			if len(inner)-ethHeaderLen > r.pa.mtu {
				t.Fatalf("segment of %d bytes exceeds MTU %d", len(inner), r.pa.mtu)
			}
			tcp := parseTCP(t, inner)
			if tcp.Seq != seq {
				t.Fatalf("segment %d seq %d, want %d", segs, tcp.Seq, seq)
			}
			last := int(seq-1000)+len(tcp.Payload) == len(payload)
			if tcp.PSH != last {
				t.Errorf("segment %d PSH=%v, want it only on the last", segs, tcp.PSH)
			}
			seq += uint32(len(tcp.Payload))
			got = append(got, tcp.Payload...)
			segs++
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("reassembled %d bytes, want the %d sent", len(got), len(payload))
	}
	if want := (len(payload) + mss - 1) / mss; segs != want {
		t.Errorf("%d segments, want %d", segs, want)
	}
	if tx := r.sw.counters[r.peer.Addr()].txFrames.Load(); tx != uint64(segs) {
		t.Errorf("peer tx frames %d, want %d (one per datagram)", tx, segs)
	}
}

// TestOffloadLocalPassThrough: a super-frame for a local port is written
// to it as read, virtio-net header and all: one write, no segmentation.
func TestOffloadLocalPassThrough(t *testing.T) {
	r := newVnetRig(t)
	sf := superFrame(t, fpB, bytes.Repeat([]byte{7}, 30000), 1398)
	sc := newSendScratch(r.pa)
	r.sw.sendBatch(r.pa, sc, readInto(sc, sf))
	if len(r.b.frames) != 1 || !bytes.Equal(r.b.frames[0], sf) {
		t.Fatalf("port b got %d frames, want the super-frame once, unchanged", len(r.b.frames))
	}
	if len(r.conn.sent) != 0 {
		t.Errorf("%d messages went to the wire", len(r.conn.sent))
	}
}

// tcpDatagrams returns n VXLAN datagrams (VNI 42) of consecutive TCP
// segments from fpRemote to fpB, mss payload bytes each, segment i filled
// with the byte fill(i).
func tcpDatagrams(tb testing.TB, n, mss int, fill func(i int) byte) [][]byte {
	var dgrams [][]byte
	for i := range n {
		dgrams = append(dgrams, encap42(tcpFrame(tb, fpRemote, fpB, uint32(1000+i*mss), bytes.Repeat([]byte{fill(i)}, mss), false)))
	}
	return dgrams
}

// encap42 returns frame behind a VXLAN header for VNI 42, as received.
func encap42(frame []byte) []byte {
	d := make([]byte, HeaderLen+len(frame))
	_ = Header{VNI: 42}.Encode(d)
	copy(d[HeaderLen:], frame)
	return d
}

// asDatagrams returns dgrams as received one datagram per message from addr.
func asDatagrams(dgrams [][]byte, addr netip.AddrPort) []Message {
	var msgs []Message
	for _, d := range dgrams {
		msgs = append(msgs, Message{Buf: d, N: len(d), Addr: addr})
	}
	return msgs
}

// asGROBuffer returns dgrams, all of one length, as one message from addr
// the kernel's UDP GRO coalesced.
func asGROBuffer(dgrams [][]byte, addr netip.AddrPort) []Message {
	var buf []byte
	for _, d := range dgrams {
		buf = append(buf, d...)
	}
	return []Message{{Buf: buf, N: len(buf), Addr: addr, Segment: len(dgrams[0])}}
}

// TestOffloadReceiveGRO: consecutive TCP segments from the wire, as
// separate datagrams or as one UDP GRO buffer, reach the port as one
// super-frame with a virtio-net header asking the kernel to segment it.
func TestOffloadReceiveGRO(t *testing.T) {
	const mss, n = 1000, 5
	dgrams := tcpDatagrams(t, n, mss, func(i int) byte { return byte('a' + i) })
	var payload []byte
	for i := range n {
		payload = append(payload, bytes.Repeat([]byte{byte('a' + i)}, mss)...)
	}
	check := func(t *testing.T, r *vnetRig) {
		t.Helper()
		if len(r.b.frames) != 1 {
			t.Fatalf("port b got %d writes, want 1 merged super-frame", len(r.b.frames))
		}
		out := r.b.frames[0]
		var h offload.VirtioNetHdr
		if err := h.Decode(out); err != nil {
			t.Fatal(err)
		}
		if h.GSOType != offload.GSOTCPv4 || h.GSOSize != mss || h.Flags&offload.FlagNeedsCsum == 0 {
			t.Errorf("virtio-net header %+v, want TCPv4 GSO of %d with NEEDS_CSUM", h, mss)
		}
		pkt := gopacket.NewPacket(out[offload.VirtioNetHdrLen:], layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || tcp.Seq != 1000 || !bytes.Equal(tcp.Payload, payload) {
			t.Fatalf("merged frame does not carry the %d bytes in order", len(payload))
		}
		if len(r.a.frames) != 0 {
			t.Errorf("port a got %d frames", len(r.a.frames))
		}
	}
	t.Run("datagrams", func(t *testing.T) {
		r := newVnetRig(t)
		var rs recvScratch
		r.sw.receiveBatch(asDatagrams(dgrams, r.peer), &rs)
		check(t, r)
	})
	t.Run("udp-gro", func(t *testing.T) {
		r := newVnetRig(t)
		var rs recvScratch
		r.sw.receiveBatch(asGROBuffer(dgrams, r.peer), &rs)
		check(t, r)
	})
}

// TestReceiveMemo: the receive path consults the table once per run of
// frames between the same MACs in a batch; frames of one batch to
// different ports, to an unknown MAC (flooded) and from a second remote MAC
// (learnt) still go where the table says.
func TestReceiveMemo(t *testing.T) {
	r := newVnetRig(t)
	other := fdb.MAC{2, 0, 0, 0, 0xa, 0xcc}
	unknown := fdb.MAC{2, 0, 0, 0, 0xa, 0xdd}
	var dgrams [][]byte
	for i, d := range []struct{ src, dst fdb.MAC }{
		{fpRemote, fpB}, {fpRemote, fpB}, {fpRemote, fpA}, {other, fpA}, {fpRemote, unknown}, {fpRemote, fpB},
	} {
		f := tcpFrame(t, d.src, d.dst, uint32(i), bytes.Repeat([]byte{byte(i)}, 8), true) // 62 bytes: no padding
		dgrams = append(dgrams, encap42(f))
	}
	var rs recvScratch
	r.sw.receiveBatch(asDatagrams(dgrams, r.peer), &rs)
	payloads := func(d *nullDevice) (got []byte) {
		for _, f := range d.frames {
			got = append(got, f[len(f)-1])
		}
		return got
	}
	if got := payloads(r.a); !bytes.Equal(got, []byte{2, 3, 4}) {
		t.Errorf("port a got frames %v, want 2, 3, 4 (4 flooded)", got)
	}
	if got := payloads(r.b); !bytes.Equal(got, []byte{0, 1, 4, 5}) {
		t.Errorf("port b got frames %v, want 0, 1, 4, 5 (4 flooded)", got)
	}
	if loc, ok := r.sw.fdb.Lookup(fdb.Key{VNI: 42, MAC: other}); !ok || loc.VTEP != r.peer {
		t.Errorf("second remote MAC: %+v %v, want learnt at the peer", loc, ok)
	}
}

// TestOffloadAllocs: segmenting a super-frame to the wire and merging
// received segments allocate nothing once warm.
func TestOffloadAllocs(t *testing.T) {
	r := newVnetRig(t)
	r.conn.keep, r.a.keep, r.b.keep = false, false, false
	sf := superFrame(t, fpRemote, bytes.Repeat([]byte{1}, 60000), 1398)
	sc := newSendScratch(r.pa)
	send := func() { r.sw.sendBatch(r.pa, sc, readInto(sc, sf)) }
	send()
	if n := testing.AllocsPerRun(100, send); n != 0 {
		t.Errorf("sendBatch of a super-frame: %v allocs, want 0", n)
	}
	msgs := asDatagrams(tcpDatagrams(t, 40, 1398, func(int) byte { return 2 }), r.peer)
	var rs recvScratch
	recv := func() { r.sw.receiveBatch(msgs, &rs) }
	recv()
	before := r.b.written.Load()
	if n := testing.AllocsPerRun(100, recv); n != 0 {
		t.Errorf("receiveBatch with GRO: %v allocs, want 0", n)
	}
	if r.b.written.Load() == before {
		t.Error("nothing was delivered: the test measured nothing")
	}
}

func BenchmarkOffloadSend(b *testing.B) {
	r := newVnetRig(b)
	r.conn.keep = false
	payload := bytes.Repeat([]byte{1}, 65000)
	sf := superFrame(b, fpRemote, payload, 1398)
	sc := newSendScratch(r.pa)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.sw.sendBatch(r.pa, sc, readInto(sc, sf))
	}
}

// BenchmarkOffloadReceiveGRO: 45 TCP segments of one flow into one TAP
// write, as separate datagrams and as one UDP GRO buffer.
func BenchmarkOffloadReceiveGRO(b *testing.B) {
	r := newVnetRig(b)
	r.b.keep = false
	dgrams := tcpDatagrams(b, 45, 1398, func(int) byte { return 2 })
	for _, bc := range []struct {
		name string
		msgs []Message
	}{{"datagrams", asDatagrams(dgrams, r.peer)}, {"udp-gro", asGROBuffer(dgrams, r.peer)}} {
		b.Run(bc.name, func(b *testing.B) {
			var rs recvScratch
			b.SetBytes(45 * 1398)
			b.ReportAllocs()
			for b.Loop() {
				r.sw.receiveBatch(bc.msgs, &rs)
			}
		})
	}
}

// udpFrame builds an Ethernet/IPv4/UDP frame from fpA to dst, behind a zero
// virtio-net header, as a TAP reads it.
func udpFrame(tb testing.TB, dst fdb.MAC, srcPort uint16, payload []byte) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(fpA[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 9, 0, 1), DstIP: net.IPv4(10, 9, 0, 2)}
	udp := &layers.UDP{SrcPort: layers.UDPPort(srcPort), DstPort: 5201}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return append(make([]byte, offload.VirtioNetHdrLen), buf.Bytes()...)
}

// TestOffloadSmallDatagramsCoalesce: a run of equal-size frames of one flow
// to one peer leaves as one UDP GSO message, in order; another flow gets
// its own message (its own source port).
func TestOffloadSmallDatagramsCoalesce(t *testing.T) {
	r := newVnetRig(t)
	sc := newSendScratch(r.pa)
	sc.grow(12)
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, udpFrame(t, fpRemote, 40000, []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}))
	}
	frames = append(frames, udpFrame(t, fpRemote, 40001, []byte{9, 9, 9, 9, 9, 9, 9, 9}))
	r.sw.sendBatch(r.pa, sc, readInto(sc, frames...))
	if len(r.conn.sent) != 2 {
		t.Fatalf("%d messages, want 2: one GSO message for the first flow, one for the second", len(r.conn.sent))
	}
	m := r.conn.sent[0]
	size := HeaderLen + len(frames[0]) - offload.VirtioNetHdrLen
	if m.Segment != size || m.N != 10*size {
		t.Fatalf("first message: Segment %d, N %d; want 10 datagrams of %d", m.Segment, m.N, size)
	}
	for i := range 10 {
		_, inner, _, ok := decap(m.Buf[i*size : (i+1)*size])
		if !ok || !bytes.Equal(inner, frames[i][offload.VirtioNetHdrLen:]) {
			t.Fatalf("datagram %d is not frame %d", i, i)
		}
	}
	if r.conn.sent[1].Flow == m.Flow {
		t.Error("the second flow has the first one's flow hash")
	}
	if tx := r.sw.counters[r.peer.Addr()].txFrames.Load(); tx != 11 {
		t.Errorf("peer tx frames %d, want 11", tx)
	}
}

// lazyDev is a fake TAP opened with tap.Config.LazyTSO: virtio-net headers
// and checksum offload, TSO once EnableTSO is called.
type lazyDev struct {
	*taptest.Device
	mu  sync.Mutex
	tso bool
}

func (d *lazyDev) Offloads() tap.Offloads {
	d.mu.Lock()
	defer d.mu.Unlock()
	return tap.Offloads{VnetHdr: true, CSUM: true, TSO4: d.tso, TSO6: d.tso}
}

func (d *lazyDev) EnableTSO() (tap.Offloads, error) {
	d.mu.Lock()
	d.tso = true
	d.mu.Unlock()
	return d.Offloads(), nil
}

func (d *lazyDev) enabled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tso
}

// TestLazyTSO: a port with lazy TSO reads small frames into small buffers;
// a read that fills its batch turns TSO on, and the super-frames that come
// after are read whole and segmented to the wire.
func TestLazyTSO(t *testing.T) {
	conn := &nullConn{closed: make(chan struct{}), keep: true}
	sw, err := New(Config{Conn: conn, FDB: fdb.New(fdb.DefaultConfig())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	peer := netip.MustParseAddrPort("192.0.2.2:4789")
	sw.SetPeers(42, []netip.AddrPort{peer})
	sw.fdb.Learn(fdb.Key{VNI: 42, MAC: fpRemote}, fdb.Location{VTEP: peer}, fdb.OriginLearned, 1)
	dev := &lazyDev{Device: taptest.NewWithOffloads("lazy", 1450, tap.Offloads{VnetHdr: true, CSUM: true})}
	for i := range initialBatch {
		dev.Inject(udpFrame(t, fpRemote, 40000, []byte{byte(i), 0, 0, 0}))
	}
	if _, err := sw.AddPort(PortConfig{VNI: 42, Device: dev}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TSO turned on by a full batch", dev.enabled)
	payload := bytes.Repeat([]byte{5}, 60000)
	dev.Inject(superFrame(t, fpRemote, payload, 1398))
	want := initialBatch + (len(payload)+1397)/1398
	waitFor(t, "the super-frame's segments sent", func() bool { return conn.frames() == want })
	if d := sw.dropCount(dropMTU) + sw.dropCount(dropOffload); d != 0 {
		t.Errorf("%d frames dropped as too large or bad offload", d)
	}
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}
