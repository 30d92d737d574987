package daemon

// This file holds the network registry. Networks are cluster-wide: a
// network created on any node is put into the gossip agent, which carries
// it to every node and calls back (apply) with the full list wherever it
// changes; each node then serves every network: flood policy, peer lists
// and the VNIs it advertises follow the list.

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/vtep"
)

// DefaultNetwork names the network `ovlsw up --vni N` creates.
const DefaultNetwork = "default"

// networkStore is where networks live cluster-wide: the gossip agent.
type networkStore interface {
	PutNetwork(gossip.Network) error
	DeleteNetwork(name string) error
	Networks() []gossip.Network
}

// networkServer is the data plane's side of the networks: *vtep.Switch.
type networkServer interface {
	SetFloodPolicy(vni uint32, p vtep.FloodPolicy)
	Serve(vnis []uint32)
}

var _ networkServer = (*vtep.Switch)(nil)

// networks is the registry of the networks this node serves: the cluster's
// list as gossip last reported it, with each network's MTU capped at this
// node's. It tells the switch which VNIs it serves and with which flood
// policy, and reports every change of the VNI set to onVNIs (the cluster's
// advertiser).
type networks struct {
	log      *slog.Logger
	maxMTU   int                    // the underlay MTU minus the VXLAN overhead
	defFlood atomic.Pointer[string] // flood policy of networks created without one; a reload changes it
	sw       networkServer
	onVNIs   func() // the VNI set changed; must not block

	store atomic.Pointer[networkStore] // nil until gossip runs

	groups networkGroups // set once before use; zero: groups are ignored (tests)
	// watch, set once before use, is told of every network that changes
	// (old, new) or goes (new the zero Network), with r.mu held: it must
	// not call back into the registry.
	watch func(old, n gossip.Network)

	// mu guards byName and early; vnis is written under it and read
	// without it.
	mu     sync.Mutex
	byName map[string]gossip.Network
	early  []uint32                 // VNIs served before gossip's list is known (restart.go)
	vnis   atomic.Pointer[[]uint32] // VNIs served, sorted
}

func newNetworks(log *slog.Logger, maxMTU int, defFlood string, sw networkServer, onVNIs func()) *networks {
	r := &networks{log: log, maxMTU: maxMTU, sw: sw, onVNIs: onVNIs, byName: map[string]gossip.Network{}}
	r.defFlood.Store(&defFlood)
	r.vnis.Store(&[]uint32{})
	return r
}

// setStore hands the registry the cluster's store once gossip runs.
func (r *networks) setStore(s networkStore) { r.store.Store(&s) }

// checkNetwork validates n's own values (not the cluster-wide rules) and
// fills in the node's defaults: the MTU and the flood policy, normalised.
func checkNetwork(n *gossip.Network, maxMTU int, defFlood string) error {
	if err := gossip.CheckNetworkName(n.Name); err != nil {
		return userErrorf("%v", err)
	}
	if err := fdb.CheckVNI(n.VNI); err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := gossip.CheckSubnet(n.Subnet); err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := gossip.CheckGateway(n.Gateway, n.Subnet); err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := gossip.CheckGroup(n.Group); err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := n.CheckSubnets(); err != nil { // route.go
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := n.CheckDNSOf(); err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	if err := checkEncrypted(*n); err != nil {
		return err
	}
	maxMTU = encryptedMTU(maxMTU, *n) // encryption.go
	if n.MTU == 0 {
		n.MTU = maxMTU
	}
	if err := gossip.CheckMTU(n.MTU, maxMTU); err != nil {
		return userErrorf("network %s: %v (the underlay MTU minus the VXLAN overhead: 50 over IPv4, 70 over IPv6)", n.Name, err)
	}
	if n.Flood == "" {
		n.Flood = defFlood
	}
	pol, err := vtep.ParseFloodPolicy(n.Flood)
	if err != nil {
		return userErrorf("network %s: %v", n.Name, err)
	}
	n.Flood = pol.String()
	return nil
}

// create validates n against the cluster's networks and puts it. An
// identical network of the same name is accepted as is (ovlsw up --vni on
// every node of a cluster).
func (r *networks) create(n gossip.Network) error {
	if err := checkNetwork(&n, r.maxMTU, *r.defFlood.Load()); err != nil {
		return err
	}
	if n.Group.IsValid() && r.groups.check != nil {
		if err := r.groups.check(n.Group); err != nil {
			return userErrorf("network %s: %v", n.Name, err)
		}
	}
	sp := r.store.Load()
	if sp == nil {
		return fmt.Errorf("network %s: gossip is not running", n.Name)
	}
	s := *sp
	for _, o := range s.Networks() {
		switch {
		case o.Name == n.Name && o.VNI == n.VNI && (!n.Subnet.IsValid() || o.Subnet == n.Subnet && o.More == n.More) &&
			(!n.Gateway.IsValid() || o.Gateway == n.Gateway) && (o.Encrypted || !n.Encrypted):
			return nil // already there: a node joining with the same --vni (and --subnet, if given; encrypted stays encrypted)
		case o.Name == n.Name:
			return userErrorf("network %s already exists (VNI %d, subnet %v)", n.Name, o.VNI, o.Subnet)
		case o.VNI == n.VNI:
			return userErrorf("VNI %d is already used by network %s", n.VNI, o.Name)
		}
		if mine, theirs, ok := n.Overlap(o); ok {
			return userErrorf("subnet %v overlaps network %s's %v", mine, o.Name, theirs)
		}
	}
	if err := s.PutNetwork(n); err != nil {
		return err
	}
	r.apply(s.Networks())
	r.log.Debug("network created", "network", n.Name, "vni", n.VNI, "subnet", n.Subnet, "mtu", n.MTU)
	return nil
}

// remove deletes a network; users lists who still uses it (endpoints in
// the cluster, the host port), in which case it is refused.
func (r *networks) remove(name string, users func(gossip.Network) []string) error {
	n, ok := r.get(name)
	if !ok {
		return fmt.Errorf("network %s: %w", name, errNotFound)
	}
	if in := users(n); len(in) > 0 {
		slices.Sort(in)
		return userErrorf("network %s still has endpoints attached: %s; detach them first", name, strings.Join(in, ", "))
	}
	sp := r.store.Load()
	if sp == nil {
		return fmt.Errorf("network %s: gossip is not running", name)
	}
	s := *sp
	if err := s.DeleteNetwork(name); err != nil {
		return err
	}
	r.apply(s.Networks())
	r.log.Info("network removed", "network", name)
	return nil
}

// apply makes the node serve exactly the networks in list. The agent calls
// it whenever the cluster's list changes. It reports the names of served
// networks that are gone from the list.
func (r *networks) apply(list []gossip.Network) (removed []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]gossip.Network, len(list))
	changed := false
	for _, n := range list {
		if max := encryptedMTU(r.maxMTU, n); n.MTU == 0 || n.MTU > max {
			n.MTU = max
		}
		next[n.Name] = n
		old, ok := r.byName[n.Name]
		if !ok || old != n {
			pol, _ := vtep.ParseFloodPolicy(n.Flood)
			r.sw.SetFloodPolicy(n.VNI, pol)
			r.routesChangedLocked(old, n, list) // route.go
			changed = true
		}
		if old.Group != n.Group || old.VNI != n.VNI {
			r.groupChangedLocked(old, n)
		}
		if r.watch != nil && (!ok || old != n) {
			r.watch(old, n)
		}
	}
	for name, old := range r.byName {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
			changed = true
			r.groupChangedLocked(old, gossip.Network{})
			r.routesChangedLocked(old, gossip.Network{}, list)
			if r.watch != nil {
				r.watch(old, gossip.Network{})
			}
		}
	}
	r.byName = next
	if r.early != nil {
		r.early = nil // gossip's list replaces them
		changed = true
	}
	if changed {
		r.vnisChangedLocked()
	}
	return removed
}

// serveEarly serves vni with policy p until gossip's list of networks is
// known: endpoints taken back at a restart carry traffic before the join.
func (r *networks) serveEarly(vni uint32, p vtep.FloodPolicy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.servedLocked(vni) {
		return
	}
	r.sw.SetFloodPolicy(vni, p)
	r.early = append(r.early, vni)
	r.vnisChangedLocked()
}

func (r *networks) servedLocked(vni uint32) bool {
	return slices.Contains(*r.vnis.Load(), vni)
}

// vnisChangedLocked recomputes the served VNI set and tells the switch
// and the advertiser. Called with r.mu held.
func (r *networks) vnisChangedLocked() {
	vnis := slices.Clone(r.early)
	for _, n := range r.byName {
		if !slices.Contains(vnis, n.VNI) {
			vnis = append(vnis, n.VNI)
		}
	}
	slices.Sort(vnis)
	if slices.Equal(vnis, *r.vnis.Load()) {
		return
	}
	r.vnis.Store(&vnis)
	r.sw.Serve(vnis)
	if r.onVNIs != nil {
		r.onVNIs()
	}
}

// served returns the VNIs served, sorted. It takes no lock.
func (r *networks) served() []uint32 { return slices.Clone(*r.vnis.Load()) }

// get returns the network named name.
func (r *networks) get(name string) (gossip.Network, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.byName[name]
	return n, ok
}

// list returns the networks by name.
func (r *networks) list() []gossip.Network {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]gossip.Network, 0, len(r.byName))
	for _, n := range r.byName {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b gossip.Network) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// networkGroups is how the registry puts networks with a multicast group
// in group mode: the daemon's (group.go). All nil leaves groups unused.
type networkGroups struct {
	check func(g netip.Addr) error             // whether the node can use g; must not block
	join  func(vni uint32, g netip.Addr) error // joins g and puts vni in group mode
	leave func(vni uint32, g netip.Addr)       // undoes join
}

// groupChangedLocked leaves old's group and joins n's, either of which
// may be none. A group that cannot be joined leaves the network in
// head-end replication, logged. Called with r.mu held.
func (r *networks) groupChangedLocked(old, n gossip.Network) {
	if r.groups.join == nil {
		return
	}
	if old.Group.IsValid() {
		r.groups.leave(old.VNI, old.Group)
	}
	if n.Group.IsValid() {
		if err := r.groups.join(n.VNI, n.Group); err != nil {
			r.log.Error("network's multicast group not joined: its floods go to each node instead",
				"network", n.Name, "vni", n.VNI, "group", n.Group, "err", err)
		}
	}
}
