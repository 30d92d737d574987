// Cluster-wide network definitions: PutNetwork and DeleteNetwork, the
// last-writer-wins merge of network records, tombstone expiry, the view
// that resolves conflicting live networks, and the goroutine that reports
// view changes to Config.OnNetworks. Methods named ...Locked run with
// Agent.mu held.

package gossip

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Network is a cluster-wide network definition. No node owns it: any node
// may create, update or delete it, and it outlives the node that created
// it.
type Network struct {
	Name    string       // unique in the cluster, 1 to 255 bytes
	VNI     uint32       // at most MaxVNI
	Subnet  netip.Prefix // without host bits; the zero Prefix for none
	Gateway netip.Addr   // inside Subnet; the zero Addr for none
	MTU     int          // 0 to 65535
	Flood   string       // flood policy, opaque here; at most 255 bytes
	Group   netip.Addr   // underlay multicast group (CheckGroup); the zero Addr for head-end replication
	DNS     netip.Addr   // where the switch answers DNS (CheckDNS); the zero Addr for the gateway
	// More holds the subnets after the first (Subnet, Gateway), each with
	// its gateway, packed at the front (subnets.go); the zero value for
	// none. Subnets lists them all.
	More [MaxSubnets - 1]NetSubnet
	// Encrypted networks send every datagram sealed (vtep/seal); their
	// members must publish a data key (Agent.SetDataKey).
	Encrypted bool
}

// DNSAddr returns the address the switch answers DNS queries on in n: DNS,
// or else the gateway; the zero Addr for none.
func (n *Network) DNSAddr() netip.Addr {
	if n.DNS.IsValid() {
		return n.DNS
	}
	return n.Gateway
}

// NetworkTombstoneTTL is how long a deleted network is remembered, by the
// deleting node's clock, so that a late put older than the deletion does
// not bring it back. Networks are few, so a day costs little and covers
// any partition that push/pull has not healed. Clocks must agree to within
// hours.
const NetworkTombstoneTTL = 24 * time.Hour

// Network errors.
var (
	// ErrNoNetwork is returned by DeleteNetwork for a name with no live
	// network. Nothing to retry.
	ErrNoNetwork = errors.New("gossip: no such network")
	// ErrTooManyNetworks is returned by PutNetwork for a new network when
	// this node holds MaxNetworks records, none of them a tombstone it could
	// drop.
	ErrTooManyNetworks = errors.New("gossip: too many networks")

	errNetClock = errors.New("gossip: network version clock exhausted")
)

// PutNetwork creates or updates the network named n.Name in the whole
// cluster and gossips it. The write gets a version above every one this
// node has seen, so it replaces what this node holds; concurrent writes of
// one name elsewhere are resolved the same way on every node (the higher
// version, then the lower writer name). Putting an unchanged network does
// nothing. It checks n's own fields; the cluster-wide rules (unique VNI,
// disjoint subnets) are the caller's to check against Networks first, and
// Conflicts reports what concurrent puts still break. It does not block on
// the network.
func (a *Agent) PutNetwork(n Network) error {
	n.Gateway = n.Gateway.WithZone("")
	for i := range n.More {
		n.More[i].Gateway = n.More[i].Gateway.WithZone("")
	}
	if err := checkNetwork(&n); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	var created uint64
	switch cur := a.nets[n.Name]; {
	case cur != nil && !cur.Deleted:
		if cur.Net == n {
			return nil
		}
		created = cur.Created
	case cur == nil && !a.netRoomLocked():
		return fmt.Errorf("%w: %d network records held", ErrTooManyNetworks, MaxNetworks)
	}
	return a.writeNetLocked(n, false, created)
}

// DeleteNetwork deletes the named network in the whole cluster: it gossips
// a tombstone, kept NetworkTombstoneTTL. It returns ErrNoNetwork if this
// node holds no live network of that name (a conflicting one counts as
// live).
func (a *Agent) DeleteNetwork(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if cur := a.nets[name]; cur == nil || cur.Deleted {
		return fmt.Errorf("%w: %q", ErrNoNetwork, name)
	}
	return a.writeNetLocked(Network{Name: name}, true, 0)
}

// Networks returns the live networks, sorted by name, leaving out those
// that Conflicts returns. Every node that holds the same records returns
// the same list.
func (a *Agent) Networks() []Network {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, _ := a.netViewLocked()
	return slices.Clone(v)
}

// Conflicts returns the live networks left out of Networks, sorted by
// name: those whose VNI or subnet a network created before them (by
// version, then name) already uses, after concurrent puts on different
// nodes. Each is logged once. Deleting or changing it resolves the
// conflict.
func (a *Agent) Conflicts() []Network {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, c := a.netViewLocked()
	return slices.Clone(c)
}

// writeNetLocked records and queues a write of this node.
func (a *Agent) writeNetLocked(n Network, deleted bool, created uint64) error {
	if a.netClock >= maxNetVersion {
		return errNetClock
	}
	a.netClock++
	r := &netRecord{
		Net: n, Deleted: deleted, Version: a.netClock,
		Time: a.cfg.Now().UnixNano(), Writer: a.cfg.Name,
	}
	if !deleted {
		r.Created = cmp.Or(created, r.Version)
	}
	a.nets[n.Name] = r
	a.netChangedLocked()
	a.queueNamed(netName(n.Name), encodeNetMessage(r))
	return nil
}

// netName names the broadcasts about one network.
func netName(name string) string { return "n" + name }

// netNewer reports whether record r replaces c of the same name: the
// higher version; then the lower writer name; then, for a version one
// writer used twice (its clock went back), the greater encoding, so that
// every node still picks the same one.
func netNewer(r, c *netRecord) bool {
	if r.Version != c.Version {
		return r.Version > c.Version
	}
	if r.Writer != c.Writer {
		return r.Writer < c.Writer
	}
	return bytes.Compare(appendNetRecord(nil, r), appendNetRecord(nil, c)) > 0
}

// netExpired reports whether tombstone r is older than NetworkTombstoneTTL.
func netExpired(r *netRecord, now time.Time) bool {
	return r.Deleted && r.Time < now.UnixNano()-int64(NetworkTombstoneTTL)
}

// applyNetLocked merges a received record and reports whether it was new
// information (which the caller then rebroadcasts). A tombstone already
// past NetworkTombstoneTTL still deletes what it beats but is not kept.
func (a *Agent) applyNetLocked(r netRecord, now time.Time) bool {
	a.netClock = max(a.netClock, r.Version) // Lamport: past every version seen
	name := r.Net.Name
	cur := a.nets[name]
	if cur != nil && !netNewer(&r, cur) {
		return false
	}
	if netExpired(&r, now) {
		if cur == nil || cur.Deleted {
			return false
		}
		delete(a.nets, name)
		a.netChangedLocked()
		return true
	}
	if cur == nil && !a.netRoomLocked() {
		a.netDropped.Add(1)
		return false
	}
	a.nets[name] = &r
	if !r.Deleted || (cur != nil && !cur.Deleted) {
		a.netChangedLocked()
	}
	return true
}

// netRoomLocked reports whether a record for a new name fits, dropping the
// oldest tombstone if the bound is reached.
func (a *Agent) netRoomLocked() bool {
	if len(a.nets) < MaxNetworks {
		return true
	}
	var oldest *netRecord
	for _, r := range a.nets {
		if r.Deleted && (oldest == nil || r.Time < oldest.Time) {
			oldest = r
		}
	}
	if oldest == nil {
		return false
	}
	delete(a.nets, oldest.Net.Name)
	return true
}

// expireNetsLocked drops tombstones older than NetworkTombstoneTTL.
func (a *Agent) expireNetsLocked(now time.Time) {
	for name, r := range a.nets {
		if netExpired(r, now) {
			delete(a.nets, name)
		}
	}
}

// netRecordsLocked returns every record worth sending, sorted by name.
func (a *Agent) netRecordsLocked(now time.Time) []netRecord {
	if len(a.nets) == 0 {
		return nil
	}
	out := make([]netRecord, 0, len(a.nets))
	for _, r := range a.nets {
		if !netExpired(r, now) {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(x, y netRecord) int { return strings.Compare(x.Net.Name, y.Net.Name) })
	return out
}

// netChangedLocked marks the live networks changed: the view is resolved
// again when next needed, and the watcher is woken.
func (a *Agent) netChangedLocked() {
	a.netDirty = true
	select {
	case a.netWake <- struct{}{}:
	default:
	}
}

// netViewLocked returns Networks and Conflicts, resolving them again if
// the records changed.
func (a *Agent) netViewLocked() (nets, conflicts []Network) {
	if a.netDirty {
		a.netDirty = false
		a.netView, a.netConflicts = a.resolveNetsLocked()
	}
	return a.netView, a.netConflicts
}

// resolveNetsLocked splits the live networks into those kept and those in
// conflict: in order of creation (version, then name), a network is kept
// unless its VNI or an overlapping subnet belongs to one kept before it.
// The order depends only on the records, so every node agrees. Subnets
// are compared pairwise: at MaxNetworks live networks about 8 million
// cheap comparisons, done at most once per burst of changes.
func (a *Agent) resolveNetsLocked() (nets, conflicts []Network) {
	live := make([]*netRecord, 0, len(a.nets))
	for _, r := range a.nets {
		if !r.Deleted {
			live = append(live, r)
		}
	}
	slices.SortFunc(live, func(x, y *netRecord) int {
		return cmp.Or(cmp.Compare(x.Created, y.Created), strings.Compare(x.Net.Name, y.Net.Name))
	})
	vnis := make(map[uint32]string, len(live))
	var subnets []Network // kept networks with a subnet
	conflicting := make(map[string]struct{})
	for _, r := range live {
		n := r.Net
		other, why := vnis[n.VNI], "VNI in use"
		if other == "" && n.Subnet.IsValid() {
			for _, s := range subnets {
				if _, _, ok := s.Overlap(n); ok {
					other, why = s.Name, "subnet overlaps"
					break
				}
			}
		}
		if other == "" {
			nets = append(nets, n)
			vnis[n.VNI] = n.Name
			if n.Subnet.IsValid() {
				subnets = append(subnets, n)
			}
			continue
		}
		conflicts = append(conflicts, n)
		conflicting[n.Name] = struct{}{}
		if a.netLogged[n.Name] != r.Version {
			a.netLogged[n.Name] = r.Version
			a.log.Warn("network conflicts with an earlier one; left out until deleted or changed",
				"network", n.Name, "vni", n.VNI, "subnet", n.Subnet, "reason", why, "kept", other,
				"writer", r.Writer)
		}
	}
	for name := range a.netLogged {
		if _, ok := conflicting[name]; !ok {
			delete(a.netLogged, name)
		}
	}
	byName := func(x, y Network) int { return strings.Compare(x.Name, y.Name) }
	slices.SortFunc(nets, byName)
	slices.SortFunc(conflicts, byName)
	return nets, conflicts
}

// watchNetworks resolves the view after each burst of changes, which logs
// new conflicts, and hands every changed list to Config.OnNetworks: one
// call at a time, in order, without the agent's lock.
func (a *Agent) watchNetworks() {
	defer a.wg.Done()
	var last []Network
	for {
		select {
		case <-a.closing:
			return
		case <-a.netWake:
		}
		a.mu.Lock()
		view, _ := a.netViewLocked()
		a.mu.Unlock()
		if slices.Equal(view, last) {
			continue
		}
		last = view // resolving replaces the slice, never changes it
		if a.cfg.OnNetworks != nil {
			a.cfg.OnNetworks(slices.Clone(view))
		}
	}
}
