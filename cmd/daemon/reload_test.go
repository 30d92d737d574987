package daemon

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// TestReload: what can change at run time is applied, everything else is
// named as needing a restart, and an invalid configuration changes
// nothing.
func TestReload(t *testing.T) {
	d := testDaemon(t)
	lv := new(slog.LevelVar)
	d.conf.given.LevelVar = lv
	base := d.conf.given

	next := base
	next.LogLevel = slog.LevelDebug
	next.MaxMACsPerPort, next.MaxMACsPerVNI = 1, 100
	next.FloodRate = 50
	next.Flood = "drop"
	next.Bind = netip.MustParseAddr("127.0.0.2")
	next.Peers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:4789")}
	next.Logger = slog.New(slog.DiscardHandler) // not a setting: ignored
	applied, refused, err := d.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	wantApplied := []string{"log level", "MAC limit per port", "MAC limit per VNI", "flood rate (for new ports)", "flood policy (for new networks)"}
	if !slices.Equal(applied, wantApplied) {
		t.Errorf("applied %q, want %q", applied, wantApplied)
	}
	if want := []string{"Bind", "Peers"}; !slices.Equal(refused, want) {
		t.Errorf("refused %q, want %q", refused, want)
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("log level %v, want debug", lv.Level())
	}
	mac := func(i byte) fdb.MAC { return fdb.MAC{2, 0, 0, 0, 0, i} }
	if !d.fdb.Learn(fdb.Key{VNI: 9, MAC: mac(1)}, fdb.Location{Port: 77}, fdb.OriginLocal, time.Now().UnixNano()) ||
		d.fdb.Learn(fdb.Key{VNI: 9, MAC: mac(2)}, fdb.Location{Port: 77}, fdb.OriginLocal, time.Now().UnixNano()) {
		t.Error("the MAC limit per port 1 is not in force")
	}
	if got := d.eps.floodRate.Load(); got != 50 {
		t.Errorf("flood rate for new ports %d, want 50", got)
	}
	if err := d.nets.create(gossip.Network{Name: "db", VNI: 10}); err != nil {
		t.Fatal(err)
	}
	if n, ok := d.nets.get("db"); !ok || n.Flood != "arp=drop,unicast=drop,broadcast=drop" {
		t.Errorf("network created after the reload: %+v, want flood policy drop", n)
	}
	if n, _ := d.nets.get("web"); n.Flood != "arp=flood,unicast=flood,broadcast=flood" {
		t.Errorf("network created before the reload changed its flood policy: %+v", n)
	}

	// The same again applies nothing and still refuses what differs from
	// what the node runs with.
	applied, refused, err = d.Reload(next)
	if err != nil || len(applied) != 0 || !slices.Equal(refused, []string{"Bind", "Peers"}) {
		t.Errorf("second reload: applied %q refused %q err %v", applied, refused, err)
	}

	// An invalid configuration changes nothing.
	bad := next
	bad.LogLevel, bad.FloodRate, bad.Ageing = slog.LevelError, 7, time.Millisecond
	if _, _, err := d.Reload(bad); err == nil {
		t.Fatal("ageing 1ms accepted")
	}
	if lv.Level() != slog.LevelDebug || d.eps.floodRate.Load() != 50 {
		t.Errorf("an invalid reload changed the node: level %v flood rate %d", lv.Level(), d.eps.floodRate.Load())
	}
}

// TestReloadFixedLevel: without a LevelVar the log level cannot change,
// and Reload says so.
func TestReloadFixedLevel(t *testing.T) {
	d := testDaemon(t)
	next := d.conf.given
	next.LogLevel = slog.LevelWarn
	applied, refused, err := d.Reload(next)
	if err != nil || len(applied) != 0 || !slices.Equal(refused, []string{"LogLevel"}) {
		t.Errorf("applied %q refused %q err %v, want LogLevel refused", applied, refused, err)
	}
}
