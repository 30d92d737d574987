// Package gossip is ovlsw's control plane: cluster membership, each
// member's VTEP and VNIs, the MAC bindings every node owns and the
// cluster's network definitions, spread with hashicorp/memberlist. It
// writes remote bindings into the forwarding table through Table and tells
// the data plane the member VTEPs of each VNI through Members; it never
// touches packets.
//
// Design notes: every node is authoritative for its own bindings. A binding
// carries the owner's sequence number (EVPN MAC mobility: a move bumps it,
// the highest wins, ties go to the lower node name) and a generation, a
// counter of the owner's changes that starts at the process start time, so
// one owner's records are totally ordered even across restarts and a
// tombstone can reject a late, older announcement. Broadcasts are named by
// (VNI, MAC), so a newer one replaces an older one in the retransmit queue;
// receivers rebroadcast what is new to them (user messages are not relayed
// by memberlist itself). Push/pull carries each node's full own table with
// its generation, so a receiver drops that owner's bindings the snapshot no
// longer lists: missed broadcasts of either kind are repaired there. It also
// carries what the sender holds of every other live owner, each owner's
// list with the generation up to which the sender knows it to be complete
// (its horizon), so one push/pull with anyone repairs what was missed from
// anyone. (With own bindings only, a broadcast missed at N nodes waits until
// that one pair push/pulls, about N/2 intervals: 25 minutes at 50 nodes,
// whose interval memberlist scales to 60 s.) A dead
// or departed member's bindings leave the FDB at once and stay parked (not
// installed) for TombstoneTTL, in case it was declared dead wrongly and
// comes back as the same process (same epoch in its metadata). Parked
// bindings keep their IPs claimed (Claims, UsedIPs) for that grace period,
// so an allocator does not hand a failed node's addresses out again
// before it could have come back.
//
// Networks are not owned: any node writes any of them, and they outlive
// their writer. Each name holds one record, the last write by a Lamport
// version (a node's clock starts, like gen, at the process start time and
// is raised past every version it sees, so a write follows every write its
// node had seen); equal versions go to the lower writer name. A deletion
// is a tombstone, kept NetworkTombstoneTTL by the deleter's clock (not the
// receiver's, or nodes would keep handing an expired tombstone back to each
// other), so a late, older put does not resurrect the network. Broadcasts
// are named by network; every push/pull state carries all records, so a
// node joining later learns every network from any member. The records are
// bounded (MaxNetworks, tombstones included): networks are few. Concurrent
// puts can leave two live networks sharing a VNI or overlapping subnets;
// every node then keeps the one created first (created version, then name,
// so that updating a network never makes it lose to a younger one) and
// reports the other by Conflicts, so all nodes agree without a leader.
//
// Files: agent.go the Agent's lifecycle, queries and keys; config.go the
// Config; store.go the binding state; claims.go the IP index; network.go
// the network records; delegate.go memberlist's callbacks; worker.go the
// goroutines; wire.go and netwire.go the encodings; keyring.go the keyring
// kept on the key schedule; transport.go the gossip port shared with the
// join service (package join). Package secret holds the cluster secret,
// its file and the key schedule.
package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ovlsw/ovlsw/fdb"
)

// Table is the forwarding table the agent writes remote bindings into.
// *fdb.Table satisfies it. The agent calls it with its own lock held, so
// the table's change callback must not call back into the Agent other than
// through OnFDBEvent (which only queues).
type Table interface {
	Set(fdb.Entry)
	Get(fdb.Key) (fdb.Entry, bool)
	DeleteFunc(match func(fdb.Entry) bool) []fdb.Entry
}

// Members receives the member VTEPs of each VNI (not this node's own), for
// head-end replication of broadcast and unknown traffic, and the VTEPs of
// every alive member, which the data plane accepts frames from before their
// VNIs are known. *vtep.Switch satisfies it, and the daemon passes the
// switch itself. Its methods are called with the agent's lock held, in the
// order the changes were decided, and must not block for long.
type Members interface {
	// SetPeers gives the member VTEPs of vni. An empty list means the VNI
	// has no other members.
	SetPeers(vni uint32, vteps []netip.AddrPort)
	// SetMembers gives the VTEPs of every alive (or suspect) member other
	// than this node, sorted, whatever their VNIs. It is called whenever
	// that set changes; an empty list means there are none.
	SetMembers(vteps []netip.AddrPort)
}

var _ Table = (*fdb.Table)(nil)

// Binding is a MAC address in one VNI, owned by a node and reachable through
// its VTEP.
type Binding struct {
	VNI  uint32
	MAC  fdb.MAC
	IPs  []netip.Addr   // addresses bound to the MAC, at most MaxIPs
	Node string         // owner; Announce fills in this node
	VTEP netip.AddrPort // owner's VTEP; Announce defaults it to Config.VTEP
	Seq  uint64         // mobility sequence number; Announce may raise it
	// Names are the endpoint's DNS names (nil for none), within the wire's
	// bounds (MaxNameLen, MaxAliases). Never modified once announced.
	Names *fdb.Names
}

// Errors.
var (
	// ErrClosed is returned after Leave or Close; the caller should stop.
	ErrClosed = errors.New("gossip: agent left or closed")
	// ErrKeyMismatch is wrapped by Join and New when members were reachable
	// but refused our gossip: the encryption key does not match theirs (or
	// one side has encryption and the other not).
	ErrKeyMismatch = errors.New("gossip: key does not match the cluster's gossip key")
	// ErrNoEncryption is returned by the key methods when the agent was
	// started without a SecretKey.
	ErrNoEncryption = errors.New("gossip: encryption not enabled (start with a secret key)")
	// ErrDuplicate is returned by Announce for a MAC flagged duplicate
	// (moving too often) that another node owns: this node does not take it
	// over until the flag clears. Nothing to retry.
	ErrDuplicate = errors.New("gossip: MAC flagged duplicate and owned by another node")
	// ErrTooManyBindings is returned by Announce when this node already owns
	// MaxStateBindings bindings; the binding is not announced.
	ErrTooManyBindings = errors.New("gossip: too many local bindings")
)

// Agent is one node's gossip control plane. Its methods are safe for
// concurrent use.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	table   Table
	peers   Members
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	queue   memberlist.TransmitLimitedQueue
	meta    atomic.Pointer[[]byte] // our node metadata, replaced by SetVNIs
	vniMu   sync.Mutex             // serialises SetVNIs and SetDataKey
	dataKey []byte                 // the data key in our metadata, under vniMu (datakey.go)

	// Counters, atomic.
	numNodes                      atomic.Int64 // live members including us, for the queue
	msgIn, msgOut                 atomic.Uint64
	bytesIn, bytesOut             atomic.Uint64 // of the messages counted in msgIn and msgOut
	statesIn, statesOut           atomic.Uint64
	malformed, stale, queuePruned atomic.Uint64
	netDropped                    atomic.Uint64 // network records over MaxNetworks
	dropOut                       atomic.Bool   // tests: lose outgoing broadcasts

	// mu guards the binding store, the member records and every write to
	// table and peers, so those writes happen in the order decided.
	mu       sync.Mutex
	closed   bool // Leave or Close: no more announcements
	gen      uint64
	keys     map[fdb.Key]*keyState
	byOwner  map[string]map[fdb.Key]struct{} // keys whose current claim is the owner's
	members  map[string]*member
	horizon  map[string]uint64                   // per live owner: gen up to which we hold its complete list
	peerSets map[uint32][]netip.AddrPort         // as last given to peers
	dups     map[fdb.Key]struct{}                // keys flagged duplicate
	delBatch map[fdb.Key]struct{}                // gossip FDB entries to delete at unlock
	claimIPs map[uint32]map[netip.Addr][]fdb.MAC // per VNI and IP: MACs whose current claim lists it

	// mu also guards the member VTEPs as last given to peers.SetMembers,
	// and their data keys as last given to SetMemberKeys (datakey.go).
	memberSet  []netip.AddrPort
	memberKeys map[netip.Addr]string

	// mu also guards the network records and the view resolved from them.
	nets         map[string]*netRecord // by name, live and tombstones, at most MaxNetworks
	netClock     uint64                // Lamport clock: at least every version seen
	netDirty     bool                  // nets changed since netView was resolved
	netView      []Network             // Networks, as last resolved; replaced, never changed
	netConflicts []Network             // Conflicts, as last resolved
	netLogged    map[string]uint64     // conflicting networks logged: name to version

	// qmu guards pending, the keys OnFDBEvent queued for the worker.
	qmu     sync.Mutex
	pending map[fdb.Key]struct{}
	wake    chan struct{}

	netWake chan struct{} // wakes watchNetworks after the networks changed

	closing   chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	leaveOnce sync.Once
	epoch     uint64 // first generation of this process, in the metadata
}

// New starts an agent: it validates cfg, starts memberlist listening, and
// joins cfg.Join if set. table receives remote bindings; members (may be
// nil) receives the VTEPs of each VNI.
func New(cfg Config, table Table, members Members) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if table == nil {
		return nil, errors.New("gossip: nil table")
	}
	if members == nil {
		members = noPeers{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetransmitMult == 0 {
		cfg.RetransmitMult = DefaultConfig().RetransmitMult
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = DefaultConfig().TombstoneTTL
	}
	cfg.VNIs = sortedVNIs(cfg.VNIs)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	epoch := uint64(time.Now().UnixNano()) // wall clock: later processes start higher
	a := &Agent{
		cfg:      cfg,
		log:      logger.With("node", cfg.Name),
		table:    table,
		peers:    members,
		gen:      epoch,
		epoch:    epoch,
		keys:     make(map[fdb.Key]*keyState),
		byOwner:  make(map[string]map[fdb.Key]struct{}),
		members:  make(map[string]*member),
		horizon:  make(map[string]uint64),
		peerSets: make(map[uint32][]netip.AddrPort),
		dups:     make(map[fdb.Key]struct{}),
		delBatch: make(map[fdb.Key]struct{}),
		claimIPs: make(map[uint32]map[netip.Addr][]fdb.MAC),
		pending:  make(map[fdb.Key]struct{}),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),

		nets:      make(map[string]*netRecord),
		netClock:  epoch,
		netLogged: make(map[string]uint64),
		netWake:   make(chan struct{}, 1),
	}
	md := encodeMeta(&meta{VTEP: cfg.VTEP, Epoch: epoch, VNIs: cfg.VNIs})
	a.meta.Store(&md)
	a.numNodes.Store(1)
	a.queue.NumNodes = func() int { return int(a.numNodes.Load()) }
	mc, err := cfg.memberlistConfig((*delegate)(a), logger)
	if err != nil {
		return nil, err
	}
	a.queue.RetransmitMult = cfg.RetransmitMult
	a.keyring = mc.Keyring
	ml, err := memberlist.Create(mc)
	if err != nil {
		if t, ok := mc.Transport.(*muxTransport); ok {
			t.Shutdown() // ours: memberlist shuts it down only if it got as far as starting
		}
		return nil, fmt.Errorf("gossip: start memberlist on %v:%d: %w", cfg.BindAddr, cfg.GossipPort, err)
	}
	a.mu.Lock()
	a.ml = ml
	a.mu.Unlock()
	a.wg.Add(3)
	go a.worker()
	go a.maintain()
	go a.watchNetworks()
	if len(cfg.Join) > 0 {
		if _, err := a.Join(cfg.Join); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Join contacts the given members ("host:port" or "host") and exchanges
// full state with each. It returns how many were contacted; the error is
// nil if any was. If members answered but refused us, the error wraps
// ErrKeyMismatch.
func (a *Agent) Join(addrs []string) (int, error) {
	n, err := a.ml.Join(addrs)
	if err == nil {
		return n, nil
	}
	// memberlist's multierror spans lines; an error is one line here.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if keyError(err) {
		return n, fmt.Errorf("%w: join %v: %s", ErrKeyMismatch, addrs, msg)
	}
	return n, fmt.Errorf("gossip: join %v: %s", addrs, msg)
}

// keyError reports whether a failed join was refused encryption:
// memberlist says "no installed keys could decrypt the message", "remote
// state is encrypted and encryption is not configured" or "encryption is
// configured but remote state is not encrypted".
func keyError(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "decrypt") || strings.Contains(s, "encrypt")
}

// SetVNIs replaces the VNIs this node serves (networks created or removed
// at run time) and advertises them; members then add or drop this node's
// VTEP from those VNIs' peer lists. It waits up to timeout for the update
// to reach one member; the update goes out even if that times out.
func (a *Agent) SetVNIs(vnis []uint32, timeout time.Duration) error {
	vnis = sortedVNIs(vnis)
	if len(vnis) > MaxVNIs {
		return fmt.Errorf("gossip: %d VNIs, at most %d fit in the node metadata", len(vnis), MaxVNIs)
	}
	if len(vnis) > 0 && vnis[len(vnis)-1] > MaxVNI {
		return fmt.Errorf("gossip: VNI %d exceeds 24 bits", vnis[len(vnis)-1])
	}
	a.vniMu.Lock()
	defer a.vniMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.cfg.VNIs = vnis
	a.mu.Unlock()
	md := encodeMeta(&meta{VTEP: a.cfg.VTEP, Epoch: a.epoch, VNIs: vnis, DataKey: a.dataKey})
	if len(md) > maxMeta {
		return fmt.Errorf("gossip: %d VNIs and a data key do not fit in the node metadata (at most %d VNIs with a key)", len(vnis), MaxVNIsWithKey)
	}
	a.meta.Store(&md)
	if err := a.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("gossip: advertise VNIs: %w", err)
	}
	return nil
}

// Addr returns the address and port gossip is advertised on.
func (a *Agent) Addr() netip.AddrPort {
	n := a.ml.LocalNode()
	ip, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(ip.Unmap(), n.Port)
}

// Leave withdraws every binding this node owns, tells the cluster this
// node is leaving and waits up to timeout (without bound if timeout <= 0)
// for that to go out. Other members then drop this node's bindings and
// VTEP at once instead of after failure detection. Announce fails
// afterwards; call Close next. It is the first half of the SIGTERM path.
//
// It returns nil once our leave message has been sent its retransmit
// limit, or as soon as no other member is alive (all left or dead: nobody
// to tell, as when the whole cluster stops together), and an error only if
// the timeout passes, or Close is called, while others are still alive.
//
// Design: memberlist's Leave queues its dead message about us and, if any
// member is alive, blocks until that message has been sent. But it only
// gossips to members alive or recently dead, so when the others leave at
// the same moment (marked left by their own dead messages) it never goes
// out and Leave waits out the whole timeout, which nothing can cancel:
// Shutdown does not end it. So we call it with a negligible timeout (its
// message stays queued and is gossiped until Shutdown) and wait ourselves
// on our own leave message leaving the queue, polling memberlist for a
// live member every leavePoll, and on the timeout and Close. The wait runs
// in the caller's goroutine and starts none, so nothing outlives Close.
func (a *Agent) Leave(timeout time.Duration) error {
	var err error
	a.leaveOnce.Do(func() {
		a.lock()
		if a.closed {
			a.unlock()
			return
		}
		a.closed = true
		for k := range a.byOwner[a.cfg.Name] {
			a.withdrawLocked(k)
		}
		sent := make(chan struct{}, 1)
		a.queue.QueueBroadcast(&leaveBroadcast{
			broadcast: broadcast{name: leaveName(a.cfg.Name), msg: encodeMessage(&message{
				Owner: a.cfg.Name, Leave: true, Rec: record{Gen: a.gen},
			})},
			sent: sent,
		})
		a.unlock()
		// Its only error is the timeout, which we wait out ourselves.
		_ = a.ml.Leave(time.Nanosecond)

		othersAlive := func() bool {
			for _, n := range a.ml.Members() { // alive and suspect only
				if n.Name != a.cfg.Name {
					return true
				}
			}
			return false
		}
		var expired <-chan time.Time
		if timeout > 0 {
			timer := time.NewTimer(timeout)
			defer timer.Stop()
			expired = timer.C
		}
		poll := time.NewTicker(leavePoll)
		defer poll.Stop()
		for othersAlive() {
			select {
			case <-sent:
				return
			case <-poll.C:
			case <-expired:
				if othersAlive() {
					err = fmt.Errorf("gossip: leave: timeout after %v waiting for the leave broadcast, members still alive", timeout)
				}
				return
			case <-a.closing:
				if othersAlive() {
					err = errors.New("gossip: leave: closed before the leave broadcast went out, members still alive")
				}
				return
			}
		}
	})
	return err
}

// leavePoll is how often Leave checks whether any other member is still
// alive. A member leaving at the same time is marked left when its dead
// message arrives, within a gossip interval or two (200 ms by default, 10
// ms in the tests); polling at a quarter of the default adds little to
// Leave and costs a read of memberlist's node list.
const leavePoll = 50 * time.Millisecond

// leaveBroadcast is our own leave message in the queue, telling Leave by
// sent (buffered) when the queue is done with it: sent its retransmit
// limit (or, never in practice, pruned).
type leaveBroadcast struct {
	broadcast
	sent chan struct{}
}

func (b *leaveBroadcast) Finished() {
	select {
	case b.sent <- struct{}{}:
	default:
	}
}

// Close shuts memberlist down (without Leave, other members detect the
// failure) and stops every goroutine, waiting for a running OnNetworks
// call to return. The FDB keeps what was installed. It is idempotent.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		a.lock()
		a.closed = true
		a.unlock()
		close(a.closing)
		a.wg.Wait()
		if e := a.ml.Shutdown(); e != nil {
			err = fmt.Errorf("gossip: shutdown: %w", e)
		}
	})
	return err
}

// Stats are the agent's counters and sizes.
type Stats struct {
	MessagesIn     uint64 // broadcasts received (bindings, leaves and networks)
	MessagesOut    uint64 // broadcasts sent (every retransmission)
	BytesIn        uint64 // bytes of the broadcasts received (payloads, without memberlist's framing)
	BytesOut       uint64 // bytes of the broadcasts sent
	StatesIn       uint64 // push/pull states received
	StatesOut      uint64 // push/pull states sent
	Malformed      uint64 // payloads dropped: bad encoding, unknown version, out of bounds
	Stale          uint64 // records and leave messages from an older process of their owner
	QueuePruned    uint64 // broadcasts pruned from a full queue (push/pull repairs)
	Queued         int    // broadcasts waiting in the queue
	LocalBindings  int    // bindings this node owns
	RemoteBindings int    // bindings of live members (installed in the FDB unless overridden)
	Parked         int    // bindings of members not alive, not installed
	Tombstones     int    // remembered withdrawals
	Duplicates     int    // MACs flagged by duplicate detection

	Networks          int    // live networks, as Networks lists them
	NetworkConflicts  int    // live networks left out, as Conflicts lists them
	NetworkTombstones int    // remembered network deletions
	NetworksDropped   uint64 // received records of new networks dropped: MaxNetworks held
}

// Stats returns the current counters.
func (a *Agent) Stats() Stats {
	s := Stats{
		MessagesIn: a.msgIn.Load(), MessagesOut: a.msgOut.Load(),
		BytesIn: a.bytesIn.Load(), BytesOut: a.bytesOut.Load(),
		StatesIn: a.statesIn.Load(), StatesOut: a.statesOut.Load(),
		Malformed: a.malformed.Load(), Stale: a.stale.Load(),
		QueuePruned: a.queuePruned.Load(), Queued: a.queue.NumQueued(),
		NetworksDropped: a.netDropped.Load(),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s.Duplicates = len(a.dups)
	nets, conflicts := a.netViewLocked()
	s.Networks, s.NetworkConflicts = len(nets), len(conflicts)
	for _, r := range a.nets {
		if r.Deleted {
			s.NetworkTombstones++
		}
	}
	for _, ks := range a.keys {
		s.Tombstones += len(ks.tombs)
		switch c := ks.cur; {
		case c == nil:
		case c.owner == a.cfg.Name:
			s.LocalBindings++
		case a.liveLocked(c.owner):
			s.RemoteBindings++
		default:
			s.Parked++
		}
	}
	return s
}

// MemberInfo describes one member, as `ovlsw peers` shows it.
type MemberInfo struct {
	Name     string
	Addr     netip.AddrPort // gossip address
	VTEP     netip.AddrPort
	VNIs     []uint32
	State    string // "alive", "suspect", "dead" or "left"
	Bindings int    // bindings it owns as far as this node knows
}

// Members lists this node and every member seen, including dead and left
// ones (kept for a day), sorted by name.
func (a *Agent) Members() []MemberInfo {
	suspect := map[string]bool{}
	for _, n := range a.ml.Members() {
		if n.State == memberlist.StateSuspect {
			suspect[n.Name] = true
		}
	}
	addr := a.Addr() // before a.mu: memberlist calls us with its node lock held
	a.mu.Lock()
	self := MemberInfo{
		Name: a.cfg.Name, Addr: addr, VTEP: a.cfg.VTEP, VNIs: slices.Clone(a.cfg.VNIs),
		State: stateAlive, Bindings: len(a.byOwner[a.cfg.Name]),
	}
	if a.closed {
		self.State = stateLeft
	}
	out := []MemberInfo{self}
	for _, m := range a.members {
		mi := MemberInfo{
			Name: m.name, Addr: m.addr, VTEP: m.meta.VTEP, VNIs: slices.Clone(m.meta.VNIs),
			State: m.state, Bindings: len(a.byOwner[m.name]),
		}
		if mi.State == stateAlive && suspect[m.name] {
			mi.State = stateSuspect
		}
		out = append(out, mi)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y MemberInfo) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// InstallKey adds key to the keyring, for decryption only. Rotation: install
// the new key on every member, then UseKey it on every member, then
// RemoveKey the old one on every member.
func (a *Agent) InstallKey(key []byte) error {
	if a.keyring == nil {
		return ErrNoEncryption
	}
	if err := a.keyring.AddKey(slices.Clone(key)); err != nil {
		return fmt.Errorf("gossip: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the one that encrypts (see InstallKey).
func (a *Agent) UseKey(key []byte) error {
	if a.keyring == nil {
		return ErrNoEncryption
	}
	if err := a.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	return nil
}

// RemoveKey drops a key that is not the primary (see InstallKey).
func (a *Agent) RemoveKey(key []byte) error {
	if a.keyring == nil {
		return ErrNoEncryption
	}
	if err := a.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("gossip: remove key: %w", err)
	}
	return nil
}

// ListKeys returns the installed keys, the primary (encrypting) one first;
// nil without encryption.
func (a *Agent) ListKeys() [][]byte {
	if a.keyring == nil {
		return nil
	}
	keys := a.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}

type noPeers struct{}

func (noPeers) SetPeers(uint32, []netip.AddrPort) {}
func (noPeers) SetMembers([]netip.AddrPort)       {}
