package tap

// Tests of the fd-level code (batched Read, Write, Close) on a
// SOCK_SEQPACKET socketpair, which keeps message boundaries like a TAP and
// needs no root.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const wait = 10 * time.Second // how long a test waits for what must happen

// socketpairDevice returns a device on one end of a socketpair and the
// other end as a blocking fd for the test to play the kernel with. Both
// are closed when the test ends.
func socketpairDevice(tb testing.TB) (*linuxTAP, int) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for _, fd := range fds {
		// Room for a few batches of full-size frames (capped at
		// net.core.wmem_max, which is plenty).
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
			tb.Fatal(err)
		}
	}
	d, err := newFromFD(fds[0], "sp0", 1500)
	if err != nil {
		unix.Close(fds[1])
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Close()
		unix.Close(fds[1])
	})
	return d, fds[1]
}

// testFrame is frame i of a test: its index, then a pattern.
func testFrame(i, size int) []byte {
	f := make([]byte, size)
	binary.BigEndian.PutUint32(f, uint32(i))
	for j := 4; j < size; j++ {
		f[j] = byte(i * j)
	}
	return f
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func peerWrite(tb testing.TB, fd int, frame []byte) {
	tb.Helper()
	if _, err := unix.Write(fd, frame); err != nil {
		tb.Fatalf("peer write: %v", err)
	}
}

func TestFDReadBatches(t *testing.T) {
	const off = 8
	tests := []struct {
		name     string
		queued   int // frames queued before the first Read
		bufs     int // len(bufs)
		bufSize  int
		frameLen int
		want     []int // frames each Read returns
		wantLen  int   // the size of each frame
	}{
		{name: "one", queued: 1, bufs: 8, bufSize: 1600, frameLen: 1514, want: []int{1}, wantLen: 1514},
		{name: "all queued", queued: 10, bufs: DefaultBatchSize, bufSize: 1600, frameLen: 1514, want: []int{10}, wantLen: 1514},
		{name: "len(bufs) caps", queued: 10, bufs: 4, bufSize: 1600, frameLen: 60, want: []int{4, 4, 2}, wantLen: 60},
		{name: "BatchSize caps", queued: DefaultBatchSize + 6, bufs: 2 * DefaultBatchSize, bufSize: 200, frameLen: 60, want: []int{DefaultBatchSize, 6}, wantLen: 60},
		{name: "truncated", queued: 2, bufs: 4, bufSize: off + 20, frameLen: 60, want: []int{2}, wantLen: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, peer := socketpairDevice(t)
			for i := range tt.queued {
				peerWrite(t, peer, testFrame(i, tt.frameLen))
			}
			bufs, sizes := makeBufs(tt.bufs, tt.bufSize)
			next := 0
			for call, want := range tt.want {
				clear(sizes)
				n, err := d.Read(bufs, sizes, off)
				if err != nil || n != want {
					t.Fatalf("Read %d = %d, %v; want %d, nil", call, n, err, want)
				}
				for i := range n {
					wantFrame := testFrame(next, tt.frameLen)[:tt.wantLen]
					if got := bufs[i][off : off+sizes[i]]; !bytes.Equal(got, wantFrame) {
						t.Fatalf("Read %d frame %d = %x, want %x", call, i, got, wantFrame)
					}
					next++
				}
			}
		})
	}
}

func TestFDReadBlocksUntilFrame(t *testing.T) {
	d, peer := socketpairDevice(t)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	bufs, sizes := makeBufs(4, 2048)
	go func() {
		n, err := d.Read(bufs, sizes, 0)
		done <- result{n, err}
	}()
	peerWrite(t, peer, testFrame(7, 100))
	select {
	case r := <-done:
		if r.err != nil || r.n != 1 || sizes[0] != 100 {
			t.Fatalf("Read = %d, %v (size %d); want 1, nil (size 100)", r.n, r.err, sizes[0])
		}
	case <-time.After(wait):
		t.Fatal("Read did not return after a frame arrived")
	}
}

func TestFDCloseUnblocksRead(t *testing.T) {
	d, _ := socketpairDevice(t)
	done := make(chan error, 1)
	go func() {
		bufs, sizes := makeBufs(4, 2048)
		_, err := d.Read(bufs, sizes, 0)
		done <- err
	}()
	if err := d.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Read = %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not unblock Read")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	bufs, sizes := makeBufs(1, 100)
	if _, err := d.Read(bufs, sizes, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := d.Write(bufs, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}

// An error after some frames (here the peer going away) must not lose
// them: Read returns the frames, and the error on the next call.
func TestFDReadErrorAfterFrames(t *testing.T) {
	d, peer := socketpairDevice(t)
	peerWrite(t, peer, testFrame(0, 60))
	peerWrite(t, peer, testFrame(1, 60))
	unix.Shutdown(peer, unix.SHUT_WR)
	bufs, sizes := makeBufs(8, 100)
	if n, err := d.Read(bufs, sizes, 0); n != 2 || err != nil {
		t.Fatalf("first Read = %d, %v; want 2, nil", n, err)
	}
	if n, err := d.Read(bufs, sizes, 0); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("second Read = %d, %v; want 0, EOF", n, err)
	}
}

// A Write longer than the socket buffer parks in the poller until the
// peer makes room, and every frame arrives whole and in order.
func TestFDWriteParksWhenFull(t *testing.T) {
	d, peer := socketpairDevice(t)
	const frames, size = 1000, 1400
	bufs := make([][]byte, frames)
	for i := range bufs {
		bufs[i] = append(make([]byte, 4), testFrame(i, size)...)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2*size)
		for i := range frames {
			n, err := unix.Read(peer, buf)
			if err != nil {
				done <- err
				return
			}
			if !bytes.Equal(buf[:n], testFrame(i, size)) {
				done <- fmt.Errorf("frame %d: got %d bytes starting %x", i, n, buf[:min(n, 8)])
				return
			}
		}
		done <- nil
	}()
	if n, err := d.Write(bufs, 4); n != frames || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, frames)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("peer did not receive every frame")
	}
}

// A frame the kernel rejects is skipped; the others still go.
func TestFDWriteSkipsRejected(t *testing.T) {
	d, peer := socketpairDevice(t)
	huge := make([]byte, 8<<20) // larger than any socket buffer: EMSGSIZE
	bufs := [][]byte{testFrame(0, 60), huge, testFrame(2, 60)}
	n, err := d.Write(bufs, 0)
	if n != 2 || !errors.Is(err, unix.EMSGSIZE) {
		t.Fatalf("Write = %d, %v; want 2, EMSGSIZE", n, err)
	}
	buf := make([]byte, 100)
	for _, want := range []int{0, 2} {
		m, err := unix.Read(peer, buf)
		if err != nil || !bytes.Equal(buf[:m], testFrame(want, 60)) {
			t.Fatalf("peer read %x, %v; want frame %d", buf[:m], err, want)
		}
	}
}

// Concurrent Writes never interleave within a frame, and each writer's
// frames keep their order.
func TestFDConcurrentWrites(t *testing.T) {
	d, peer := socketpairDevice(t)
	const writers, batches, batch, size = 4, 50, 8, 300
	done := make(chan error, 1)
	go func() {
		next := make([]int, writers)
		buf := make([]byte, 2*size)
		for range writers * batches * batch {
			n, err := unix.Read(peer, buf)
			if err != nil {
				done <- err
				return
			}
			w, seq := int(buf[0]), int(binary.BigEndian.Uint32(buf[1:]))
			if n != size || w >= writers || seq != next[w] || !bytes.Equal(buf[5:n], bytes.Repeat([]byte{byte(w)}, size-5)) {
				done <- fmt.Errorf("bad frame: %d bytes, writer %d, seq %d (want %d)", n, w, seq, next[min(w, writers-1)])
				return
			}
			next[w]++
		}
		done <- nil
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			bufs := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = bytes.Repeat([]byte{byte(w)}, size)
			}
			for b := range batches {
				for i := range bufs {
					binary.BigEndian.PutUint32(bufs[i][1:], uint32(b*batch+i))
				}
				if n, err := d.Write(bufs, 0); n != batch || err != nil {
					t.Errorf("writer %d: Write = %d, %v", w, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("peer did not receive every frame")
	}
}

func TestFDAllocs(t *testing.T) {
	d, peer := socketpairDevice(t)
	const batch, runs, size = 8, 100, 1400
	out := make([][]byte, batch)
	for i := range out {
		out[i] = testFrame(i, size)
	}
	in, sizes := makeBufs(DefaultBatchSize, 2048)
	peerBuf := make([]byte, 2048)

	if allocs := testing.AllocsPerRun(runs, func() {
		if n, err := d.Write(out, 0); n != batch || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for range batch {
			if _, err := unix.Read(peer, peerBuf); err != nil {
				t.Fatal(err)
			}
		}
	}); allocs != 0 {
		t.Errorf("Write: %v allocs per call, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(runs, func() {
		for i := range batch {
			if _, err := unix.Write(peer, out[i]); err != nil {
				t.Fatal(err)
			}
		}
		for got := 0; got < batch; {
			n, err := d.Read(in, sizes, 8)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}); allocs != 0 {
		t.Errorf("Read: %v allocs per call, want 0", allocs)
	}
}

// BenchmarkReadWrite moves full batches of 1450-byte frames from one
// device to another over a socketpair: the cost of the fd-level code and
// the syscalls, without the TAP driver.
func BenchmarkReadWrite(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	src, err := newFromFD(fds[0], "spa", 1450)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := newFromFD(fds[1], "spb", 1450)
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()

	bs := src.BatchSize()
	out := make([][]byte, bs)
	for i := range out {
		out[i] = testFrame(i, 1464)
	}
	in, sizes := makeBufs(bs, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(bs * 1464))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			if _, err := src.Write(out, 0); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	b.ResetTimer()
	for got := 0; got < b.N*bs; {
		n, err := dst.Read(in, sizes, 8)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	b.StopTimer()
	<-done
	b.ReportMetric(float64(b.N*bs)/b.Elapsed().Seconds(), "pkts/s")
}
