package seal

import "testing"

func TestWindow(t *testing.T) {
	type step struct {
		c    uint64
		want bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, true}, {1, true}, {2, true}, {3, true}}},
		{"duplicate", []step{{0, true}, {0, false}, {5, true}, {5, false}, {0, false}}},
		{"out of order", []step{{10, true}, {7, true}, {9, true}, {8, true}, {7, false}, {11, true}, {10, false}}},
		{"old", []step{{WindowSize + 100, true}, {99, false}, {100, false}, {101, true}, {101, false}}},
		{"edge", []step{{5000, true}, {5000 - WindowSize, false}, {5000 - WindowSize + 1, true}}},
		{"far jump clears", []step{{3, true}, {1 << 40, true}, {1<<40 - 1, true}, {3, false}, {1<<40 - WindowSize + 1, true}}},
		{"word boundaries", []step{{63, true}, {64, true}, {127, true}, {128, true}, {64, false}, {65, true}}},
		{"ring wraps", []step{{0, true}, {64 * 64, true}, {64*64 + 1, true}, {64 * 64, false}, {64*64 - 1, true}, {1, false}}},
		{"start high", []step{{1 << 28, true}, {1<<28 - 1, true}, {1 << 28, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w Window
			for i, s := range tc.steps {
				if got := w.Check(s.c); got != s.want {
					t.Fatalf("step %d: Check(%d) = %v, want %v", i, s.c, got, s.want)
				}
				if got := w.Mark(s.c); got != s.want {
					t.Fatalf("step %d: Mark(%d) = %v, want %v", i, s.c, got, s.want)
				}
			}
		})
	}
}

// TestWindowAgainstModel runs pseudo-random counters near the top against a
// plain set: Mark accepts exactly the counters within the window not seen.
func TestWindowAgainstModel(t *testing.T) {
	var w Window
	seen := map[uint64]bool{}
	var top uint64
	x := uint64(12345)
	for i := range 200000 {
		x = x*6364136223846793005 + 1442695040888963407
		var c uint64
		if i%3 == 0 {
			c = top + x>>58 // ahead by 0..63
		} else {
			c = top - min(top, x>>51) // behind by up to 8191
		}
		want := !seen[c] && (len(seen) == 0 || c > top || top-c < WindowSize)
		if got := w.Mark(c); got != want {
			t.Fatalf("step %d: Mark(%d) with top %d = %v, want %v", i, c, top, got, want)
		}
		if want {
			seen[c] = true
			top = max(top, c)
		}
	}
}
