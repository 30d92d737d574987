package fdb

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestTable(ageing time.Duration) (*Table, *fakeClock, *[]Event) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	var evs []Event
	t := New(Config{Ageing: ageing, Now: clk.Now, OnChange: func(e Event) { evs = append(evs, e) }})
	return t, clk, &evs
}

var (
	macA  = MAC{0x02, 0, 0, 0, 0, 0xa}
	macB  = MAC{0x02, 0, 0, 0, 0, 0xb}
	vtep1 = netip.MustParseAddrPort("192.0.2.1:4789")
	vtep2 = netip.MustParseAddrPort("192.0.2.2:4789")
)

func TestLearnLookup(t *testing.T) {
	tests := []struct {
		name    string
		steps   []func(*Table, int64) bool
		key     Key
		want    Location
		wantOK  bool
		changes []bool
	}{
		{
			name:   "unknown",
			key:    Key{42, macA},
			wantOK: false,
		},
		{
			name: "learn local",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool { return tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, now) },
			},
			key: Key{42, macA}, want: Location{Port: 1}, wantOK: true, changes: []bool{true},
		},
		{
			name: "same VNI other MAC",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool { return tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, now) },
			},
			key: Key{42, macB}, wantOK: false, changes: []bool{true},
		},
		{
			name: "VNIs are separate",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool { return tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, now) },
			},
			key: Key{43, macA}, wantOK: false, changes: []bool{true},
		},
		{
			name: "relearn same place is no change",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep1}, OriginLearned, now)
				},
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep1}, OriginLearned, now)
				},
			},
			key: Key{42, macA}, want: Location{VTEP: vtep1}, wantOK: true, changes: []bool{true, false},
		},
		{
			name: "move between VTEPs",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep1}, OriginLearned, now)
				},
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep2}, OriginLearned, now)
				},
			},
			key: Key{42, macA}, want: Location{VTEP: vtep2}, wantOK: true, changes: []bool{true, true},
		},
		{
			name: "static wins over learning",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool {
					tb.Set(Entry{Key: Key{42, macA}, Location: Location{VTEP: vtep1}, Origin: OriginStatic})
					return true
				},
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep2}, OriginLearned, now)
				},
				func(tb *Table, now int64) bool { return tb.Learn(Key{42, macA}, Location{Port: 3}, OriginLocal, now) },
			},
			key: Key{42, macA}, want: Location{VTEP: vtep1}, wantOK: true, changes: []bool{true, false, false},
		},
		{
			name: "gossip beats data-plane learning, local beats gossip",
			steps: []func(*Table, int64) bool{
				func(tb *Table, now int64) bool {
					tb.Set(Entry{Key: Key{42, macA}, Location: Location{VTEP: vtep1}, Origin: OriginGossip, Node: "n1", Seq: 7})
					return true
				},
				func(tb *Table, now int64) bool {
					return tb.Learn(Key{42, macA}, Location{VTEP: vtep2}, OriginLearned, now)
				},
				func(tb *Table, now int64) bool { return tb.Learn(Key{42, macA}, Location{Port: 2}, OriginLocal, now) },
			},
			key: Key{42, macA}, want: Location{Port: 2}, wantOK: true, changes: []bool{true, false, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, clk, _ := newTestTable(time.Minute)
			for i, step := range tt.steps {
				got := step(tb, clk.Now().UnixNano())
				if got != tt.changes[i] {
					t.Errorf("step %d changed = %v, want %v", i, got, tt.changes[i])
				}
			}
			loc, ok := tb.Lookup(tt.key)
			if ok != tt.wantOK || loc != tt.want {
				t.Errorf("Lookup(%v) = %v, %v; want %v, %v", tt.key, loc, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestMoveBumpsSeq(t *testing.T) {
	tb, clk, _ := newTestTable(time.Minute)
	k := Key{42, macA}
	tb.Set(Entry{Key: k, Location: Location{VTEP: vtep1}, Origin: OriginGossip, Node: "n1", Seq: 7})
	tb.Learn(k, Location{Port: 1}, OriginLocal, clk.Now().UnixNano())
	e, _ := tb.Get(k)
	if e.Seq != 8 || e.Origin != OriginLocal || e.Node != "" {
		t.Errorf("after move: %+v, want seq 8 origin local", e)
	}
}

func TestAgeing(t *testing.T) {
	tb, clk, evs := newTestTable(300 * time.Second)
	ka, kb, ks := Key{42, macA}, Key{42, macB}, Key{42, MAC{2, 0, 0, 0, 0, 0x5}}
	tb.Learn(ka, Location{Port: 1}, OriginLocal, clk.Now().UnixNano())
	tb.Learn(kb, Location{VTEP: vtep1}, OriginLearned, clk.Now().UnixNano())
	tb.Set(Entry{Key: ks, Location: Location{VTEP: vtep2}, Origin: OriginStatic})
	kp := Key{42, MAC{2, 0, 0, 0, 0, 0x6}}
	tb.Set(Entry{Key: kp, Location: Location{Port: 2}, Origin: OriginLocal, Pinned: true})

	clk.Advance(200 * time.Second)
	tb.Learn(ka, Location{Port: 1}, OriginLocal, clk.Now().UnixNano()) // refresh A only
	if gone := tb.Expire(); len(gone) != 0 {
		t.Fatalf("expired too early: %v", gone)
	}
	clk.Advance(101 * time.Second)
	gone := tb.Expire()
	if len(gone) != 1 || gone[0].Key != kb {
		t.Fatalf("Expire at 301s = %v, want only %v", gone, kb)
	}
	if _, ok := tb.Lookup(kb); ok {
		t.Error("expired entry still found")
	}
	clk.Advance(300 * time.Second)
	gone = tb.Expire()
	if len(gone) != 1 || gone[0].Key != ka {
		t.Fatalf("Expire at 601s = %v, want only %v", gone, ka)
	}
	if _, ok := tb.Lookup(ks); !ok {
		t.Error("static entry aged out")
	}
	if _, ok := tb.Lookup(kp); !ok {
		t.Error("pinned entry aged out")
	}
	var removed int
	for _, e := range *evs {
		if e.Type == Removed {
			removed++
		}
	}
	if removed != 2 {
		t.Errorf("removed events = %d, want 2", removed)
	}
}

func TestIPBindings(t *testing.T) {
	tb, clk, _ := newTestTable(time.Minute)
	ip := netip.MustParseAddr("10.0.0.5")
	tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, clk.Now().UnixNano())
	tb.Learn(Key{42, macB}, Location{Port: 2}, OriginLocal, clk.Now().UnixNano())
	if !tb.BindIP(Key{42, macA}, ip) {
		t.Fatal("first bind reported no change")
	}
	if tb.BindIP(Key{42, macA}, ip) {
		t.Fatal("same bind reported a change")
	}
	if m, ok := tb.LookupIP(IPKey{42, ip}); !ok || m != macA {
		t.Fatalf("LookupIP = %v %v", m, ok)
	}
	if _, ok := tb.LookupIP(IPKey{43, ip}); ok {
		t.Fatal("IP leaked across VNIs")
	}
	// The address moves to another MAC (a container re-created).
	tb.BindIP(Key{42, macB}, ip)
	a, _ := tb.Get(Key{42, macA})
	b, _ := tb.Get(Key{42, macB})
	if len(a.IPs) != 0 || len(b.IPs) != 1 || b.IPs[0] != ip {
		t.Fatalf("after move: A.IPs=%v B.IPs=%v", a.IPs, b.IPs)
	}
	// Deleting A must not drop B's binding.
	tb.Delete(Key{42, macA})
	if m, ok := tb.LookupIP(IPKey{42, ip}); !ok || m != macB {
		t.Fatalf("LookupIP after deleting old owner = %v %v", m, ok)
	}
	tb.Delete(Key{42, macB})
	if _, ok := tb.LookupIP(IPKey{42, ip}); ok {
		t.Fatal("binding survived its MAC")
	}
}

func TestIPMoveNotified(t *testing.T) {
	var moves []string
	tb := New(Config{OnIPMove: func(k IPKey, from, to MAC) { moves = append(moves, k.IP.String()+" "+from.String()+">"+to.String()) }})
	ip := netip.MustParseAddr("10.0.0.5")
	tb.Set(Entry{Key: Key{42, macA}, Location: Location{Port: 1}, Origin: OriginLocal, IPs: []netip.Addr{ip}})
	tb.BindIP(Key{42, macA}, ip) // same: no move
	tb.Set(Entry{Key: Key{42, macB}, Location: Location{VTEP: vtep1}, Origin: OriginGossip, IPs: []netip.Addr{ip}})
	tb.BindIP(Key{42, macA}, ip) // back by learning
	want := []string{"10.0.0.5 " + macA.String() + ">" + macB.String(), "10.0.0.5 " + macB.String() + ">" + macA.String()}
	if len(moves) != 2 || moves[0] != want[0] || moves[1] != want[1] {
		t.Errorf("moves %q, want %q", moves, want)
	}
	if e, _ := tb.Get(Key{42, macB}); len(e.IPs) != 0 {
		t.Errorf("old owner keeps %v", e.IPs)
	}
}

// TestIPMoveAfterRemoval: an address that comes back on a new MAC after its
// old MAC entry went (a container detached and re-created) is a move while
// the old binding is remembered, and not after MoveMemory.
func TestIPMoveAfterRemoval(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	var moves int
	tb := New(Config{Ageing: time.Hour, Now: clk.Now, MoveMemory: time.Minute, OnIPMove: func(IPKey, MAC, MAC) { moves++ }})
	ip := netip.MustParseAddr("10.0.0.5")
	tb.Set(Entry{Key: Key{42, macA}, Location: Location{Port: 1}, Origin: OriginLocal, IPs: []netip.Addr{ip}})
	tb.Delete(Key{42, macA})
	tb.Set(Entry{Key: Key{42, macB}, Location: Location{Port: 2}, Origin: OriginLocal, IPs: []netip.Addr{ip}})
	if moves != 1 {
		t.Fatalf("re-created within MoveMemory: %d moves, want 1", moves)
	}
	tb.Delete(Key{42, macB})
	clk.Advance(2 * time.Minute)
	tb.Expire()
	tb.BindIP(Key{42, macA}, ip)
	if moves != 1 {
		t.Fatalf("re-created after MoveMemory: %d moves, want still 1", moves)
	}
	// The same MAC coming back is no move.
	tb.Delete(Key{42, macA})
	tb.Set(Entry{Key: Key{42, macA}, Location: Location{Port: 1}, Origin: OriginLocal, IPs: []netip.Addr{ip}})
	if moves != 1 {
		t.Fatalf("same MAC back: %d moves, want still 1", moves)
	}
}

func TestDeleteFuncByNode(t *testing.T) {
	tb, _, _ := newTestTable(time.Minute)
	for i := range 10 {
		node := "n1"
		if i%2 == 1 {
			node = "n2"
		}
		tb.Set(Entry{Key: Key{42, MAC{2, 0, 0, 0, 0, byte(i)}}, Location: Location{VTEP: vtep1}, Origin: OriginGossip, Node: node})
	}
	gone := tb.DeleteFunc(func(e Entry) bool { return e.Node == "n1" })
	if len(gone) != 5 || tb.Len() != 5 {
		t.Fatalf("removed %d, left %d; want 5 and 5", len(gone), tb.Len())
	}
}

func TestHotPathAllocs(t *testing.T) {
	tb, clk, _ := newTestTable(time.Minute)
	k := Key{42, macA}
	tb.Learn(k, Location{VTEP: vtep1}, OriginLearned, clk.Now().UnixNano())
	now := clk.Now().UnixNano()
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := tb.Lookup(k); !ok {
			t.Fatal("lost entry")
		}
	}); n != 0 {
		t.Errorf("Lookup allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		now += int64(2 * time.Second)
		tb.Learn(k, Location{VTEP: vtep1}, OriginLearned, now)
	}); n != 0 {
		t.Errorf("Learn (refresh) allocs = %v, want 0", n)
	}
}

func TestConcurrentLearnLookup(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	var mu sync.Mutex
	added := 0
	tb := New(Config{Ageing: time.Minute, Now: clk.Now, OnChange: func(e Event) {
		mu.Lock()
		added++
		mu.Unlock()
	}})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := Key{42, MAC{2, 0, 0, byte(g), byte(i >> 8), byte(i)}}
				tb.Learn(k, Location{Port: g + 1}, OriginLocal, clk.Now().UnixNano())
				if _, ok := tb.Lookup(k); !ok {
					t.Errorf("lost %v", k)
					return
				}
			}
		}()
	}
	wg.Wait()
	if tb.Len() != 8000 || added != 8000 {
		t.Errorf("Len = %d, events = %d; want 8000 each", tb.Len(), added)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := New(Config{})
	for i := range 100_000 {
		tb.Learn(Key{42, MAC{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}}, Location{VTEP: vtep1}, OriginLearned, 1)
	}
	k := Key{42, MAC{2, 0, 0, 0, 0x10, 0x10}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tb.Lookup(k)
		}
	})
}

func BenchmarkLearnRefresh(b *testing.B) {
	tb := New(Config{})
	k := Key{42, macA}
	tb.Learn(k, Location{Port: 1}, OriginLocal, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tb.Learn(k, Location{Port: 1}, OriginLocal, int64(i))
	}
}

// TestLearningLimits: a port flooding source MACs stops at MaxPerPort and
// cannot evict another port's entries; a VNI stops at MaxPerVNI; entries
// that go make room again; control-plane entries are not limited.
func TestLearningLimits(t *testing.T) {
	tb := New(Config{MaxPerPort: 10, MaxPerVNI: 15})
	mac := func(i int) MAC { return MAC{2, 0, 0, 0, byte(i >> 8), byte(i)} }
	tb.Learn(Key{42, mac(1000)}, Location{Port: 2}, OriginLocal, 1) // a neighbour
	for i := range 100 {
		tb.Learn(Key{42, mac(i)}, Location{Port: 1}, OriginLocal, 1)
	}
	if got := tb.Len(); got != 11 {
		t.Fatalf("entries after a flood from port 1: %d, want 10 + the neighbour", got)
	}
	if tb.Refused() != 90 {
		t.Errorf("refused %d, want 90", tb.Refused())
	}
	if _, ok := tb.Lookup(Key{42, mac(1000)}); !ok {
		t.Fatal("the flood evicted the neighbour")
	}
	// Remote learning counts towards the VNI: 15 in all.
	for i := range 10 {
		tb.Learn(Key{42, mac(2000 + i)}, Location{VTEP: vtep1}, OriginLearned, 1)
	}
	if got := tb.Len(); got != 15 {
		t.Fatalf("entries at the VNI limit: %d, want 15", got)
	}
	// Another VNI is not affected; the control plane is not limited.
	if !tb.Learn(Key{43, mac(1)}, Location{Port: 3}, OriginLocal, 1) {
		t.Error("VNI 43 refused")
	}
	tb.Set(Entry{Key: Key{42, mac(3000)}, Location: Location{VTEP: vtep2}, Origin: OriginGossip})
	if _, ok := tb.Lookup(Key{42, mac(3000)}); !ok {
		t.Error("a gossip entry was limited")
	}
	// Deleting makes room.
	tb.DeleteFunc(func(e Entry) bool { return e.Port == 1 })
	if !tb.Learn(Key{42, mac(500)}, Location{Port: 1}, OriginLocal, 1) {
		t.Error("no room after the port's entries went")
	}
}

// TestSetLimits: limits changed at run time apply to the next MAC learned,
// lowering one evicts nothing, and changing them while the data plane
// learns is safe (run with -race).
func TestSetLimits(t *testing.T) {
	tb := New(Config{MaxPerPort: 2})
	mac := func(i int) MAC { return MAC{2, 0, 0, 0, byte(i >> 8), byte(i)} }
	for i := range 4 {
		tb.Learn(Key{42, mac(i)}, Location{Port: 1}, OriginLocal, 1)
	}
	if got := tb.Len(); got != 2 {
		t.Fatalf("entries at the limit 2: %d", got)
	}
	tb.SetLimits(3, 0)
	if !tb.Learn(Key{42, mac(10)}, Location{Port: 1}, OriginLocal, 1) {
		t.Error("raised limit: the third MAC was refused")
	}
	if tb.Learn(Key{42, mac(11)}, Location{Port: 1}, OriginLocal, 1) {
		t.Error("the fourth MAC was learned past the raised limit 3")
	}
	tb.SetLimits(1, 0)
	if got := tb.Len(); got != 3 {
		t.Errorf("lowering the limit evicted: %d entries, want 3", got)
	}
	tb.SetLimits(0, 1) // no port limit; one per VNI
	if tb.Learn(Key{42, mac(12)}, Location{Port: 2}, OriginLocal, 1) {
		t.Error("learned past the VNI limit")
	}
	if !tb.Learn(Key{43, mac(12)}, Location{Port: 2}, OriginLocal, 1) {
		t.Error("VNI 43 refused under its own limit")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			tb.Learn(Key{44, mac(i)}, Location{Port: 5}, OriginLocal, 1)
		}
	})
	for i := range 100 {
		tb.SetLimits(i, 1000-i)
	}
	wg.Wait()
}

// TestLookupIPVouched: an address is reported only while its MAC's entry
// was seen locally or installed by the control plane.
func TestLookupIPVouched(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.5")
	tests := []struct {
		name   string
		origin Origin // of macA's entry; 0: no entry
		want   bool
	}{
		{"local", OriginLocal, true},
		{"static", OriginStatic, true},
		{"gossip", OriginGossip, true},
		{"learned from the wire", OriginLearned, false},
		{"no entry for the MAC", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(Config{})
			if tt.origin != 0 {
				loc := Location{VTEP: vtep1}
				if tt.origin == OriginLocal {
					loc = Location{Port: 1}
				}
				tb.Set(Entry{Key: Key{42, macA}, Location: loc, Origin: tt.origin})
			}
			tb.BindIP(Key{42, macA}, ip)
			if m, ok := tb.LookupIP(IPKey{42, ip}); !ok || m != macA {
				t.Fatalf("LookupIP = %v %v, want %v: the binding itself is known", m, ok, macA)
			}
			m, ok := tb.LookupIPVouched(IPKey{42, ip})
			if ok != tt.want || (ok && m != macA) || (!ok && m != (MAC{})) {
				t.Errorf("LookupIPVouched = %v %v, want %v", m, ok, tt.want)
			}
			if _, ok := tb.LookupIPVouched(IPKey{43, ip}); ok {
				t.Error("vouched across VNIs")
			}
		})
	}
	// A learned entry that the control plane takes over becomes vouched for.
	tb := New(Config{})
	tb.Learn(Key{42, macA}, Location{VTEP: vtep1}, OriginLearned, 1)
	tb.BindIP(Key{42, macA}, ip)
	if _, ok := tb.LookupIPVouched(IPKey{42, ip}); ok {
		t.Fatal("learned binding vouched for")
	}
	tb.Set(Entry{Key: Key{42, macA}, Location: Location{VTEP: vtep1}, Origin: OriginGossip, IPs: []netip.Addr{ip}})
	if m, ok := tb.LookupIPVouched(IPKey{42, ip}); !ok || m != macA {
		t.Errorf("after gossip: %v %v, want %v", m, ok, macA)
	}
	if n := testing.AllocsPerRun(1000, func() { tb.LookupIPVouched(IPKey{42, ip}) }); n != 0 {
		t.Errorf("LookupIPVouched allocs = %v, want 0", n)
	}
}
