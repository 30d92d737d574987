package daemon

// This file holds the node's name service: the table of every network's
// names, fed from the FDB (an endpoint's names travel with its binding, so
// they come and go with it on every node: attach, detach, a node's death),
// the networks' DNS addresses, and the responder that answers in the
// switch (vtep/dns). It also decides whether an endpoint may take a name:
// names are unique per network, case-insensitive.

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

// namesConfig configures the name service.
type namesConfig struct {
	// Upstreams are the resolvers outside names are forwarded to; empty
	// answers them REFUSED.
	Upstreams []netip.AddrPort
	TTL       uint32 // of the answers; 0 keeps caches from holding names
	Rate      int    // queries a second per port; 0: no limit
	Log       *slog.Logger
}

// names is the node's name service. Its table and responder are safe for
// concurrent use; mu serialises the check and the taking of a name.
type names struct {
	cfg   namesConfig
	log   *slog.Logger
	fdb   *fdb.Table
	table *dns.Table
	resp  *dns.Responder
	unsub func()

	mu sync.Mutex // held from the uniqueness check to the FDB write of a new endpoint's names
}

func newNames(cfg namesConfig, t *fdb.Table, sw *vtep.Switch) (*names, error) {
	n := &names{cfg: cfg, log: cfg.Log, fdb: t, table: dns.NewTable()}
	rc := dns.DefaultConfig()
	rc.Table, rc.Upstreams, rc.TTL, rc.Logger = n.table, cfg.Upstreams, cfg.TTL, cfg.Log
	rc.RatePerPort, rc.Burst = float64(cfg.Rate), max(cfg.Rate/5, 1)
	rc.Deliver = func(port int, frame []byte) { sw.WriteToPort(port, frame) }
	var err error
	if n.resp, err = dns.New(rc); err != nil {
		return nil, fmt.Errorf("name service: %w", err)
	}
	n.unsub = t.Subscribe(n.onFDB)
	for _, e := range t.Entries() { // any set before the subscription
		n.onFDB(fdb.Event{Type: fdb.Added, Entry: e})
	}
	sw.SetResolver(n.resp)
	return n, nil
}

// close stops the responder. The switch must be closed first, or its
// readers may still hand it queries (which it then drops).
func (n *names) close() {
	n.unsub()
	n.resp.Close()
}

// onFDB keeps the table in step with the FDB: an entry with names puts
// them in, one without (or gone) takes its MAC's out. It runs on the
// goroutine that changed the FDB, possibly the data plane's; an entry
// without names costs one snapshot read.
func (n *names) onFDB(ev fdb.Event) {
	e := ev.Entry
	if ev.Type == fdb.Removed || e.Names == nil {
		n.table.Remove(e.VNI, e.MAC)
		return
	}
	if r, ok := n.table.Get(e.VNI, e.MAC); ok && r.Name == e.Names.Name && r.Service == e.Names.Service &&
		slices.Equal(r.Aliases, e.Names.Aliases) && slices.Equal(r.IPs, e.IPs) {
		return // a refresh: nothing to rebuild
	}
	n.table.Set(e.VNI, e.MAC, dns.Record{
		Name: e.Names.Name, Aliases: e.Names.Aliases, Service: e.Names.Service, IPs: e.IPs,
	})
}

// networkChanged serves nw's names at its DNS address, or (nw the zero
// Network) stops serving old's. The switch answers ARP and ND for the
// address with the router MAC as for the gateways (route.go,
// gatewayAddrs).
func (n *names) networkChanged(old, nw gossip.Network) {
	if old.VNI != 0 && old.VNI != nw.VNI {
		n.table.RemoveNetwork(old.VNI)
	}
	if nw.Name == "" {
		return
	}
	var addrs []netip.Addr
	if a := nw.DNSAddr(); a.IsValid() {
		addrs = append(addrs, a)
	}
	var subnets []netip.Prefix
	for _, s := range nw.Subnets() {
		subnets = append(subnets, s.Prefix)
	}
	n.table.SetNetwork(nw.VNI, nw.Name, addrs, subnets)
}

// endpointNames checks the names asked for an endpoint and returns them,
// nil for none: name (defaulting to the namespace's name where it is a
// valid one), aliases and service.
func endpointNames(name, netns string, aliases []string, service string) (*fdb.Names, error) {
	explicit := name != ""
	if !explicit && !strings.ContainsRune(netns, '/') && dns.CheckName(netns) == nil {
		name = netns
	}
	if name == "" {
		if len(aliases) > 0 || service != "" {
			return nil, userErrorf("attach: aliases and a service need a name: give --name")
		}
		return nil, nil
	}
	if err := dns.CheckName(name); err != nil {
		if !explicit {
			return nil, nil // a path or an odd namespace name: no DNS name
		}
		return nil, userErrorf("attach: name %q: %v", name, err)
	}
	seen := map[string]bool{strings.ToLower(name): true}
	for _, a := range aliases {
		if err := dns.CheckName(a); err != nil {
			return nil, userErrorf("attach: alias %q: %v", a, err)
		}
		if seen[strings.ToLower(a)] {
			return nil, userErrorf("attach: %q given twice among the name and aliases", a)
		}
		seen[strings.ToLower(a)] = true
	}
	if service != "" {
		if err := dns.CheckName(service); err != nil {
			return nil, userErrorf("attach: service %q: %v", service, err)
		}
	}
	nm := &fdb.Names{Name: name, Aliases: slices.Clone(aliases), Service: service}
	if len(nm.Aliases) > gossip.MaxAliases {
		return nil, userErrorf("attach: %d aliases, at most %d", len(nm.Aliases), gossip.MaxAliases)
	}
	if len(nm.Aliases) == 0 {
		nm.Aliases = nil
	}
	total := len(name) + len(service)
	for _, a := range aliases {
		total += len(a)
	}
	if total > gossip.MaxNamesBytes {
		return nil, userErrorf("attach: names of %d bytes together, at most %d", total, gossip.MaxNamesBytes)
	}
	return nm, nil
}

// take checks that no other endpoint of network nw holds any of nm's
// names and, if none does, calls set (which writes the endpoint's FDB
// entry with them) before another attach here can check the same names.
// Names taken at the same moment on two nodes are both kept; the table
// answers for the one it orders first.
func (n *names) take(nw gossip.Network, mac fdb.MAC, nm *fdb.Names, set func()) error {
	if nm == nil {
		set()
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, name := range append([]string{nm.Name}, nm.Aliases...) {
		holder, ok := n.table.Holder(nw.VNI, name)
		if !ok || holder == mac {
			continue
		}
		who := holder.String()
		if e, ok := n.fdb.Get(fdb.Key{VNI: nw.VNI, MAC: holder}); ok {
			if len(e.IPs) > 0 {
				who += fmt.Sprintf(" (%v)", e.IPs[0])
			}
			if e.Origin == fdb.OriginGossip {
				who += " on node " + e.Node
			} else {
				who += " on this node"
			}
			if e.Names != nil && !strings.EqualFold(e.Names.Name, name) {
				who = fmt.Sprintf("%s, named %s", who, e.Names.Name)
			}
		}
		return userErrorf("attach: name %q is taken on network %s by the endpoint %s: choose another with --name or --alias", name, nw.Name, who)
	}
	set()
	return nil
}

// list returns the names of network vni.
func (n *names) list(vni uint32) []dns.Record { return n.table.Records(vni) }

// stats returns the responder's counters.
func (n *names) stats() dns.Stats { return n.resp.Stats() }

// upstreams returns where outside names go.
func (n *names) upstreams() []netip.AddrPort { return n.cfg.Upstreams }

// readResolvConf returns the nameservers of a resolv.conf file, on port 53.
func readResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // resolv.conf(5): ignored, as the C library does
		}
		out = append(out, netip.AddrPortFrom(a.WithZone(""), 53))
	}
	return out, sc.Err()
}

// ParseDNSUpstream reads one --dns-upstream value: an address, with or
// without a port (53 by default).
func ParseDNSUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, errors.New("want an IP address, IP:PORT, [IPv6]:PORT or none")
	}
	return netip.AddrPortFrom(a, 53), nil
}
