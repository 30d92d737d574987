package fdb

import (
	"net/netip"
	"testing"
)

func TestCountByOrigin(t *testing.T) {
	tb := New(DefaultConfig())
	tb.Learn(Key{VNI: 1, MAC: MAC{2, 0, 0, 0, 0, 1}}, Location{Port: 1}, OriginLocal, 1)
	tb.Learn(Key{VNI: 1, MAC: MAC{2, 0, 0, 0, 0, 2}}, Location{VTEP: netip.MustParseAddrPort("10.0.0.2:4789")}, OriginLearned, 1)
	tb.Set(Entry{Key: Key{VNI: 1, MAC: MAC{2, 0, 0, 0, 0, 3}}, Location: Location{VTEP: netip.MustParseAddrPort("10.0.0.3:4789")}, Origin: OriginGossip, Node: "b"})
	tb.Set(Entry{Key: Key{VNI: 2, MAC: MAC{2, 0, 0, 0, 0, 4}}, Location: Location{VTEP: netip.MustParseAddrPort("10.0.0.3:4789")}, Origin: OriginGossip, Node: "b"})
	got := tb.CountByOrigin()
	want := map[Origin]int{OriginLocal: 1, OriginLearned: 1, OriginGossip: 2}
	for _, o := range Origins() {
		if got[o] != want[o] {
			t.Errorf("%v: %d entries, want %d", o, got[o], want[o])
		}
	}
	if len(Origins()) != 4 {
		t.Errorf("Origins() = %v", Origins())
	}
	if n := testing.AllocsPerRun(10, func() { tb.CountByOrigin() }); n != 0 {
		t.Errorf("CountByOrigin allocates %v times", n)
	}
}
