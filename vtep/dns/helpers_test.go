package dns

// Test helpers: the fixture networks, query frames built with gopacket,
// answers decoded with gopacket, checksum checks, and a collecting Deliver.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/offload"
)

const (
	vniA = 100 // network "mynet"
	vniB = 200 // network "other"
	// testOff is the headroom before frames in test buffers.
	testOff = 16
	// testMTU is the port MTU of test buffers.
	testMTU = 1500
)

var (
	dnsA4    = netip.MustParseAddr("10.0.0.2")
	dnsA6    = netip.MustParseAddr("fd00::2")
	dnsB4    = netip.MustParseAddr("10.1.0.2")
	gwMAC    = fdb.MAC{0x02, 0, 0, 0, 0, 0x01}
	cliMAC   = fdb.MAC{0x02, 0, 0, 0, 0, 0xaa}
	cli4     = netip.MustParseAddr("10.0.0.100")
	cli6     = netip.MustParseAddr("fd00::100")
	cliB4    = netip.MustParseAddr("10.1.0.100")
	macWeb   = fdb.MAC{0x02, 0, 0, 0, 1, 0x01}
	macWeb2  = fdb.MAC{0x02, 0, 0, 0, 1, 0x02}
	macWeb3  = fdb.MAC{0x02, 0, 0, 0, 1, 0x03}
	macDB    = fdb.MAC{0x02, 0, 0, 0, 1, 0x04}
	macAPI   = fdb.MAC{0x02, 0, 0, 0, 1, 0x05}
	macAPI2  = fdb.MAC{0x02, 0, 0, 0, 1, 0x06}
	macBig   = fdb.MAC{0x02, 0, 0, 0, 1, 0x07}
	macOther = fdb.MAC{0x02, 0, 0, 0, 2, 0x01}
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// bigIPs are 40 IPv4 addresses: an answer too big for 512 bytes.
func bigIPs() []netip.Addr {
	var out []netip.Addr
	for i := range 40 {
		out = append(out, netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}))
	}
	return out
}

// testTable returns the fixture: network mynet (VNI 100) with web (dual
// stack, aliases www and Front_End, service websvc), web2 and web3 (websvc),
// db_1 (IPv4 only), api (an endpoint and a service of the same name), many
// (80 addresses); network other (VNI 200) with its own web and secret.
func testTable() *Table {
	t := NewTable()
	t.SetNetwork(vniA, "mynet", []netip.Addr{dnsA4, dnsA6}, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/64")})
	t.Set(vniA, macWeb, Record{Name: "web", Aliases: []string{"www", "Front_End"}, Service: "websvc", IPs: addrs("10.0.0.10", "fd00::10")})
	t.Set(vniA, macWeb2, Record{Name: "web2", Service: "websvc", IPs: addrs("10.0.0.11")})
	t.Set(vniA, macWeb3, Record{Name: "web3", Service: "websvc", IPs: addrs("10.0.0.12")})
	t.Set(vniA, macDB, Record{Name: "db_1", IPs: addrs("10.0.0.20")})
	t.Set(vniA, macAPI, Record{Name: "api", IPs: addrs("10.0.0.30")})
	t.Set(vniA, macAPI2, Record{Name: "api_2", Service: "api", IPs: addrs("10.0.0.31")})
	t.Set(vniA, macBig, Record{Name: "many", IPs: bigIPs()})
	t.SetNetwork(vniB, "other", []netip.Addr{dnsB4}, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")})
	t.Set(vniB, macOther, Record{Name: "secret", Aliases: []string{"web"}, IPs: addrs("10.1.0.10")})
	return t
}

// delivered collects what Deliver gets.
type delivered struct {
	mu     sync.Mutex
	frames [][]byte
	ports  []int
}

func (d *delivered) deliver(port int, frame []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.frames = append(d.frames, append([]byte(nil), frame...))
	d.ports = append(d.ports, port)
}

// wait polls until n frames arrived or the deadline passes.
func (d *delivered) wait(t *testing.T, n int, within time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		d.mu.Lock()
		got := len(d.frames)
		out := append([][]byte(nil), d.frames...)
		d.mu.Unlock()
		if got >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d frames delivered, want %d", within, got, n)
		}
		time.Sleep(time.Millisecond) // a poll interval, not synchronisation
	}
}

func (d *delivered) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.frames)
}

// newTestResponder returns a responder over testTable with no rate limit,
// and its delivery collector.
func newTestResponder(t testing.TB, mod func(*Config)) (*Responder, *delivered) {
	t.Helper()
	d := &delivered{}
	cfg := DefaultConfig()
	cfg.Table = testTable()
	cfg.Deliver = d.deliver
	cfg.RatePerPort = 0
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, d
}

// q describes a test query.
type q struct {
	name   string
	typ    layers.DNSType
	id     uint16
	edns   int // EDNS0 payload size; 0: no OPT record
	src    netip.Addr
	dst    netip.Addr
	sport  uint16
	srcMAC fdb.MAC
	dstMAC fdb.MAC // the frame's destination MAC; gwMAC by default
}

func (x q) fill() q {
	if x.id == 0 {
		x.id = 0x1234
	}
	if !x.src.IsValid() {
		x.src = cli4
	}
	if !x.dst.IsValid() {
		if x.src.Is6() {
			x.dst = dnsA6
		} else {
			x.dst = dnsA4
		}
	}
	if x.sport == 0 {
		x.sport = 40000
	}
	if x.srcMAC == (fdb.MAC{}) {
		x.srcMAC = cliMAC
	}
	if x.dstMAC == (fdb.MAC{}) {
		x.dstMAC = gwMAC
	}
	return x
}

// hdrLen is the length of the headers of x's TCP frames, without options.
func (x q) hdrLen() int {
	if x.src.Is6() {
		return ethHeaderLen + ipv6HeaderLen + tcpHeaderLen
	}
	return ethHeaderLen + ipv4HeaderLen + tcpHeaderLen
}

// dnsLayer returns the DNS query x as gopacket's layer.
func (x q) dnsLayer() *layers.DNS {
	d := &layers.DNS{ID: x.id, RD: true, OpCode: layers.DNSOpCodeQuery,
		// On the wire every name ends in the root label: gopacket writes
		// it without the dot the test may spell.
		Questions: []layers.DNSQuestion{{Name: []byte(strings.TrimSuffix(x.name, ".")), Type: x.typ, Class: layers.DNSClassIN}}}
	if x.edns > 0 {
		d.Additionals = []layers.DNSResourceRecord{{Type: layers.DNSTypeOPT, Class: layers.DNSClass(x.edns)}}
	}
	return d
}

// dnsBytes returns the DNS query x serialised.
func (x q) dnsBytes(t testing.TB) []byte {
	t.Helper()
	x = x.fill()
	sb := gopacket.NewSerializeBuffer()
	if err := x.dnsLayer().SerializeTo(sb, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes()
}

// l3 returns the Ethernet and IP layers of a frame from x's source to its
// destination, and the IP layer for L4 checksums.
func (x q) l3(proto layers.IPProtocol) ([]gopacket.SerializableLayer, gopacket.NetworkLayer) {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(x.srcMAC[:]), DstMAC: net.HardwareAddr(x.dstMAC[:])}
	if x.src.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: x.src.AsSlice(), DstIP: x.dst.AsSlice()}
		return []gopacket.SerializableLayer{eth, ip}, ip
	}
	eth.EthernetType = layers.EthernetTypeIPv4
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Flags: layers.IPv4DontFragment,
		SrcIP: x.src.AsSlice(), DstIP: x.dst.AsSlice()}
	return []gopacket.SerializableLayer{eth, ip}, ip
}

// udpFrame returns x as a UDP query frame carrying payload (x's DNS
// message when payload is nil).
func (x q) udpFrame(t testing.TB, payload []byte) []byte {
	t.Helper()
	x = x.fill()
	if payload == nil {
		payload = x.dnsBytes(t)
	}
	ls, nl := x.l3(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(x.sport), DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
		t.Fatal(err)
	}
	return serialize(t, append(ls, udp, gopacket.Payload(payload))...)
}

// tcpFrame returns a TCP segment from x's source with the given flags,
// numbers and payload; a SYN carries an MSS option of mss when not 0.
func (x q) tcpFrame(t testing.TB, syn, ack, fin, rst bool, seq, ackn uint32, mss uint16, payload []byte) []byte {
	t.Helper()
	x = x.fill()
	ls, nl := x.l3(layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(x.sport), DstPort: 53, Seq: seq, Ack: ackn,
		SYN: syn, ACK: ack, FIN: fin, RST: rst, PSH: len(payload) > 0, Window: 64240}
	if mss != 0 {
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
			OptionData: binary.BigEndian.AppendUint16(nil, mss)}}
	}
	if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
		t.Fatal(err)
	}
	return serialize(t, append(ls, tcp, gopacket.Payload(payload))...)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), sb.Bytes()...)
}

// handle runs frame through r as port's frame in vni, in a buffer with
// testOff headroom and room for testMTU, and returns the verdict and the
// reply frame (a copy).
func handle(r *Responder, port int, vni uint32, frame []byte) (Verdict, []byte) {
	buf := make([]byte, testOff+max(len(frame), testMTU+ethHeaderLen))
	copy(buf[testOff:], frame)
	v, n := r.Handle(port, vni, buf, testOff, len(frame))
	if v != Answered {
		return v, nil
	}
	return v, append([]byte(nil), buf[testOff:testOff+n]...)
}

// checkFrame checks that frame is a reply to x: addressed to x's source
// MAC, IP and port from its destination, with valid IPv4 header, UDP or
// TCP checksums. It returns the decoded packet.
func checkFrame(t *testing.T, x q, frame []byte) gopacket.Packet {
	t.Helper()
	x = x.fill()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil {
		t.Fatalf("reply is not Ethernet: %v", pkt)
	}
	if fdb.MAC(eth.DstMAC) != x.srcMAC || fdb.MAC(eth.SrcMAC) != x.dstMAC {
		t.Errorf("reply MACs %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, x.dstMAC, x.srcMAC)
	}
	var src, dst netip.Addr
	var l4 []byte
	var pseudo uint64
	var proto uint8
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		if c := offload.Checksum(frame[ethHeaderLen:ethHeaderLen+ipv4HeaderLen], 0); c != 0xffff {
			t.Errorf("IPv4 header checksum: sum %#x, want 0xffff", c)
		}
		l4 = frame[ethHeaderLen+ipv4HeaderLen : ethHeaderLen+int(ip.Length)]
		proto = uint8(ip.Protocol)
		s, d := src.As4(), dst.As4()
		pseudo = uint64(binary.BigEndian.Uint32(s[:])) + uint64(binary.BigEndian.Uint32(d[:])) + uint64(len(l4)) + uint64(proto)
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		l4 = frame[ethHeaderLen+ipv6HeaderLen : ethHeaderLen+ipv6HeaderLen+int(ip.Length)]
		proto = uint8(ip.NextHeader)
		pseudo = offload.PseudoHeaderSum6(src, dst, uint32(len(l4)), proto)
	default:
		t.Fatalf("reply has no IP layer: %v", pkt)
	}
	if src != x.dst || dst != x.src {
		t.Errorf("reply IPs %v -> %v, want %v -> %v", src, dst, x.dst, x.src)
	}
	if c := offload.Checksum(l4, pseudo); c != 0xffff {
		t.Errorf("L4 (protocol %d) checksum: sum %#x, want 0xffff", proto, c)
	}
	if got := binary.BigEndian.Uint16(l4[0:2]); got != 53 {
		t.Errorf("reply source port %d, want 53", got)
	}
	if got := binary.BigEndian.Uint16(l4[2:4]); got != x.sport {
		t.Errorf("reply destination port %d, want %d", got, x.sport)
	}
	return pkt
}

// udpAnswer checks the UDP reply frame to x and returns its DNS message
// decoded by gopacket and the raw DNS bytes.
func udpAnswer(t *testing.T, x q, frame []byte) (*layers.DNS, []byte) {
	t.Helper()
	pkt := checkFrame(t, x, frame)
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if udp == nil {
		t.Fatalf("reply is not UDP: %v", pkt)
	}
	return decodeDNS(t, udp.Payload), udp.Payload
}

func decodeDNS(t *testing.T, b []byte) *layers.DNS {
	t.Helper()
	d := &layers.DNS{}
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("answer does not decode: %v (% x)", err, b)
	}
	return d
}

// answerIPs returns the addresses in d's answer section, in order.
func answerIPs(d *layers.DNS) []netip.Addr {
	var out []netip.Addr
	for _, a := range d.Answers {
		if a.Type == layers.DNSTypeA || a.Type == layers.DNSTypeAAAA {
			ip, _ := netip.AddrFromSlice(a.IP)
			out = append(out, ip.Unmap())
		}
	}
	return out
}
