package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/ovlsw/ovlsw/fdb"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // a substring of the error; "" for none
	}{
		{name: "plain", in: "web"},
		{name: "docker style", in: "nginx_web_2"},
		{name: "dots", in: "web.frontend"},
		{name: "digits and dashes", in: "a-1-b"},
		{name: "63-byte label", in: strings.Repeat("a", 63)},
		{name: "empty", in: "", wantErr: "empty name"},
		{name: "64-byte label", in: strings.Repeat("a", 64), wantErr: "more than 63"},
		{name: "too long", in: strings.Repeat("abcdefg.", 32) + "x", wantErr: "more than 253"},
		{name: "tasks prefix", in: "tasks.web", wantErr: "tasks."},
		{name: "tasks prefix upper case", in: "TASKS.web", wantErr: "tasks."},
		{name: "empty label", in: "a..b", wantErr: "empty label"},
		{name: "leading dot", in: ".a", wantErr: "empty label"},
		{name: "trailing dot", in: "a.", wantErr: "empty label"},
		{name: "space", in: "a b", wantErr: "contains ' '"},
		{name: "slash", in: "a/b", wantErr: "contains '/'"},
		{name: "non-ASCII", in: "café", wantErr: "contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckName(%q) = %v, want nil", tt.in, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckName(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestTableHolderRecordsDNSAddr(t *testing.T) {
	tb := testTable()
	tests := []struct {
		name  string
		vni   uint32
		in    string
		owner fdb.MAC
		ok    bool
	}{
		{name: "name", vni: vniA, in: "web", owner: macWeb, ok: true},
		{name: "alias case", vni: vniA, in: "FRONT_END", owner: macWeb, ok: true},
		{name: "trailing dot", vni: vniA, in: "db_1.", owner: macDB, ok: true},
		{name: "service is no holder", vni: vniA, in: "websvc"},
		{name: "other network", vni: vniB, in: "web", owner: macOther, ok: true},
		{name: "unknown network", vni: 999, in: "web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner, ok := tb.Holder(tt.vni, tt.in)
			if owner != tt.owner || ok != tt.ok {
				t.Errorf("Holder(%d, %q) = %v, %v; want %v, %v", tt.vni, tt.in, owner, ok, tt.owner, tt.ok)
			}
		})
	}

	recs := tb.Records(vniA)
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	if want := []string{"api", "api_2", "db_1", "many", "web", "web2", "web3"}; !slices.Equal(names, want) {
		t.Errorf("Records names (-want +got):\n- %v\n+ %v", want, names)
	}
	if recs[4].Owner != macWeb || !slices.Equal(recs[4].Aliases, []string{"www", "Front_End"}) {
		t.Errorf("web record %+v", recs[4])
	}
	recs[4].IPs[0] = netip.MustParseAddr("1.1.1.1") // a copy: the table is unchanged
	if got := tb.Records(vniA)[4].IPs[0]; got != netip.MustParseAddr("10.0.0.10") {
		t.Errorf("Records returned the table's own slice: now %v", got)
	}

	for _, c := range []struct {
		vni  uint32
		ip   string
		want bool
	}{{vniA, "10.0.0.2", true}, {vniA, "fd00::2", true}, {vniA, "::ffff:10.0.0.2", true}, {vniA, "10.1.0.2", false},
		{vniB, "10.1.0.2", true}, {vniB, "fd00::2", false}, {999, "10.0.0.2", false}} {
		if got := tb.IsDNSAddr(c.vni, netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("IsDNSAddr(%d, %s) = %v, want %v", c.vni, c.ip, got, c.want)
		}
	}
}

// TestTableChanges checks Set replaces, Remove and RemoveNetwork forget,
// and SetNetwork without addresses turns DNS off, as Handle sees them.
func TestTableChanges(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	tb := r.cfg.Table
	ask := func(name string) (Verdict, *layers.DNS) {
		x := q{name: name, typ: layers.DNSTypeA}
		v, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
		if v != Answered {
			return v, nil
		}
		d, _ := udpAnswer(t, x, frame)
		return v, d
	}
	tb.Set(vniA, macWeb, Record{Name: "web", IPs: addrs("10.0.0.99")})
	if _, d := ask("web"); !slices.Equal(answerIPs(d), addrs("10.0.0.99")) {
		t.Errorf("after Set: %v", answerIPs(d))
	}
	if _, d := ask("www"); d.ResponseCode != layers.DNSResponseCodeRefused {
		t.Errorf("the replaced record's alias: rcode %v, want REFUSED (forwarded, no upstream)", d.ResponseCode)
	}
	if _, d := ask("tasks.websvc"); len(answerIPs(d)) != 2 {
		t.Errorf("service after web left it: %v", answerIPs(d))
	}
	tb.Remove(vniA, macWeb)
	if _, d := ask("web.mynet"); d.ResponseCode != layers.DNSResponseCodeNXDomain {
		t.Errorf("after Remove: rcode %v, want NXDOMAIN", d.ResponseCode)
	}
	if _, ok := tb.Holder(vniA, "web"); ok {
		t.Error("Holder still reports the removed name")
	}
	tb.SetNetwork(vniA, "renamed", []netip.Addr{dnsA4}, nil)
	if _, d := ask("db_1.renamed"); !slices.Equal(answerIPs(d), addrs("10.0.0.20")) {
		t.Errorf("after renaming the network, records are kept: %v", answerIPs(d))
	}
	tb.SetNetwork(vniA, "renamed", nil, nil)
	if v, _ := ask("db_1"); v != NotDNS {
		t.Errorf("with no DNS address: verdict %v, want not-dns", v)
	}
	tb.RemoveNetwork(vniA)
	if v, _ := ask("db_1"); v != NotDNS || len(tb.Records(vniA)) != 0 {
		t.Errorf("after RemoveNetwork: verdict %v, %d records", v, len(tb.Records(vniA)))
	}
}

// TestTableConcurrent runs lookups against writers (for the race detector).
func TestTableConcurrent(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	frame := q{name: "web", typ: layers.DNSTypeA}.udpFrame(t, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.cfg.Table.Set(vniA, macWeb, Record{Name: "web", IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}})
		}
	}()
	for range 2000 {
		if v, _ := handle(r, 1, vniA, frame); v != Answered {
			t.Errorf("verdict %v", v)
		}
	}
	close(stop)
	wg.Wait()
}

// TestPTRKeepsCase checks a PTR answer spells the name as the record does,
// the network's name in lower case, while lookups ignore case.
func TestPTRKeepsCase(t *testing.T) {
	r, _ := newTestResponder(t, nil)
	r.cfg.Table.Set(vniA, fdb.MAC{0x02, 0, 0, 0, 9, 9}, Record{Name: "Mixed_Case", IPs: addrs("10.0.0.77")})
	x := q{name: "77.0.0.10.in-addr.arpa", typ: layers.DNSTypePTR}
	_, frame := handle(r, 1, vniA, x.udpFrame(t, nil))
	d, _ := udpAnswer(t, x, frame)
	if len(d.Answers) != 1 || string(d.Answers[0].PTR) != "Mixed_Case.mynet" {
		t.Errorf("answers %+v, want PTR Mixed_Case.mynet", d.Answers)
	}
	y := q{name: "mixed_case", typ: layers.DNSTypeA}
	_, frame = handle(r, 1, vniA, y.udpFrame(t, nil))
	if d, _ := udpAnswer(t, y, frame); len(answerIPs(d)) != 1 {
		t.Errorf("lookup in lower case: %v", answerIPs(d))
	}
}

// TestTableGet: Get reads a record without a lock; Remove of a record
// that is not there changes nothing.
func TestTableGet(t *testing.T) {
	tab := NewTable()
	owner := fdb.MAC{2, 0, 0, 0, 0, 1}
	if _, ok := tab.Get(1, owner); ok {
		t.Fatal("a record in an empty table")
	}
	tab.SetNetwork(1, "web", nil, nil)
	tab.Set(1, owner, Record{Name: "c1"})
	if r, ok := tab.Get(1, owner); !ok || r.Name != "c1" || r.Owner != owner {
		t.Fatalf("Get = %+v, %v", r, ok)
	}
	before := tab.snap.Load()
	tab.Remove(1, fdb.MAC{2, 0, 0, 0, 0, 2})
	if tab.snap.Load() != before {
		t.Error("removing an absent record made a new snapshot")
	}
	tab.Remove(1, owner)
	if _, ok := tab.Get(1, owner); ok {
		t.Error("record still there after Remove")
	}
}
