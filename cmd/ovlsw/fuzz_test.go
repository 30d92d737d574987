package main

import (
	"testing"

	"github.com/ovlsw/ovlsw/cmd/daemon"
	"github.com/ovlsw/ovlsw/vtep"
)

// FuzzCLIValues feeds arbitrary strings to the parsers of command-line
// values: --peer, --flood and a gossip key. Each accepts or returns an
// error; none may panic, and what is accepted must be usable.
func FuzzCLIValues(f *testing.F) {
	for _, s := range []string{"192.168.91.2", "192.168.91.2:4790", "[fd00::2]:4789", "host:1", "1.2.3.4:0", "",
		"flood", "drop", "arp=drop,unicast=flood,broadcast=drop", "arp=", "=drop", ",,",
		"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "c2hvcnQ=", "!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ap, err := parsePeer(s, 4789); err == nil && (!ap.IsValid() || ap.Port() == 0) {
			t.Fatalf("parsePeer(%q) = %v without an error", s, ap)
		}
		if p, err := vtep.ParseFloodPolicy(s); err == nil {
			if back, err := vtep.ParseFloodPolicy(p.String()); err != nil || back != p {
				t.Fatalf("flood policy %q does not round-trip: %v %v", s, back, err)
			}
		}
		if key, err := daemon.DecodeKey(s); err == nil && len(key) != 32 {
			t.Fatalf("DecodeKey(%q) gave %d bytes", s, len(key))
		}
	})
}
