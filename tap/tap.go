// Package tap provides TAP ports as batched Ethernet frame devices.
//
// A Device moves many frames per call. Frames are read and written at an
// offset into each buffer so that callers can keep headroom in front of the
// frame (the VXLAN header is written there in place, no copy).
package tap

import (
	"errors"
	"strings"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

// Errors that Create, Adopt and the Device methods return, wrapped with context;
// test for them with errors.Is.
var (
	// ErrClosed is returned by Read and Write after Close. The device is
	// gone: stop using it.
	ErrClosed = errors.New("tap: device closed")

	// ErrNoTUN means the TUN/TAP driver is not available: /dev/net/tun is
	// missing or has no driver behind it. Retrying will not help until the
	// module is loaded (modprobe tun) or, in a container, the device is
	// passed in.
	ErrNoTUN = errors.New("tap: /dev/net/tun is missing (load the tun module: modprobe tun)")

	// ErrPermission means the process may not create or configure a TAP:
	// it needs root or CAP_NET_ADMIN.
	ErrPermission = errors.New("tap: permission denied (needs root or CAP_NET_ADMIN)")

	// ErrNameInUse means, from Create, that an interface with the
	// requested name already exists: pick another name or remove the old
	// interface; from Adopt, that another open file (another process)
	// holds the TAP's single queue.
	ErrNameInUse = errors.New("tap: interface name already in use")

	// ErrNotFound is returned by Adopt when the network namespace has no
	// TAP of the name, or the link of that name is not a TAP. Adopt
	// created nothing: Create a new TAP instead.
	ErrNotFound = errors.New("tap: no such TAP device")

	// ErrUnsupported is returned by Create and Adopt where TAP devices
	// are not implemented (every OS but Linux).
	ErrUnsupported = errors.New("tap: TAP devices are only supported on Linux")
)

// DefaultBatchSize is the BatchSize of a TAP from Create. A guest TCP
// sender's burst is one 64 KB GSO segment, which the kernel hands the TAP
// as 64 KB / 1450 B = 45 frames: 64 drains such a burst in one poller
// wake-up with room to spare, and fills one sendmmsg on the VXLAN side
// (vtep.DefaultConnConfig also uses 64). Much larger buys little, since a
// TAP still costs one read(2) per frame, and holds the first frame of a
// batch back behind the last.
const DefaultBatchSize = 64

// VnetHdrLen is the length of the virtio-net header in front of every
// frame of a device whose Offloads has VnetHdr: struct virtio_net_hdr
// {u8 flags; u8 gso_type; u16 hdr_len, gso_size, csum_start, csum_offset},
// 10 bytes, the TUNSETVNETHDRSZ default (offload.VirtioNetHdrLen, where it
// is defined, with the header's encoding). Its 16-bit fields are in host
// byte order (little-endian on amd64 and arm64), and csum_start counts from
// the start of the Ethernet header.
const VnetHdrLen = offload.VirtioNetHdrLen

// MaxOffloadFrame is the buffer size, from the offset on, that one frame
// of a device whose Offloads has TSO4 or TSO6 needs: Read then returns TCP
// super-frames of up to 64 KB. It is VnetHdrLen plus offload.MaxSuperFrame
// (65535, the largest IP packet and the kernel's legacy GSO limit, plus 18
// for an Ethernet header with one VLAN tag).
const MaxOffloadFrame = VnetHdrLen + offload.MaxSuperFrame

// Device is a TAP port as a batched frame device.
type Device interface {
	// Read reads up to len(bufs) frames. Frame i is placed at bufs[i][offset:]
	// and its length stored in sizes[i]. Read blocks until at least one frame
	// is available and returns the number of frames read. A frame that does
	// not fit its buffer is truncated by the kernel; callers size buffers for
	// MTU+EthernetHeader, or MaxOffloadFrame if Offloads has TSO4 or TSO6.
	// With Offloads().VnetHdr every frame starts with a VnetHdrLen-byte
	// virtio-net header, which sizes[i] counts. Read must be called from
	// one goroutine at a time.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes bufs[i][offset:] as one frame for every i and returns the
	// number of frames written. With Offloads().VnetHdr each bufs[i][offset:]
	// must start with a virtio-net header (all zero for a plain frame with
	// its checksums complete). Write is safe for concurrent use with Read
	// and with other Writes; each frame is written atomically.
	Write(bufs [][]byte, offset int) (n int, err error)

	// Offloads reports the offloads the kernel granted the device: fixed
	// when it was opened, except that TSOEnabler.EnableTSO may add TSO.
	// Safe for concurrent use.
	Offloads() Offloads

	// BatchSize is the largest number of frames Read returns at once; callers
	// size bufs and sizes to it.
	BatchSize() int

	// Name is the interface name as the kernel knows it.
	Name() string

	// MTU is the link MTU (the largest frame is MTU plus the 14-byte
	// Ethernet header).
	MTU() int

	// Close releases the device; a non-persistent TAP disappears from the
	// kernel. Close is idempotent and unblocks a pending Read.
	Close() error
}

// TSOEnabler is implemented by a TAP opened with Config.LazyTSO: EnableTSO
// asks the kernel for TSO4 and TSO6 (as much as it grants) and returns the
// offloads now on. Read buffers must be sized for super-frames
// (MaxOffloadFrame) before it is called: frames read after it may be that
// large. Call it from the goroutine that reads the TAP.
type TSOEnabler interface {
	EnableTSO() (Offloads, error)
}

// Offloads are the virtio-net header offloads of a Device.
type Offloads struct {
	// VnetHdr means every frame read and written starts with a
	// VnetHdrLen-byte virtio-net header (IFF_VNET_HDR). The kernel then
	// accepts written frames marked NEEDS_CSUM or GSO whatever the other
	// fields say; those say what Read may return.
	VnetHdr bool

	// CSUM means Read may return frames whose L4 checksum holds only the
	// pseudo-header sum (header flag NEEDS_CSUM; TUN_F_CSUM).
	CSUM bool

	// TSO4 and TSO6 mean Read may return TCP super-frames of up to 64 KB
	// over IPv4 and IPv6 (header gso_type TCPV4, TCPV6; TUN_F_TSO4,
	// TUN_F_TSO6).
	TSO4, TSO6 bool
}

// String lists the offloads that are on, "vnet_hdr,csum,tso4,tso6" when
// all are, or returns "off" when none is.
func (o Offloads) String() string {
	var b strings.Builder
	for _, f := range []struct {
		on   bool
		name string
	}{{o.VnetHdr, "vnet_hdr"}, {o.CSUM, "csum"}, {o.TSO4, "tso4"}, {o.TSO6, "tso6"}} {
		if !f.on {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.name)
	}
	if b.Len() == 0 {
		return "off"
	}
	return b.String()
}

// Persister is implemented by devices whose kernel link can outlive them
// (the Linux TAP; find it by type assertion).
type Persister interface {
	// SetPersist makes the link persistent (on), so that it stays when the
	// device is closed or the process exits, or not (off), so that Close
	// removes it. Safe for concurrent use with Read and Write; after Close
	// it returns ErrClosed.
	SetPersist(on bool) error
}

// MultiQueue is implemented by devices that can have several queues
// (the Linux TAP, Config.Queues; find it by type assertion).
type MultiQueue interface {
	// Queues returns every queue of the device, the device Create or Adopt
	// returned first; a single-queue device returns itself alone. Each
	// queue is a Device with its own Read (one reader per queue); the
	// kernel spreads the frames it sends by flow over the queues, and a
	// frame written on any queue enters the kernel. Closing the first
	// queue closes them all; closing another closes that queue only. The
	// slice is the caller's.
	Queues() []Device
}
