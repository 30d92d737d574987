package offload

// This file holds the virtio_net_hdr that a TAP opened with IFF_VNET_HDR
// reads and writes before every frame, and completeChecksum, which does what
// the header's NEEDS_CSUM asks of a device.
//
// Design notes: tun uses the legacy (pre-virtio-1.0) header, 10 bytes in host
// byte order unless TUNSETVNETBE/LE says otherwise, so Decode and Encode use
// binary.NativeEndian. The 12-byte header with num_buffers is not used by tun.

import "encoding/binary"

// VirtioNetHdrLen is the size of the legacy struct virtio_net_hdr that tun
// uses, the TUNSETVNETHDRSZ default: flags, gso_type (1 byte each) and
// hdr_len, gso_size, csum_start, csum_offset (2 bytes each), 1+1+4*2 = 10
// bytes. It is the one definition: tap.VnetHdrLen is this constant.
const VirtioNetHdrLen = 10

// MaxSuperFrame is the largest frame a TAP with TSO hands over (and GRO
// builds), behind its virtio-net header: an IP packet of 65535 bytes (the
// largest a 16-bit length field holds, also the kernel's legacy GSO limit)
// behind an Ethernet header with one VLAN tag, 18 bytes. tap.MaxOffloadFrame
// is VirtioNetHdrLen + MaxSuperFrame.
const MaxSuperFrame = maxIPLen + vlanHeaderLen

// Values of VirtioNetHdr.Flags (linux/virtio_net.h VIRTIO_NET_HDR_F_*).
const (
	// FlagNeedsCsum: the L4 checksum field at CsumStart+CsumOffset holds only
	// the folded pseudo-header sum; the bytes from CsumStart to the end of
	// the frame must still be summed in.
	FlagNeedsCsum = 1
	// FlagDataValid: the sender verified the checksums; the receiver need
	// not (the skb becomes CHECKSUM_UNNECESSARY).
	FlagDataValid = 2
)

// Values of VirtioNetHdr.GSOType (linux/virtio_net.h VIRTIO_NET_HDR_GSO_*).
const (
	GSONone  = 0    // not a super-frame
	GSOTCPv4 = 1    // TCP over IPv4, segment by GSOSize (TSO)
	GSOUDP   = 3    // UDP fragmentation offload (UFO), long deprecated
	GSOTCPv6 = 4    // TCP over IPv6
	GSOUDPL4 = 5    // UDP segmentation (USO), kernel 6.2
	GSOECN   = 0x80 // or'ed in: the TCP header carries CWR (ECN)
)

// VirtioNetHdr is the legacy struct virtio_net_hdr (virtio 0.9.5 section
// 5.1.6, linux/virtio_net.h), in host byte order:
//
//	 0               1               2               3
//	 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//	+---------------+---------------+-------------------------------+
//	|     flags     |   gso_type    |            hdr_len            |
//	+---------------+---------------+-------------------------------+
//	|           gso_size            |          csum_start           |
//	+-------------------------------+-------------------------------+
//	|          csum_offset          |
//	+-------------------------------+
//
// On a TAP, CsumStart counts from the first byte of the Ethernet header.
// HdrLen is a hint (the length of the headers) that senders often get
// wrong: this package never trusts it.
type VirtioNetHdr struct {
	Flags      uint8  // FlagNeedsCsum, FlagDataValid
	GSOType    uint8  // GSONone, GSOTCPv4, GSOTCPv6, ... optionally | GSOECN
	HdrLen     uint16 // Ethernet + IP + L4 header length of a super-frame
	GSOSize    uint16 // L4 payload bytes per segment
	CsumStart  uint16 // offset of the L4 header, from the Ethernet header
	CsumOffset uint16 // offset of the checksum field from CsumStart (16 for TCP, 6 for UDP)
}

// Decode reads h from b[0:VirtioNetHdrLen]. It returns an error wrapping
// ErrShort if b is shorter. It does not check the values.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VirtioNetHdrLen {
		return errShortHdr
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:4])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:6])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:8])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:10])
	return nil
}

// Encode writes h to b[0:VirtioNetHdrLen]. It panics if b is shorter: the
// caller reserves the room before the frame, so that is a programming error.
func (h *VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:4], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:6], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:8], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:10], h.CsumOffset)
}

// completeChecksum finishes the checksum of frame in place as h asks: with
// FlagNeedsCsum it sums frame[CsumStart:] (the checksum field already holds
// the pseudo-header sum) and stores the complement at CsumStart+CsumOffset,
// as 0xffff rather than 0 like the kernel's skb_checksum_help, so that a UDP
// checksum never turns into "no checksum". Without FlagNeedsCsum it does
// nothing. It leaves h unchanged. It returns an error wrapping ErrShort,
// changing nothing, if the checksum field is not inside frame. It does not
// look at the protocols, and it does not allocate.
func completeChecksum(frame []byte, h *VirtioNetHdr) error {
	if h.Flags&FlagNeedsCsum == 0 {
		return nil
	}
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if field+2 > len(frame) {
		return errShortCsum
	}
	completeAt(frame, start, field)
	return nil
}

// completeAt is completeChecksum once the offsets are known to be inside frame.
func completeAt(frame []byte, start, field int) {
	c := ^Checksum(frame[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:field+2], c)
}
