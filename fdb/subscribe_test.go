package fdb

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// eventLog records callbacks as strings, safe for concurrent use.
type eventLog struct {
	mu  sync.Mutex
	got []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.got = append(l.got, s)
	l.mu.Unlock()
}

func (l *eventLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.got
	l.got = nil
	return out
}

func (l *eventLog) onChange(ev Event) { l.add(fmt.Sprintf("%d %v", ev.Type, ev.Entry.MAC)) }
func (l *eventLog) onMove(k IPKey, from, to MAC) {
	l.add(fmt.Sprintf("%v %v>%v", k.IP, from, to))
}

// TestSubscribe: every subscriber sees every change Config.OnChange sees,
// in the same order; a cancelled one sees nothing more; cancel is
// idempotent.
func TestSubscribe(t *testing.T) {
	var cfgLog, log1, log2 eventLog
	tb := New(Config{OnChange: cfgLog.onChange})
	cancel1 := tb.Subscribe(log1.onChange)
	cancel2 := tb.Subscribe(log2.onChange)
	ip := netip.MustParseAddr("10.0.0.5")

	tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, 1)                               // added
	tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, 2)                               // no change
	tb.Set(Entry{Key: Key{42, macB}, Location: Location{VTEP: vtep1}, Origin: OriginGossip}) // added
	tb.BindIP(Key{42, macA}, ip)                                                             // updated
	tb.Delete(Key{42, macB})                                                                 // removed
	want := []string{
		fmt.Sprintf("%d %v", Added, macA), fmt.Sprintf("%d %v", Added, macB),
		fmt.Sprintf("%d %v", Updated, macA), fmt.Sprintf("%d %v", Removed, macB),
	}
	for name, l := range map[string]*eventLog{"Config.OnChange": &cfgLog, "subscriber 1": &log1, "subscriber 2": &log2} {
		if got := l.take(); !slices.Equal(got, want) {
			t.Errorf("%s (-want +got)\n-%q\n+%q", name, want, got)
		}
	}

	cancel1()
	cancel1() // idempotent
	tb.Delete(Key{42, macA})
	if got := log1.take(); len(got) != 0 {
		t.Errorf("cancelled subscriber got %q", got)
	}
	if got, want := log2.take(), []string{fmt.Sprintf("%d %v", Removed, macA)}; !slices.Equal(got, want) {
		t.Errorf("remaining subscriber (-want +got)\n-%q\n+%q", want, got)
	}
	cancel2()
	tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, 3)
	if got := log2.take(); len(got) != 0 {
		t.Errorf("cancelled subscriber got %q", got)
	}
	if got := cfgLog.take(); len(got) != 2 {
		t.Errorf("Config.OnChange after the cancels: %q, want 2 events", got)
	}
}

// TestSubscribeIPMove: subscribers see every move Config.OnIPMove sees.
func TestSubscribeIPMove(t *testing.T) {
	var cfgLog, subLog eventLog
	tb := New(Config{OnIPMove: cfgLog.onMove})
	cancel := tb.SubscribeIPMove(subLog.onMove)
	ip := netip.MustParseAddr("10.0.0.5")
	tb.Set(Entry{Key: Key{42, macA}, Location: Location{Port: 1}, Origin: OriginLocal, IPs: []netip.Addr{ip}})
	tb.Set(Entry{Key: Key{42, macB}, Location: Location{VTEP: vtep1}, Origin: OriginGossip, IPs: []netip.Addr{ip}}) // move by Set
	tb.BindIP(Key{42, macA}, ip)                                                                                    // move by BindIP
	tb.BindIP(Key{42, macA}, ip)                                                                                    // no move
	want := []string{fmt.Sprintf("%v %v>%v", ip, macA, macB), fmt.Sprintf("%v %v>%v", ip, macB, macA)}
	if got := cfgLog.take(); !slices.Equal(got, want) {
		t.Errorf("Config.OnIPMove (-want +got)\n-%q\n+%q", want, got)
	}
	if got := subLog.take(); !slices.Equal(got, want) {
		t.Errorf("subscriber (-want +got)\n-%q\n+%q", want, got)
	}
	cancel()
	tb.BindIP(Key{42, macB}, ip)
	if got := subLog.take(); len(got) != 0 {
		t.Errorf("cancelled subscriber got %q", got)
	}
	if got := cfgLog.take(); len(got) != 1 {
		t.Errorf("Config.OnIPMove after the cancel: %q, want 1 move", got)
	}
}

// TestSubscribeFromCallback: a callback may cancel itself and subscribe
// another without deadlocking; the new one sees the next change.
func TestSubscribeFromCallback(t *testing.T) {
	tb := New(Config{})
	var later eventLog
	var cancel func()
	calls := 0
	cancel = tb.Subscribe(func(Event) {
		calls++
		cancel()
		tb.Subscribe(later.onChange)
	})
	tb.Learn(Key{42, macA}, Location{Port: 1}, OriginLocal, 1)
	tb.Learn(Key{42, macB}, Location{Port: 1}, OriginLocal, 1)
	if calls != 1 {
		t.Errorf("self-cancelling subscriber called %d times, want 1", calls)
	}
	if got := later.take(); len(got) != 1 {
		t.Errorf("subscriber added from a callback got %q, want the second change only", got)
	}
}

// TestSubscribeConcurrent: subscribing and cancelling while other
// goroutines change the table is race-free (run with -race), and a
// subscriber present throughout sees every change.
func TestSubscribeConcurrent(t *testing.T) {
	tb := New(Config{})
	var mu sync.Mutex
	seen := 0
	cancel := tb.Subscribe(func(Event) { mu.Lock(); seen++; mu.Unlock() })
	defer cancel()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				tb.Learn(Key{42, MAC{2, 0, 0, byte(g), byte(i >> 8), byte(i)}}, Location{Port: g + 1}, OriginLocal, 1)
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			c := tb.Subscribe(func(Event) {})
			c2 := tb.SubscribeIPMove(func(IPKey, MAC, MAC) {})
			c()
			c2()
		}
	})
	wg.Wait()
	if seen != 2000 {
		t.Errorf("subscriber saw %d changes, want 2000", seen)
	}
}

// TestSubscribedHotPathAllocs: with subscribers registered, Learn of a
// known entry and Lookup still allocate nothing.
func TestSubscribedHotPathAllocs(t *testing.T) {
	tb, clk, _ := newTestTable(time.Minute)
	cancel := tb.Subscribe(func(Event) {})
	defer cancel()
	cancelMove := tb.SubscribeIPMove(func(IPKey, MAC, MAC) {})
	defer cancelMove()
	k := Key{42, macA}
	tb.Learn(k, Location{VTEP: vtep1}, OriginLearned, clk.Now().UnixNano())
	now := clk.Now().UnixNano()
	if n := testing.AllocsPerRun(1000, func() {
		now += int64(2 * time.Second)
		tb.Learn(k, Location{VTEP: vtep1}, OriginLearned, now)
	}); n != 0 {
		t.Errorf("Learn (refresh) allocs = %v, want 0", n)
	}
}

// TestNamesKept: names set by the control plane are reported with the
// entry and its events, and a move learned by the data plane (another
// endpoint took the MAC) drops them with the IPs.
func TestNamesKept(t *testing.T) {
	tab := New(DefaultConfig())
	var got []*Names
	tab.Subscribe(func(ev Event) { got = append(got, ev.Entry.Names) })
	k := Key{VNI: 1, MAC: MAC{2, 0, 0, 0, 0, 1}}
	names := &Names{Name: "c1", Aliases: []string{"a"}, Service: "s"}
	tab.Set(Entry{Key: k, Location: Location{Port: 1}, Origin: OriginLocal, Names: names})
	if e, ok := tab.Get(k); !ok || e.Names != names || len(got) != 1 || got[0] != names {
		t.Fatalf("after Set: %+v, events %v", e, got)
	}
	tab.Learn(k, Location{Port: 2}, OriginLocal, time.Now().UnixNano())
	if e, ok := tab.Get(k); !ok || e.Names != nil || len(got) != 2 || got[1] != nil {
		t.Fatalf("after a move: %+v, events %v", e, got)
	}
	if !(&Names{Name: "x"}).Equal(&Names{Name: "x"}) || (&Names{Name: "x"}).Equal(nil) || !(*Names)(nil).Equal(nil) {
		t.Error("Names.Equal")
	}
}
