// IP claims for address allocation: an index from (VNI, address) to the
// MACs whose current claim lists the address, kept by setCurLocked, and
// the queries Claims and UsedIPs. Methods named ...Locked run with
// Agent.mu held.

package gossip

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
)

// Claims returns every binding this node knows in vni whose IPs include ip,
// sorted by node name, then MAC: its own, those of live members, and those
// parked of members that failed, left or are not yet known. A failed or
// departed node's addresses so stay claimed for TombstoneTTL (the grace
// period in which it may come back as the same process), after which they
// are free. More than one binding means the address is claimed twice (two
// allocations raced); every node that knows the same bindings lists them
// in the same order. A binding of this node appears once announced (the
// worker announces local FDB entries shortly after they change), so an
// allocator must itself remember addresses it handed out and not yet saw
// here.
func (a *Agent) Claims(vni uint32, ip netip.Addr) []Binding {
	ip = ip.WithZone("").Unmap()
	a.mu.Lock()
	now := a.cfg.Now()
	var out []Binding
	for _, mac := range a.claimIPs[vni][ip] {
		k := fdb.Key{VNI: vni, MAC: mac}
		if c := a.claimOfLocked(k, now); c != nil {
			out = append(out, Binding{
				VNI: vni, MAC: mac, IPs: slices.Clone(c.ips), Names: c.names, Node: c.owner, VTEP: c.vtep, Seq: c.seq,
			})
		}
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y Binding) int {
		if c := strings.Compare(x.Node, y.Node); c != 0 {
			return c
		}
		return bytes.Compare(x.MAC[:], y.MAC[:])
	})
	return out
}

// UsedIPs returns every address in vni that Claims would report a binding
// for, so that an allocator can pick a free one: what Claims says of one
// address, for all of them at once.
func (a *Agent) UsedIPs(vni uint32) map[netip.Addr]struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	ips := a.claimIPs[vni]
	out := make(map[netip.Addr]struct{}, len(ips))
	for ip, macs := range ips {
		for _, mac := range macs {
			if a.claimOfLocked(fdb.Key{VNI: vni, MAC: mac}, now) != nil {
				out[ip] = struct{}{}
				break
			}
		}
	}
	return out
}

// claimOfLocked returns k's current claim unless it is parked past
// TombstoneTTL (expire drops those only every few seconds).
func (a *Agent) claimOfLocked(k fdb.Key, now time.Time) *claim {
	ks := a.keys[k]
	if ks == nil || ks.cur == nil || a.parkedExpiredLocked(ks.cur, now) {
		return nil
	}
	return ks.cur
}

// parkedExpiredLocked reports whether c's owner is not live and has not
// been for TombstoneTTL, counted from when c was accepted or the owner
// last changed state, whichever is later.
func (a *Agent) parkedExpiredLocked(c *claim, now time.Time) bool {
	if a.liveLocked(c.owner) {
		return false
	}
	since := c.at
	if m := a.members[c.owner]; m != nil && m.since.After(since) {
		since = m.since
	}
	return now.Sub(since) > a.cfg.TombstoneTTL
}

// reindexLocked moves k's entries in the IP index from claim prev's
// addresses to c's; either may be nil.
func (a *Agent) reindexLocked(k fdb.Key, prev, c *claim) {
	if prev != nil && c != nil && slices.Equal(prev.ips, c.ips) {
		return
	}
	if prev != nil {
		byIP := a.claimIPs[k.VNI]
		for _, ip := range prev.ips {
			ip = ip.WithZone("").Unmap()
			macs := byIP[ip]
			if i := slices.Index(macs, k.MAC); i >= 0 {
				macs = slices.Delete(macs, i, i+1)
			}
			if len(macs) == 0 {
				delete(byIP, ip)
			} else {
				byIP[ip] = macs
			}
		}
		if len(byIP) == 0 {
			delete(a.claimIPs, k.VNI)
		}
	}
	if c != nil && len(c.ips) > 0 {
		byIP := a.claimIPs[k.VNI]
		if byIP == nil {
			byIP = make(map[netip.Addr][]fdb.MAC)
			a.claimIPs[k.VNI] = byIP
		}
		for _, ip := range c.ips {
			ip = ip.WithZone("").Unmap()
			if !slices.Contains(byIP[ip], k.MAC) {
				byIP[ip] = append(byIP[ip], k.MAC)
			}
		}
	}
}
