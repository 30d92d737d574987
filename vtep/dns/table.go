package dns

// This file holds the Table: every network's names, written by the control
// plane and read by the data path.
//
// Design notes: names change rarely (an endpoint comes or goes) and are read
// for every query, so the Table is copy-on-write. Writers take mu, rebuild the
// one network they change from its records into a fresh immutable network
// value and publish a new snapshot through an atomic pointer; readers load
// the pointer and index maps, taking no lock and allocating nothing. A
// rebuild costs O(records of the network), which is nothing next to the
// gossip round that brought the change.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/fdb"
	"golang.org/x/net/dns/dnsmessage"
)

// Record is one endpoint's names in one network.
type Record struct {
	// Name is the endpoint's name, unique in the network (case-insensitive).
	Name string `json:"name"`
	// Aliases are further names of the endpoint, answered like Name.
	Aliases []string `json:"aliases,omitempty"`
	// Service is the service the endpoint is a task of, "" for none.
	Service string `json:"service,omitempty"`
	// IPs are the endpoint's addresses, IPv4 and IPv6.
	IPs []netip.Addr `json:"ips"`
	// Owner is the endpoint's MAC as Records reports it. Set ignores it
	// and takes its owner argument instead.
	Owner fdb.MAC `json:"owner"`
}

// Table holds every network's names. It is safe for concurrent use; lookups
// take no lock and allocate nothing (see the design notes above).
type Table struct {
	// snap is the published state, replaced whole by writers.
	snap atomic.Pointer[snapshot]

	// mu serialises writers; they build the next snapshot from the
	// current one.
	mu sync.Mutex
}

// snapshot is an immutable view of every network.
type snapshot struct {
	nets map[uint32]*network
}

// network is one VNI's immutable state. records is the writers' source of
// truth; the other maps are derived from it by build.
type network struct {
	name   string // lower case, no trailing dot; "" when unnamed
	dns4   netip.Addr
	dns6   netip.Addr
	hasDNS bool

	subnets []netip.Prefix
	records map[fdb.MAC]Record

	// names maps a lower-case name relative to the network (an endpoint
	// name or alias, "tasks."+service, or a service) to its addresses.
	names map[string]target
	// ptr maps an endpoint address to "name.network." for PTR answers.
	ptr map[netip.Addr]*dnsmessage.Name
	// holders maps a lower-case endpoint name or alias to its owner.
	holders map[string]fdb.MAC
}

// target is what a name resolves to: a set of addresses, and whether to
// answer them in a fresh random order (a service: DNS round robin).
type target struct {
	set     *addrSet
	shuffle bool
}

// addrSet is the addresses behind a name, split by family as they are
// written into A and AAAA records.
type addrSet struct {
	v4 [][4]byte
	v6 [][16]byte
}

// NewTable returns an empty Table.
func NewTable() *Table {
	t := &Table{}
	t.snap.Store(&snapshot{nets: map[uint32]*network{}})
	return t
}

// network returns vni's state, or nil. It takes no lock and does not
// allocate.
func (t *Table) network(vni uint32) *network {
	return t.snap.Load().nets[vni]
}

// update replaces vni's network with what f returns from the current one
// (nil when absent); f returning nil removes the network.
func (t *Table) update(vni uint32, f func(old *network) *network) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	n := f(old.nets[vni])
	nets := make(map[uint32]*network, len(old.nets)+1)
	for k, v := range old.nets {
		nets[k] = v
	}
	if n == nil {
		delete(nets, vni)
	} else {
		n.build()
		nets[vni] = n
	}
	t.snap.Store(&snapshot{nets: nets})
}

// SetNetwork says VNI vni is the network named name, whose DNS server
// addresses (one IPv4 and/or one IPv6, the gateway by default) are dnsAddrs
// and whose subnets are subnets (for PTR NXDOMAIN authority). An empty
// dnsAddrs disables DNS on that VNI. The records of vni are kept.
func (t *Table) SetNetwork(vni uint32, name string, dnsAddrs []netip.Addr, subnets []netip.Prefix) {
	t.update(vni, func(old *network) *network {
		n := &network{name: strings.TrimSuffix(strings.ToLower(name), "."), records: map[fdb.MAC]Record{}}
		if old != nil {
			n.records = old.records
		}
		for _, a := range dnsAddrs {
			a = a.Unmap()
			switch {
			case a.Is4() && !n.dns4.IsValid():
				n.dns4, n.hasDNS = a, true
			case a.Is6() && !n.dns6.IsValid():
				n.dns6, n.hasDNS = a.WithZone(""), true
			}
		}
		for _, p := range subnets {
			if p.IsValid() {
				n.subnets = append(n.subnets, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
			}
		}
		return n
	})
}

// RemoveNetwork forgets VNI vni and its records.
func (t *Table) RemoveNetwork(vni uint32) {
	t.update(vni, func(*network) *network { return nil })
}

// Set puts the record of the endpoint with MAC owner in vni, replacing its
// previous one. A VNI that SetNetwork has not named yet keeps the record
// (answering nothing) until it is named. Set copies r.
func (t *Table) Set(vni uint32, owner fdb.MAC, r Record) {
	r.Owner = owner
	r.Aliases = slices.Clone(r.Aliases)
	r.IPs = slices.Clone(r.IPs)
	t.update(vni, func(old *network) *network {
		n := old.clone()
		n.records[owner] = r
		return n
	})
}

// Get returns the record of the endpoint with MAC owner in vni. It takes
// no lock, so a caller fed every change of a large table (the FDB's) can
// skip what changes nothing cheaply.
func (t *Table) Get(vni uint32, owner fdb.MAC) (Record, bool) {
	n := t.network(vni)
	if n == nil {
		return Record{}, false
	}
	r, ok := n.records[owner]
	return r, ok
}

// Remove deletes the record of the endpoint with MAC owner from vni.
func (t *Table) Remove(vni uint32, owner fdb.MAC) {
	if _, ok := t.Get(vni, owner); !ok {
		return // nothing to copy the network for
	}
	t.update(vni, func(old *network) *network {
		if old == nil {
			return nil
		}
		n := old.clone()
		delete(n.records, owner)
		return n
	})
}

// Holder reports which endpoint holds name (as a name or alias, compared
// case-insensitively, a trailing dot ignored) in vni, for uniqueness checks.
func (t *Table) Holder(vni uint32, name string) (owner fdb.MAC, ok bool) {
	n := t.network(vni)
	if n == nil {
		return fdb.MAC{}, false
	}
	owner, ok = n.holders[strings.TrimSuffix(strings.ToLower(name), ".")]
	return owner, ok
}

// Records lists vni's records sorted by name, each with its Owner set.
// The slices in them are copies.
func (t *Table) Records(vni uint32) []Record {
	n := t.network(vni)
	if n == nil {
		return nil
	}
	out := make([]Record, 0, len(n.records))
	for _, r := range n.records {
		r.Aliases = slices.Clone(r.Aliases)
		r.IPs = slices.Clone(r.IPs)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return slices.Compare(a.Owner[:], b.Owner[:])
	})
	return out
}

// IsDNSAddr reports whether ip is vni's DNS address (the switch uses it to
// answer ARP and neighbour solicitations for the address). It takes no lock
// and does not allocate.
func (t *Table) IsDNSAddr(vni uint32, ip netip.Addr) bool {
	n := t.network(vni)
	return n != nil && n.isDNSAddr(ip)
}

func (n *network) isDNSAddr(ip netip.Addr) bool {
	if !n.hasDNS || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip == n.dns4
	}
	return n.dns6.IsValid() && ip.WithZone("") == n.dns6
}

// clone returns a copy of n (or a fresh unnamed network if n is nil) whose
// records map may be written; derived maps are rebuilt by update.
func (n *network) clone() *network {
	c := &network{records: map[fdb.MAC]Record{}}
	if n != nil {
		c.name, c.dns4, c.dns6, c.hasDNS, c.subnets = n.name, n.dns4, n.dns6, n.hasDNS, n.subnets
		for k, v := range n.records {
			c.records[k] = v
		}
	}
	return c
}

// build derives names, ptr and holders from records. Where two endpoints
// claim the same name (the caller's uniqueness check failed) the one with
// the lower MAC wins, so the result does not depend on map order; an
// endpoint name or alias wins over a service of the same name.
func (n *network) build() {
	n.names = map[string]target{}
	n.ptr = map[netip.Addr]*dnsmessage.Name{}
	n.holders = map[string]fdb.MAC{}
	owners := make([]fdb.MAC, 0, len(n.records))
	for k := range n.records {
		owners = append(owners, k)
	}
	slices.SortFunc(owners, func(a, b fdb.MAC) int { return slices.Compare(a[:], b[:]) })

	services := map[string]*addrSet{}
	for _, o := range owners {
		r := n.records[o]
		set := newAddrSet(r.IPs)
		for _, nm := range append([]string{r.Name}, r.Aliases...) {
			k := strings.TrimSuffix(strings.ToLower(nm), ".")
			if k == "" {
				continue
			}
			if _, dup := n.holders[k]; dup {
				continue
			}
			n.holders[k] = o
			n.names[k] = target{set: set}
		}
		if name := strings.TrimSuffix(r.Name, "."); name != "" { // PTR answers keep the name's case
			fq := name + "."
			if n.name != "" {
				fq = name + "." + n.name + "."
			}
			if ptrName, err := dnsmessage.NewName(fq); err == nil {
				ptrName := &ptrName
				for _, ip := range r.IPs {
					ip = ip.Unmap().WithZone("")
					if _, dup := n.ptr[ip]; !dup && ip.IsValid() {
						n.ptr[ip] = ptrName
					}
				}
			}
		}
		if s := strings.TrimSuffix(strings.ToLower(r.Service), "."); s != "" {
			ss := services[s]
			if ss == nil {
				ss = &addrSet{}
				services[s] = ss
			}
			ss.v4 = append(ss.v4, set.v4...)
			ss.v6 = append(ss.v6, set.v6...)
		}
	}
	for s, set := range services {
		n.names["tasks."+s] = target{set: set}
		if _, taken := n.names[s]; !taken {
			n.names[s] = target{set: set, shuffle: true}
		}
	}
}

// newAddrSet splits ips by family, dropping duplicates and invalid ones.
func newAddrSet(ips []netip.Addr) *addrSet {
	s := &addrSet{}
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case ip.Is4():
			if a := ip.As4(); !slices.Contains(s.v4, a) {
				s.v4 = append(s.v4, a)
			}
		case ip.Is6():
			if a := ip.As16(); !slices.Contains(s.v6, a) {
				s.v6 = append(s.v6, a)
			}
		}
	}
	return s
}

// CheckName validates an endpoint name, alias or service: DNS label rules
// relaxed to allow '_' (Docker's names: nginx_web_2). Labels are separated
// by '.', each 1 to 63 bytes of ASCII letters, digits, '-' and '_'; the
// whole is at most 253 bytes and may not start with "tasks." (which names a
// service's tasks). It returns an error saying what is wrong.
func CheckName(s string) error {
	if s == "" {
		return errors.New("dns: empty name")
	}
	if len(s) > 253 {
		return fmt.Errorf("dns: name %.20q... is %d bytes long, more than 253", s, len(s))
	}
	if strings.HasPrefix(strings.ToLower(s), "tasks.") {
		return fmt.Errorf("dns: name %q starts with \"tasks.\", which names a service's tasks", s)
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return fmt.Errorf("dns: name %q has an empty label", s)
		}
		if len(label) > 63 {
			return fmt.Errorf("dns: name %q has a label of %d bytes, more than 63", s, len(label))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("dns: name %q contains %q; allowed are letters, digits, '-', '_' and '.'", s, c)
			}
		}
	}
	return nil
}
