package vtep

import (
	"net/netip"
	"runtime"
	"strconv"
	"strings"
)

// Message is one UDP message in a batch. On read, Buf is the buffer to fill
// and N, Addr, Segment are set to the datagram length, its source and, with
// UDP GRO, the size of the datagrams coalesced into it. On write, Buf[:N] is
// sent to Addr, as one datagram or, with Segment > 0, as datagrams of
// Segment bytes.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort

	// Segment, if > 0, says that Buf[:N] holds datagrams of Segment bytes
	// back to back, of which only the last may be shorter.
	//
	// On write, the conn sends them as one UDP GSO message when the
	// kernel can (ConnOffloads.GSO), as separate datagrams otherwise. A
	// message of more than MaxSegments datagrams or more than
	// MaxSegmentedPayload bytes is refused.
	//
	// On read (only when ConnOffloads.GRO is on), the kernel coalesced
	// datagrams of one sender into Buf[:N]: the caller splits it into
	// Segment-byte datagrams. It is 0 for a datagram that was not
	// coalesced.
	Segment int

	// Flow is the hash of the inner flow the message carries. On write,
	// with a source-port pool (ConnConfig.SourcePorts), it picks the
	// socket and so the outer source port: RFC 7348 section 5 asks for
	// the source port to be a hash of the inner frame, so that the
	// underlay's ECMP and RSS spread flows. One flow always leaves from
	// one port, which keeps its datagrams in order. Unused on read.
	Flow uint32

	// Sent is set by WriteBatch: whether the message went to the kernel
	// (for one sent as separate datagrams, its first did). WriteBatch skips
	// a message it cannot send and goes on with the rest, so its count
	// alone does not say which ones went. Unused on read.
	Sent bool
}

const (
	// MaxSegments is the most datagrams one Message with Segment > 0
	// may carry: the kernel's UDP_MAX_SEGMENTS (include/linux/udp.h).
	MaxSegments = 64

	// MaxSegmentedPayload is the most bytes one Message with Segment > 0
	// may carry: a GSO message is built as one UDP datagram before it is
	// cut up, so it is limited like one, 65535 - 20 (IPv4 header) - 8
	// (UDP header).
	MaxSegmentedPayload = 65507
)

// Conn is a batched UDP endpoint carrying VXLAN datagrams.
type Conn interface {
	// ReadBatch receives up to len(msgs) messages, blocking until at
	// least one arrives, and returns how many were received. A message
	// longer than its buffer is truncated; N is then len(Buf). With GRO
	// on (Offloads), a message may hold several datagrams (see
	// Message.Segment), up to 65535 bytes: buffers smaller than that lose
	// the tail of such a message. Must be called from one goroutine at a
	// time. It reads the first of Readers: with several, the others must
	// be read too.
	ReadBatch(msgs []Message) (n int, err error)

	// Readers returns the conn's receive queues, each to be read by one
	// goroutine; the first is the Conn's own ReadBatch. Every datagram
	// arrives on exactly one of them, and all datagrams of one sender
	// (source address and port) on the same one, in order. A queue nobody
	// reads fills up and drops what the kernel steers to it. Each
	// BatchReader's ReadBatch behaves as Conn.ReadBatch does, Close
	// included. The slice is the caller's. Safe for concurrent use; does
	// not block.
	Readers() []BatchReader

	// WriteBatch sends msgs[i].Buf[:msgs[i].N] to msgs[i].Addr for every
	// i, returning the number of messages sent (a message of several
	// segments counts once) and setting each one's Sent. A message that
	// cannot be sent is skipped; the rest still go. Safe for concurrent
	// use.
	WriteBatch(msgs []Message) (n int, err error)

	// LocalAddr is the address the endpoint is bound to and receives on.
	LocalAddr() netip.AddrPort

	// BatchSize is the largest batch ReadBatch fills at once.
	BatchSize() int

	// Offloads reports what the endpoint does in the kernel. It may
	// change once, when a GSO send fails and GSO is turned off. Safe for
	// concurrent use; does not block.
	Offloads() ConnOffloads

	// Close is idempotent and unblocks a pending ReadBatch, which then
	// returns net.ErrClosed.
	Close() error
}

// BatchReader is one receive queue of a Conn.
type BatchReader interface {
	// ReadBatch receives up to len(msgs) messages from this queue as
	// Conn.ReadBatch does: it blocks until at least one arrives, returns
	// an error that errors.Is net.ErrClosed once the Conn is closed, and
	// must be called from one goroutine at a time.
	ReadBatch(msgs []Message) (n int, err error)
}

// ConnOffloads says which kernel offloads a Conn uses.
type ConnOffloads struct {
	// GSO: a Message with Segment > 0 goes to the kernel as one UDP GSO
	// message (UDP_SEGMENT) rather than as separate datagrams.
	GSO bool

	// GRO: the kernel coalesces received datagrams (UDP_GRO) and
	// ReadBatch reports them with Message.Segment set.
	GRO bool

	// SourcePorts is how many sockets, each with its own source port,
	// WriteBatch picks from by Message.Flow; 0 when everything leaves
	// from the bound socket.
	SourcePorts int

	// Readers is how many receive sockets share the bound port
	// (SO_REUSEPORT), each read through one of Conn.Readers; 0 or 1 when
	// there is one.
	Readers int

	// GSOKernelBug is the kernel release when GSO was asked for but left
	// off because that kernel corrupts GSO output (gsoCorrupts).
	GSOKernelBug string
}

// String returns the offloads for status output, such as
// "gso,gro,srcports=16,readers=2", or "off" when there are none. One
// reader is not shown.
func (o ConnOffloads) String() string {
	var b []byte
	add := func(s string) {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	if o.GSO {
		add("gso")
	} else if o.GSOKernelBug != "" {
		add("gso=off(kernel " + o.GSOKernelBug + " bug)")
	}
	if o.GRO {
		add("gro")
	}
	if o.SourcePorts > 0 {
		add("srcports=" + strconv.Itoa(o.SourcePorts))
	}
	if o.Readers > 1 {
		add("readers=" + strconv.Itoa(o.Readers))
	}
	if len(b) == 0 {
		return "off"
	}
	return string(b)
}

// maxSourcePorts is the largest ConnConfig.SourcePorts. Spreading needs
// only a few ports per receive queue or ECMP path of the underlay; each
// port costs a socket (a file descriptor and its buffers).
const maxSourcePorts = 256

// maxReaders is the largest ConnConfig.Readers: more receive sockets than
// cores buy nothing, and each costs a file descriptor, its buffers and a
// goroutine.
const maxReaders = 64

// ConnConfig configures Listen.
type ConnConfig struct {
	// Addr is the local address and port to bind. Its family picks the
	// socket: an IPv4 (or IPv4-mapped) address gives an AF_INET socket,
	// an IPv6 address an AF_INET6 one; "::" also carries IPv4. Port 0
	// picks a free port (see Conn.LocalAddr).
	Addr netip.AddrPort

	// BatchSize is the most datagrams one ReadBatch returns and one
	// sendmmsg call carries (WriteBatch splits longer batches). 0 means
	// the default; at most 1024 (UIO_MAXIOV).
	BatchSize int

	// SocketBuffer is the requested size in bytes of the socket's receive
	// and send buffers. It is forced past net.core.[rw]mem_max when the
	// process has CAP_NET_ADMIN and capped there otherwise. 0 keeps the
	// kernel default.
	SocketBuffer int

	// GSO asks for UDP generic segmentation offload on send (kernel
	// 4.18): a Message with Segment > 0 is handed to the kernel whole. It
	// is used only if the kernel accepts UDP_SEGMENT at Listen, and
	// turned off for good if a GSO send fails with EIO (an egress device
	// without checksum offload, before kernel 6.11) or EINVAL. Listen
	// leaves it off on kernels that corrupt GSO output whose segments are
	// all the same size (7.0 to 7.1.4), and says so in
	// ConnOffloads.GSOKernelBug.
	GSO bool

	// GRO asks for UDP generic receive offload (kernel 5.12, where it can
	// be read back): the kernel coalesces datagrams of one sender and
	// ReadBatch returns them with Message.Segment set. Read buffers must
	// then be 65535 bytes.
	GRO bool

	// SourcePorts is how many extra sockets, each bound to the local
	// address with a port of the kernel's choosing (the ephemeral range),
	// WriteBatch sends from, picked by Message.Flow. 0 sends everything
	// from the bound socket. At most 256 (maxSourcePorts).
	SourcePorts int

	// Readers is how many receive sockets share Addr, each read by its
	// own goroutine through Conn.Readers. 0 or 1 binds one socket. More
	// bind that many with SO_REUSEPORT, all with the same options, and
	// the kernel spreads datagrams over them by a hash of source and
	// destination address and port: one outer flow (and WriteBatch picks
	// the outer source port per inner flow) always lands on one socket,
	// so its order is kept. Every reader must then be read. At most 64
	// (maxReaders).
	Readers int
	// Group, if valid, is a multicast group of Addr's family that the
	// conn joins (group.go): one more receive socket, bound to the group
	// and Addr's port and read through Conn.Readers, takes what is sent
	// to it, and every socket sends to multicast destinations out of
	// GroupInterface with TTL GroupTTL, without looping them back.
	Group netip.Addr
	// GroupInterface is the index of the interface Group is joined on
	// and sent to through; 0 lets the kernel pick by route.
	GroupInterface int
	// GroupTTL is the TTL (IPv6: hop limit) of datagrams sent to a group;
	// 0 means 1, the local segment, as for the kernel's vxlan device.
	GroupTTL int
}

// DefaultConnConfig returns the configuration ovlsw uses unless told
// otherwise.
func DefaultConnConfig() ConnConfig {
	return ConnConfig{
		// All addresses, the IANA VXLAN port (RFC 7348 section 5).
		Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 4789),
		// 64 full-size (1500 B) datagrams are ~96 KB per syscall, which
		// amortises the syscall like one 64 KB GSO super-frame; it is
		// also the TAP side's batch, so one read feeds one send.
		BatchSize: 64,
		// 4 MiB holds ~1800 full-size datagrams at ~2.3 KB of kernel
		// memory each: about 2 ms of 10 Gb/s, enough to ride out a
		// scheduling hiccup of the receive goroutine without drops.
		SocketBuffer: 4 << 20,
		// One kernel trip per up to 64 datagrams each way, the largest
		// win after TAP offloads; both fall back by themselves where the
		// kernel lacks them.
		GSO: true,
		GRO: true,
		// 16 ports give an underlay's ECMP hash and the receiver's RSS
		// 16 values to spread flows over, more than the queues or paths
		// of a typical host, for 16 file descriptors.
		SourcePorts: 16,
		// One receive socket and goroutine per core, so decap runs on
		// several cores. The cap of 4 is a guess, not a measurement: it
		// leaves cores to the TAP side and the kernel's softirq work.
		Readers: min(runtime.NumCPU(), 4),
	}
}

// gsoCorrupts reports whether the kernel release (uname -r, as "7.1.3" or
// "7.0.0-rc2-foo") is one whose UDP GSO corrupts its output when all
// segments have the same size: 7.0 to 7.1.4 (fast-path.md section 2).
// Equal-size segments are what every full TCP super-frame gives, so on such
// a kernel GSO stays off. A release it cannot read is taken as unaffected.
func gsoCorrupts(release string) bool {
	if end := strings.IndexFunc(release, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }); end >= 0 {
		release = release[:end] // "7.0.12-200.fc44" -> "7.0.12"
	}
	parts := strings.Split(release, ".")
	if len(parts) < 2 {
		return false
	}
	var v [3]int // major, minor, patch
	for i := range min(len(parts), 3) {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return false
		}
		v[i] = n
	}
	return v[0] == 7 && (v[1] == 0 || v[1] == 1 && v[2] <= 4)
}
