package e2e

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// TestE2EOuterUDPChecksum: a VXLAN datagram with a zero outer UDP checksum
// (allowed over IPv4, and what many VTEPs send) is accepted, and what
// ovlsw sends carries a correct, non-zero checksum. A raw socket in the
// peer's namespace plays the remote VTEP: it sends an ARP request for the
// node's TAP address with checksum zero and reads the encapsulated ARP
// reply, UDP header and all.
func TestE2EOuterUDPChecksum(t *testing.T) {
	_, h1, h2 := twoHosts(t)
	// veth hands the outer checksum to "hardware" that does not exist, as
	// the kernel vxlan trap in architecture.md; with offload off the kernel
	// completes it in software, as a real NIC would on the wire.
	if _, err := h1.Run(testCtx(t, 10*time.Second), "ethtool", "-K", "ul0", "tx", "off"); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, h1, "z1", "--vni", "42", "--bind", ul1.Addr().String(), "--peer", ul2.Addr().String(), "--address", ov1.String())

	var fd int
	if err := h2.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	peerMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x01}
	eth := &layers.Ethernet{SrcMAC: peerMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: peerMAC, SourceProtAddress: ov2.Addr().AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: ov1.Addr().AsSlice(),
	}
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: 42}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 4789} // Checksum stays 0: not computed
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, udp, vx, eth, arp); err != nil {
		t.Fatal(err)
	}
	dgram := buf.Bytes()
	if binary.BigEndian.Uint16(dgram[6:8]) != 0 {
		t.Fatal("test datagram has a checksum")
	}
	to := &unix.SockaddrInet4{Addr: ul1.Addr().As4()}

	deadline := time.Now().Add(10 * time.Second)
	rb := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if err := unix.Sendto(fd, dgram, 0, to); err != nil {
			t.Fatal(err)
		}
		for {
			n, _, err := unix.Recvfrom(fd, rb, 0)
			if err != nil {
				break // timeout: send again
			}
			p := gopacket.NewPacket(rb[:n], layers.LayerTypeIPv4, gopacket.Default)
			ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			reply, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
			if ip == nil || u == nil || reply == nil || u.DstPort != 4789 || reply.Operation != layers.ARPReply {
				continue // our own request, or something else
			}
			if u.Checksum == 0 {
				t.Fatal("ovlsw sent a zero UDP checksum")
			}
			// Recompute over the pseudo-header: a correct checksum sums to 0xffff.
			if !udpChecksumOK(ip, rb[ip.IHL*4:n]) {
				t.Fatalf("ovlsw sent a wrong UDP checksum %#04x", u.Checksum)
			}
			if got := n1.status().Drops; got["short"]+got["bad_header"]+got["not_member"] != 0 {
				t.Errorf("drops: %v", got)
			}
			return
		}
	}
	t.Fatalf("no ARP reply to a zero-checksum VXLAN datagram:\n%s", jsonString(n1.status()))
}

func udpChecksumOK(ip *layers.IPv4, seg []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip.SrcIP.To4())
	add(ip.DstIP.To4())
	sum += uint32(unix.IPPROTO_UDP) + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
