// TCP integrity check: a stream of deterministic pseudo-random bytes from
// one namespace to another, compared byte for byte and by SHA-256.

package testbed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
)

// streamChunk is the size of each write and read: 64 KiB, the largest TCP
// segment the stack builds with GSO, so a write is at most one super-packet.
const streamChunk = 64 << 10

// streamSeed seeds the payload generator; both ends derive the same bytes.
var streamSeed = [32]byte([]byte("ovlsw testbed tcp stream payload"))

// TCPStream listens on toAddr (an ephemeral port) inside to, dials it from
// inside from, sends size bytes of deterministic pseudo-random data and
// checks that exactly those bytes arrive: the receiver compares every byte
// with its own copy of the stream (so the error names the first bad offset)
// and both sides compare SHA-256 sums. It returns an error on a mismatch,
// a short or long stream, or when ctx is done first; it never leaves a
// socket or goroutine behind.
func TCPStream(ctx context.Context, from, to *Netns, toAddr netip.Addr, size int64) error {
	if size < 0 {
		return fmt.Errorf("testbed: TCPStream: size %d < 0", size)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var ln *net.TCPListener
	err := to.Do(func() (err error) {
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(toAddr, 0)))
		return err
	})
	if err != nil {
		return fmt.Errorf("testbed: TCPStream: listen in %s: %w", to.Name, err)
	}

	// Everything that can block is closed when ctx is done or on return.
	var closers closeSet
	closers.add(ln)
	stop := context.AfterFunc(ctx, closers.closeAll)
	defer func() {
		stop()
		closers.closeAll()
	}()

	// The receiver: accept one connection, read it to EOF, check it.
	var (
		recvN    int64
		recvSum  [32]byte
		recvErr  error
		recvDone = make(chan struct{})
	)
	go func() {
		defer close(recvDone)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			recvErr = fmt.Errorf("accept: %w", err)
			return
		}
		closers.add(c)
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		recvN, recvSum, recvErr = receiveStream(c, size)
	}()
	// Whatever happens below, the receiver goroutine is gone on return.
	defer func() {
		closers.closeAll()
		<-recvDone
	}()

	prefix := fmt.Sprintf("testbed: TCPStream %s -> %s %v", from.Name, to.Name, ln.Addr())
	var conn net.Conn
	err = from.Do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: dial: %w", prefix, err)
	}
	closers.add(conn)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	sent, err := sendStream(conn, size)
	if err == nil {
		err = conn.(*net.TCPConn).CloseWrite()
	}
	if err != nil {
		closers.closeAll() // the receiver may wait for bytes that never come
		<-recvDone
		return fmt.Errorf("%s: send: %w%s", prefix, err, ctxSuffix(ctx))
	}
	select {
	case <-recvDone:
	case <-ctx.Done(): // closers.closeAll has run; the receiver is ending
		<-recvDone
	}
	switch {
	case recvErr != nil:
		return fmt.Errorf("%s: receive after %d of %d bytes: %w%s", prefix, recvN, size, recvErr, ctxSuffix(ctx))
	case recvN != size:
		return fmt.Errorf("%s: received %d bytes, sent %d", prefix, recvN, size)
	case recvSum != sent:
		return fmt.Errorf("%s: sha256 mismatch: sent %x, received %x", prefix, sent, recvSum)
	}
	return nil
}

// ctxSuffix names ctx's error, if any, for an error message: a closed
// socket is the symptom, the context the cause.
func ctxSuffix(ctx context.Context) string {
	if err := ctx.Err(); err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// sendStream writes size bytes of the payload stream to w and returns their
// SHA-256.
func sendStream(w io.Writer, size int64) ([32]byte, error) {
	gen := rand.NewChaCha8(streamSeed)
	h := sha256.New()
	buf := make([]byte, streamChunk)
	for left := size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		_, _ = gen.Read(b) // never fails
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return [32]byte{}, err
		}
		left -= int64(len(b))
	}
	return [32]byte(h.Sum(nil)), nil
}

// receiveStream reads r to EOF, comparing what arrives with the payload
// stream, and returns the byte count and SHA-256. It stops at the first
// byte that differs or the first byte beyond size.
func receiveStream(r io.Reader, size int64) (int64, [32]byte, error) {
	gen := rand.NewChaCha8(streamSeed)
	h := sha256.New()
	buf := make([]byte, streamChunk)
	want := make([]byte, streamChunk)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			got := buf[:k]
			if n+int64(k) > size {
				return n + int64(k), [32]byte{}, fmt.Errorf("more than %d bytes arrived", size)
			}
			_, _ = gen.Read(want[:k])
			if !bytes.Equal(got, want[:k]) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				return n + int64(i), [32]byte{}, fmt.Errorf("byte %d is %#02x, want %#02x", n+int64(i), got[i], want[i])
			}
			h.Write(got)
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			return n, [32]byte(h.Sum(nil)), nil
		}
		if err != nil {
			return n, [32]byte{}, err
		}
	}
}

// closeSet closes everything added to it once closeAll is called, including
// things added afterwards.
type closeSet struct {
	mu     sync.Mutex
	closed bool
	cs     []io.Closer
}

func (s *closeSet) add(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	s.cs = append(s.cs, c)
}

func (s *closeSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.cs {
		c.Close()
	}
	s.cs = nil
}
