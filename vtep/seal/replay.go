package seal

// This file holds the replay window: a sliding bitmap of the counters
// accepted under one key, in the shape of RFC 6479 (a ring of 64-bit words
// that is moved forward a word at a time, so advancing never shifts bits),
// as wireguard-go's replay package does it.

// Window sizes: a ring of 64 words of 64 bits. One word is always being
// cleared ahead, so the window covers 63*64 = 4032 counters below the
// highest seen: twice the 2048 asked for, to absorb the reordering of a
// datagram batch spread over several receive sockets.
const (
	windowWords = 64
	wordBits    = 64
	// WindowSize is how far below the highest counter accepted a counter
	// may be and still be accepted once.
	WindowSize = (windowWords - 1) * wordBits
)

// Window remembers which counters were accepted. The zero Window has seen
// nothing. It is not safe for concurrent use.
type Window struct {
	top  uint64 // the highest counter marked
	any  bool   // whether any counter was marked
	ring [windowWords]uint64
}

// Check reports whether counter c may be accepted: it is above the
// window, or inside it and not yet marked. It changes nothing.
func (w *Window) Check(c uint64) bool {
	if !w.any || c > w.top {
		return true
	}
	if w.top-c >= WindowSize {
		return false // too old
	}
	return w.ring[(c/wordBits)%windowWords]&(1<<(c%wordBits)) == 0
}

// Mark accepts counter c: it reports false (and changes nothing) if Check
// would; otherwise it moves the window up to c if c is above it and marks c.
func (w *Window) Mark(c uint64) bool {
	if !w.Check(c) {
		return false
	}
	if !w.any || c > w.top {
		word := c / wordBits
		cur := w.top / wordBits
		if !w.any {
			cur = word
			w.ring = [windowWords]uint64{}
		}
		// Clear the words between the old top and the new one, at most
		// the whole ring.
		for i, n := cur+1, min(word-cur, windowWords); n > 0; i, n = i+1, n-1 {
			w.ring[i%windowWords] = 0
		}
		w.top, w.any = c, true
	}
	w.ring[(c/wordBits)%windowWords] |= 1 << (c % wordBits)
	return true
}
