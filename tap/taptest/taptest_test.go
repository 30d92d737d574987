package taptest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/tap"
)

const wait = 5 * time.Second // how long a test waits for what must happen

func frame(i, size int) []byte {
	f := make([]byte, size)
	for j := range f {
		f[j] = byte(i + j)
	}
	return f
}

func buffers(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestReadBatches(t *testing.T) {
	const off = 8
	tests := []struct {
		name     string
		queued   int // frames injected before Read
		bufs     int // len(bufs)
		bufSize  int
		frameLen int
		want     int // frames the first Read returns
		wantLen  int // the size of each
	}{
		{name: "one", queued: 1, bufs: 4, bufSize: 100, frameLen: 60, want: 1, wantLen: 60},
		{name: "all queued", queued: 10, bufs: 64, bufSize: 100, frameLen: 60, want: 10, wantLen: 60},
		{name: "len(bufs) caps", queued: 10, bufs: 3, bufSize: 100, frameLen: 60, want: 3, wantLen: 60},
		{name: "BatchSize caps", queued: BatchSize + 6, bufs: 2 * BatchSize, bufSize: 100, frameLen: 60, want: BatchSize, wantLen: 60},
		{name: "truncated", queued: 2, bufs: 4, bufSize: off + 20, frameLen: 60, want: 2, wantLen: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New("fake0", 1500)
			defer d.Close()
			for i := range tt.queued {
				if !d.Inject(frame(i, tt.frameLen)) {
					t.Fatal("Inject on an open device returned false")
				}
			}
			bufs, sizes := buffers(tt.bufs, tt.bufSize)
			n, err := d.Read(bufs, sizes, off)
			if err != nil || n != tt.want {
				t.Fatalf("Read = %d, %v; want %d, nil", n, err, tt.want)
			}
			for i := range n {
				want := frame(i, tt.frameLen)[:tt.wantLen]
				if got := bufs[i][off : off+sizes[i]]; !bytes.Equal(got, want) {
					t.Errorf("frame %d = %x, want %x", i, got, want)
				}
			}
			if rest := len(d.In); rest != tt.queued-n {
				t.Errorf("%d frames left on In, want %d", rest, tt.queued-n)
			}
		})
	}
}

func TestReadBlocksUntilFrame(t *testing.T) {
	d := New("fake0", 1500)
	defer d.Close()
	done := make(chan error, 1)
	bufs, sizes := buffers(4, 100)
	go func() {
		n, err := d.Read(bufs, sizes, 0)
		if err == nil && n != 1 {
			err = fmt.Errorf("read %d frames, want 1", n)
		}
		done <- err
	}()
	d.In <- frame(1, 42)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Read did not return after a frame was queued")
	}
	if sizes[0] != 42 {
		t.Errorf("size = %d, want 42", sizes[0])
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	d := New("fake0", 1500)
	done := make(chan error, 1)
	go func() {
		bufs, sizes := buffers(4, 100)
		_, err := d.Read(bufs, sizes, 0)
		done <- err
	}()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, tap.ErrClosed) {
			t.Fatalf("Read after Close = %v, want tap.ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not unblock Read")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if !d.Closed() {
		t.Error("Closed() = false after Close")
	}
	if _, err := d.Write([][]byte{frame(0, 60)}, 0); !errors.Is(err, tap.ErrClosed) {
		t.Errorf("Write after Close = %v, want tap.ErrClosed", err)
	}
	if d.Inject(frame(0, 60)) {
		t.Error("Inject after Close returned true")
	}
}

func TestWriteCopies(t *testing.T) {
	d := New("fake0", 1500)
	defer d.Close()
	const off = 8
	bufs := [][]byte{append(make([]byte, off), frame(1, 60)...), append(make([]byte, off), frame(2, 70)...)}
	if n, err := d.Write(bufs, off); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v; want 2, nil", n, err)
	}
	clear(bufs[0]) // the device must have copied
	for i := 1; i <= 2; i++ {
		got := d.Expect(t, wait)
		if want := frame(i, 50+10*i); !bytes.Equal(got, want) {
			t.Errorf("frame %d = %x, want %x", i, got, want)
		}
	}
	if f, ok := d.Recv(10 * time.Millisecond); ok {
		t.Errorf("unexpected frame %x", f)
	}
}

func TestWriteFullOutDrops(t *testing.T) {
	d := New("fake0", 1500)
	defer d.Close()
	bufs := make([][]byte, QueueLen+5)
	for i := range bufs {
		bufs[i] = frame(i, 60)
	}
	if n, err := d.Write(bufs, 0); n != len(bufs) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(bufs))
	}
	if got := d.Dropped(); got != 5 {
		t.Errorf("Dropped = %d, want 5", got)
	}
	if got := len(d.Out); got != QueueLen {
		t.Errorf("len(Out) = %d, want %d", got, QueueLen)
	}
}

func TestConcurrentWrites(t *testing.T) {
	d := New("fake0", 1500)
	defer d.Close()
	const writers, frames = 4, 16 // writers*frames <= QueueLen: nothing drops
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range frames {
				if _, err := d.Write([][]byte{frame(w, 60+i)}, 0); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := len(d.Out); got != writers*frames || d.Dropped() != 0 {
		t.Errorf("%d frames on Out, %d dropped; want %d, 0", got, d.Dropped(), writers*frames)
	}
}

func TestMetadata(t *testing.T) {
	d := New("fake7", 1400)
	if d.Name() != "fake7" || d.MTU() != 1400 || d.BatchSize() != BatchSize {
		t.Errorf("Name, MTU, BatchSize = %q, %d, %d; want fake7, 1400, %d", d.Name(), d.MTU(), d.BatchSize(), BatchSize)
	}
}

func TestOffloads(t *testing.T) {
	if got := New("fake0", 1500).Offloads(); got != (tap.Offloads{}) {
		t.Errorf("New: Offloads = %+v, want none", got)
	}
	o := tap.Offloads{VnetHdr: true, CSUM: true, TSO4: true, TSO6: true}
	d := NewWithOffloads("fake1", 1500, o)
	defer d.Close()
	if got := d.Offloads(); got != o {
		t.Errorf("NewWithOffloads: Offloads = %+v, want %+v", got, o)
	}

	// Headers pass through both ways as bytes.
	const off = 4
	hdr := []byte{1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0} // NEEDS_CSUM, TCPV4, gso_size 1448
	in := append(append([]byte(nil), hdr...), frame(1, 3000)...)
	if !d.Inject(in) {
		t.Fatal("Inject failed")
	}
	bufs, sizes := buffers(BatchSize, off+tap.MaxOffloadFrame)
	n, err := d.Read(bufs, sizes, off)
	if n != 1 || err != nil {
		t.Fatalf("Read = %d, %v; want 1, nil", n, err)
	}
	if got := bufs[0][off : off+sizes[0]]; !bytes.Equal(got, in) {
		t.Errorf("Read returned %d bytes, want the %d injected, unchanged", len(got), len(in))
	}
	if _, err := d.Write([][]byte{append(make([]byte, off), in...)}, off); err != nil {
		t.Fatal(err)
	}
	if got := d.Expect(t, wait); !bytes.Equal(got, in) {
		t.Errorf("Out has %d bytes, want the %d written, unchanged", len(got), len(in))
	}
}
