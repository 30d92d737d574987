package vtep

import "net/netip"

// Message is one UDP datagram in a batch. On read, Buf is the buffer to fill
// and N, Addr are set to the datagram length and its source. On write,
// Buf[:N] is sent to Addr.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
}

// Conn is a batched UDP endpoint carrying VXLAN datagrams.
type Conn interface {
	// ReadBatch receives up to len(msgs) datagrams, blocking until at least
	// one arrives, and returns how many were received. A datagram longer
	// than its buffer is truncated; N is then len(Buf). Must be called from
	// one goroutine at a time.
	ReadBatch(msgs []Message) (n int, err error)

	// WriteBatch sends msgs[i].Buf[:msgs[i].N] to msgs[i].Addr for every i,
	// returning the number sent. Safe for concurrent use.
	WriteBatch(msgs []Message) (n int, err error)

	// LocalAddr is the address the endpoint is bound to.
	LocalAddr() netip.AddrPort

	// BatchSize is the largest batch ReadBatch fills at once.
	BatchSize() int

	// Close is idempotent and unblocks a pending ReadBatch, which then
	// returns net.ErrClosed.
	Close() error
}

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
	}
}
