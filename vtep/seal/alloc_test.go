package seal

import (
	"fmt"
	"testing"
)

// TestAllocs: once a key exists, sealing and opening allocate nothing.
func TestAllocs(t *testing.T) {
	for _, suite := range suites {
		_, _, tx, rx := pair(t, suite)
		b := make([]byte, 1458+Overhead)
		src := payload(1458)
		dst := make([]byte, len(src)+Overhead)
		// Warm up: derive the keys.
		_ = tx.Seal(b, at(1))
		if _, v := rx.Open(b, at(1)); v != Opened {
			t.Fatal(v)
		}
		if n := testing.AllocsPerRun(100, func() {
			if err := tx.Seal(b, at(1)); err != nil {
				t.Fatal(err)
			}
			if _, v := rx.Open(b, at(1)); v != Opened {
				t.Fatal(v)
			}
			_ = tx.SealFrom(dst, src, at(1))
		}); n != 0 {
			t.Errorf("%v: %v allocations per seal and open, want 0", suite, n)
		}
	}
}

// BenchmarkSeal seals one 1450-byte inner frame (a 1458-byte VXLAN
// datagram) in place, and a 64 KB super-frame segmented into 45 such
// datagrams.
func BenchmarkSeal(b *testing.B) {
	for _, suite := range suites {
		for _, segs := range []int{1, 45} {
			b.Run(fmt.Sprintf("%v/%s", suite, sizeName(segs)), func(b *testing.B) {
				_, _, tx, _ := pair(b, suite)
				buf := make([]byte, segs*(1458+Overhead))
				b.SetBytes(int64(segs * 1458))
				b.ReportAllocs()
				for b.Loop() {
					for i := range segs {
						d := buf[i*(1458+Overhead) : (i+1)*(1458+Overhead)]
						if err := tx.Seal(d, at(1)); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkOpen opens what BenchmarkSeal seals: each iteration opens fresh
// datagrams (sealed outside the timer in batches) so none is a replay.
func BenchmarkOpen(b *testing.B) {
	for _, suite := range suites {
		for _, segs := range []int{1, 45} {
			b.Run(fmt.Sprintf("%v/%s", suite, sizeName(segs)), func(b *testing.B) {
				_, _, tx, rx := pair(b, suite)
				const stride = 1458 + Overhead
				const ring = 4096 // datagrams sealed ahead
				pool := make([]byte, ring*stride)
				work := make([]byte, ring*stride)
				refill := func() {
					for i := range ring {
						_ = tx.Seal(pool[i*stride:(i+1)*stride], at(1))
					}
					copy(work, pool)
				}
				refill()
				b.SetBytes(int64(segs * 1458))
				b.ReportAllocs()
				next := 0
				b.ResetTimer()
				for b.Loop() {
					if next+segs > ring {
						b.StopTimer()
						refill()
						next = 0
						b.StartTimer()
					}
					for range segs {
						if _, v := rx.Open(work[next*stride:(next+1)*stride], at(1)); v != Opened {
							b.Fatal(v)
						}
						next++
					}
				}
			})
		}
	}
}

func sizeName(segs int) string {
	if segs == 1 {
		return "datagram1450"
	}
	return "superframe64K"
}
