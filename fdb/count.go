package fdb

// numOrigins is one more than the highest Origin (Origin 0 is none).
const numOrigins = Origin(len(originNames))

// CountByOrigin returns how many entries came from each origin, indexed by
// Origin (index 0, no origin, stays zero). It takes the read lock for one
// pass over the table and allocates nothing: metrics read it at scrape
// time.
func (t *Table) CountByOrigin() [numOrigins]int {
	var n [numOrigins]int
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.macs {
		if int(e.origin) < len(n) {
			n[e.origin]++
		}
	}
	return n
}

// Origins lists every origin, in order.
func Origins() []Origin {
	out := make([]Origin, 0, numOrigins-1)
	for o := OriginLocal; o < numOrigins; o++ {
		out = append(out, o)
	}
	return out
}
