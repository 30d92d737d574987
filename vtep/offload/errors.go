package offload

import (
	"errors"
	"fmt"
)

// The three kinds of error this package returns. Every error it returns
// wraps exactly one of them, so a caller can count drops by kind with
// errors.Is. None of them is worth a retry: the caller drops the frame.
var (
	// ErrShort: a header, or a checksum field, reaches past the end of the
	// buffer.
	ErrShort = errors.New("offload: short frame")
	// ErrMalformed: the frame contradicts itself or its virtio_net_hdr
	// (gso_size 0, a TCPv4 GSO type on an IPv6 packet, a bad IHL...).
	ErrMalformed = errors.New("offload: malformed frame")
	// ErrUnsupported: well-formed but outside what this package handles
	// (UDP GSO, IPv6 extension headers, stacked VLAN tags...).
	ErrUnsupported = errors.New("offload: unsupported frame")
)

// The specific errors, made once so that returning one allocates nothing.
var (
	errShortHdr       = fmt.Errorf("%w: virtio_net_hdr needs %d bytes", ErrShort, VirtioNetHdrLen)
	errShortCsum      = fmt.Errorf("%w: csum_start+csum_offset+2 beyond the frame", ErrShort)
	errShortEth       = fmt.Errorf("%w: Ethernet header", ErrShort)
	errShortIP        = fmt.Errorf("%w: IP header", ErrShort)
	errShortTCP       = fmt.Errorf("%w: TCP header", ErrShort)
	errGSOSize        = fmt.Errorf("%w: gso_size 0", ErrMalformed)
	errGSOEtherType   = fmt.Errorf("%w: GSO type does not match the EtherType", ErrMalformed)
	errIPVersion      = fmt.Errorf("%w: IP version does not match the EtherType", ErrMalformed)
	errIHL            = fmt.Errorf("%w: IPv4 IHL below 5", ErrMalformed)
	errFragment       = fmt.Errorf("%w: TSO of an IPv4 fragment", ErrMalformed)
	errNotTCP         = fmt.Errorf("%w: TSO of a packet that is not TCP", ErrMalformed)
	errTCPOffset      = fmt.Errorf("%w: TCP data offset below 5", ErrMalformed)
	errSegmentTooLong = fmt.Errorf("%w: a segment exceeds the 65535 bytes an IP length field holds", ErrMalformed)
	errGSOECN         = fmt.Errorf("%w: ECN bit without a GSO type", ErrMalformed)
	errGSOType        = fmt.Errorf("%w: GSO type (only TCPv4 and TCPv6)", ErrUnsupported)
	errIPv6Ext        = fmt.Errorf("%w: IPv6 extension headers", ErrUnsupported)
	errVLANStack      = fmt.Errorf("%w: more than one VLAN tag", ErrUnsupported)
)
