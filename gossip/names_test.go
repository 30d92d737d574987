package gossip

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

// TestNamesTravel: a local endpoint's names reach the other nodes with its
// binding, a change of names alone is gossiped, and the withdrawal takes
// them away; a node that joins later gets them by push/pull.
func TestNamesTravel(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	k := fdb.Key{VNI: 100, MAC: fdb.MAC{2, 0, 0, 0, 9, 1}}
	set := func(names *fdb.Names) {
		a.table.Set(fdb.Entry{Key: k, Location: fdb.Location{Port: 1}, Origin: fdb.OriginLocal, Pinned: true,
			IPs: []netip.Addr{netip.MustParseAddr("10.1.9.1")}, Names: names})
	}
	namesOn := func(n *node, want *fdb.Names) func() error {
		return func() error {
			e, ok := n.table.Get(k)
			switch {
			case want == nil && ok:
				return fmt.Errorf("%s still holds %v", n.name, e.Names)
			case want == nil:
				return nil
			case !ok || e.Origin != fdb.OriginGossip:
				return fmt.Errorf("%s: no gossip entry", n.name)
			case !e.Names.Equal(want):
				return fmt.Errorf("%s holds names %+v, want %+v", n.name, e.Names, want)
			}
			return nil
		}
	}
	first := &fdb.Names{Name: "nginx_web_2", Service: "web", Aliases: []string{"www"}}
	set(first)
	waitFor(t, 10*time.Second, "names on b", namesOn(b, first))

	second := &fdb.Names{Name: "nginx_web_2", Service: "web", Aliases: []string{"www", "front"}}
	set(second)
	waitFor(t, 10*time.Second, "new aliases on b", namesOn(b, second))

	c, err := startNode(t, 2, 0, []string{a.agent.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "names on a late joiner", namesOn(c, second))

	a.table.Delete(k)
	waitFor(t, 10*time.Second, "names gone from b", namesOn(b, nil))
	waitFor(t, 10*time.Second, "names gone from c", namesOn(c, nil))
}

func TestAnnounceRejectsNames(t *testing.T) {
	n, err := startNode(t, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := fdb.MAC{2, 0, 0, 0, 0, 1}
	long := strings.Repeat("x", MaxNameLen)
	for _, names := range []*fdb.Names{
		{},
		{Name: long + "x"},
		{Name: "a", Aliases: make([]string, MaxAliases+1)},
		{Name: "a", Aliases: []string{""}},
		{Name: long, Service: long, Aliases: []string{"abc"}}, // 513 bytes together
	} {
		if err := n.agent.Announce(Binding{VNI: 1, MAC: mac, Names: names}); err == nil {
			t.Errorf("Announce with names %+v succeeded", names)
		}
	}
}
