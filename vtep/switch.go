package vtep

// This file holds the Switch itself: its configuration, the port and peer
// registries (copy-on-write snapshots read by the data plane without locks),
// lifecycle and statistics. The frame paths are in send.go (TAP -> wire) and
// receive.go (wire -> TAP).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep/route"
)

// Config configures a Switch.
type Config struct {
	// Conn is the VXLAN UDP endpoint. Required; the switch closes it.
	Conn Conn
	// FDB is the forwarding table. Required; shared with the control plane.
	FDB *fdb.Table
	// Logger receives rare events (ports added, errors). Nil discards.
	Logger *slog.Logger
	// ExpireEvery is how often aged FDB entries are swept. Zero means the
	// default.
	ExpireEvery time.Duration
	// MaxDatagram is the size of each receive buffer.
	MaxDatagram int
	// StaticPeers are remote VTEPs configured by hand (head-end
	// replication list, like the kernel vxlan device's all-zeros fdb
	// entries): peers of every VNI the switch serves (Serve), besides the
	// member VTEPs the control plane gives per VNI (SetPeers).
	StaticPeers []netip.AddrPort
	// OnPortStopped, if set, is called from the port's reader goroutine
	// when its device fails (not on RemovePort or Close): a TAP whose
	// network namespace was deleted, say. The port stays registered until
	// the callee removes it; it must not call RemovePort synchronously
	// (RemovePort waits for that goroutine).
	OnPortStopped func(id int, err error)
}

// DefaultConfig returns defaults for the optional fields.
func DefaultConfig() Config {
	return Config{
		ExpireEvery: 5 * time.Second, // ageing is 300 s by default: 5 s of slack is noise
		MaxDatagram: 65535,           // the largest UDP payload: jumbo underlays, and UDP GRO buffers of many datagrams
	}
}

// PortConfig describes a local port.
type PortConfig struct {
	Name   string     // shown in status; defaults to Device.Name()
	VNI    uint32     // the VXLAN network the port belongs to
	Device tap.Device // the switch owns it from AddPort on and closes it
	MTU    int        // frames larger than this are dropped; 0 means Device.MTU()

	// Secure turns on port security: frames whose source MAC is not MAC,
	// and ARP or neighbour advertisements claiming an address not in IPs
	// (IPv6 link-local addresses excepted), are dropped and counted as
	// port_security. Attached containers have it; a host port, which may
	// route for others, does not.
	Secure bool
	MAC    fdb.MAC
	IPs    []netip.Addr

	// FloodRate limits the broadcast, multicast and unknown-unicast frames
	// the port may flood, in frames a second (bursts up to one second's
	// worth); past it they are dropped and counted as flood_rate. 0 means
	// no limit.
	FloodRate int
}

// port is a local port. Its fields are immutable after AddPort except the
// counters.
type port struct {
	id   int
	name string
	vni  uint32
	mtu  int
	dev  tap.Device
	lay  layout        // where frames sit in the device's buffers
	done chan struct{} // closed when every reader goroutine has exited

	readers sync.WaitGroup // one reader per queue

	secure bool // port security: only mac, and only ips in ARP/NA
	mac    fdb.MAC
	ips    []netip.Addr

	// Flood rate limit, shared by the port's readers under floodMu.
	floodMu     sync.Mutex
	floodRate   int
	floodTokens float64
	floodAt     int64 // unix nanoseconds of the last refill
	drops       *dropCounters

	traffic trafficCounters
	err     atomic.Pointer[error] // why the reader stopped, if it did
	icmp    route.Limiter         // ICMP errors sent to the port (routing.go)
}

type portSet struct {
	byID  map[int]*port
	byVNI map[uint32][]*port
	lay   layout // every port's
}

// Switch moves Ethernet frames between local TAP ports and remote VTEPs.
type Switch struct {
	cfg  Config
	conn Conn
	fdb  *fdb.Table
	log  *slog.Logger

	// mu serialises changes to the registries below; the data plane reads
	// them through the atomic pointers without locking.
	mu       sync.Mutex
	nextPort int
	ports    atomic.Pointer[portSet]
	peers    atomic.Pointer[peerSet]

	// What the peer set is made of (peers.go), guarded by mu.
	staticPeers []netip.AddrPort                // Config.StaticPeers
	served      []uint32                        // VNIs this node serves, sorted, as Serve set them
	gossipPeers map[uint32][]netip.AddrPort     // per-VNI member VTEPs, as SetPeers set them
	members     []netip.AddrPort                // alive members' VTEPs, as SetMembers set them
	counters    map[netip.Addr]*trafficCounters // per-peer counters, kept across changes
	groups      map[uint32]netip.AddrPort       // VNIs in multicast mode, as SetGroup set them (group.go)

	policies atomic.Pointer[map[uint32]FloodPolicy]  // copy-on-write under mu
	gateways atomic.Pointer[map[uint32][]netip.Addr] // copy-on-write under mu (gateway.go)
	resolver atomic.Pointer[resolverBox]             // the name service; nil for none (resolver.go)
	subnets  atomic.Pointer[map[uint32][]Subnet]     // copy-on-write under mu (routing.go); nil for none
	captures atomic.Pointer[captureSet]              // running captures (capturehook.go), nil if none; copy-on-write under mu
	sealing  atomic.Pointer[sealBox]                 // encrypted networks; nil for none (sealing.go)

	drops    dropCounters
	proxyCtr proxyCounters
	routeCtr routeCounters
	// lastWriteWarn is when a failed port write was last logged (unix
	// nanoseconds): at most one a writeWarnEvery.
	lastWriteWarn atomic.Int64

	unsubIPMove func() // the FDB's address-move subscription

	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

// New starts a switch with no ports. It takes ownership of cfg.Conn.
func New(cfg Config) (*Switch, error) {
	if cfg.Conn == nil || cfg.FDB == nil {
		return nil, errors.New("vtep: Config.Conn and Config.FDB are required")
	}
	for _, a := range cfg.StaticPeers {
		if !a.Addr().IsValid() {
			return nil, fmt.Errorf("vtep: static peer %v is not a valid address", a)
		}
	}
	def := DefaultConfig()
	if cfg.ExpireEvery <= 0 {
		cfg.ExpireEvery = def.ExpireEvery
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = def.MaxDatagram
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Switch{
		cfg: cfg, conn: cfg.Conn, fdb: cfg.FDB, log: cfg.Logger,
		nextPort:    1,
		staticPeers: slices.Clone(cfg.StaticPeers),
		gossipPeers: make(map[uint32][]netip.AddrPort),
		counters:    make(map[netip.Addr]*trafficCounters),
		closing:     make(chan struct{}),
	}
	s.ports.Store(&portSet{byID: map[int]*port{}, byVNI: map[uint32][]*port{}, lay: plainLayout})
	s.peers.Store(&peerSet{byAddr: map[netip.Addr]*peer{}, byVNI: map[uint32][]*peer{}})
	s.policies.Store(&map[uint32]FloodPolicy{})
	s.gateways.Store(&map[uint32][]netip.Addr{})
	readers := s.conn.Readers()
	s.wg.Add(len(readers) + 1)
	for _, r := range readers {
		go s.receiveLoop(r)
	}
	go s.expireLoop()
	s.unsubIPMove = cfg.FDB.SubscribeIPMove(s.ipMoved)
	return s, nil
}

// ipMoved is the FDB's word that an address now belongs to another MAC:
// the local ports of its VNI are told (AnnounceIP), so their neighbour
// caches follow at once.
func (s *Switch) ipMoved(k fdb.IPKey, from, to fdb.MAC) {
	if s.closed() {
		return
	}
	s.AnnounceIP(k.VNI, k.IP, to)
	s.log.Info("address moved", "vni", k.VNI, "ip", k.IP, "from", from, "to", to)
}

// AddPort attaches a TAP device to the switch and starts reading it. It
// returns the port ID used in FDB locations.
func (s *Switch) AddPort(pc PortConfig) (int, error) {
	if pc.Device == nil {
		return 0, errors.New("vtep: PortConfig.Device is required")
	}
	if pc.Secure && (pc.MAC.IsZero() || pc.MAC.IsMulticast()) {
		return 0, errors.New("vtep: a secure port needs its unicast MAC")
	}
	if err := fdb.CheckVNI(pc.VNI); err != nil {
		return 0, fmt.Errorf("vtep: add port: %w", err)
	}
	if pc.Name == "" {
		pc.Name = pc.Device.Name()
	}
	if pc.MTU <= 0 {
		pc.MTU = pc.Device.MTU()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return 0, errors.New("vtep: switch closed")
	default:
	}
	lay := plainLayout
	if pc.Device.Offloads().VnetHdr {
		lay = vnetLayout
	}
	old := s.ports.Load()
	if len(old.byID) > 0 && old.lay != lay {
		return 0, fmt.Errorf("vtep: port %s: virtio-net headers %v, other ports %v: every port of a switch must have the same offloads", pc.Name, lay.vnet, old.lay.vnet)
	}
	p := &port{id: s.nextPort, name: pc.Name, vni: pc.VNI, mtu: pc.MTU, dev: pc.Device, lay: lay, done: make(chan struct{}),
		secure: pc.Secure, mac: pc.MAC, ips: slices.Clone(pc.IPs), floodRate: pc.FloodRate, drops: &s.drops}
	s.nextPort++
	next := &portSet{byID: make(map[int]*port, len(old.byID)+1), byVNI: make(map[uint32][]*port, len(old.byVNI)+1), lay: lay}
	for id, q := range old.byID {
		next.byID[id] = q
	}
	for vni, qs := range old.byVNI {
		next.byVNI[vni] = qs
	}
	next.byID[p.id] = p
	next.byVNI[p.vni] = append(slices.Clip(next.byVNI[p.vni]), p)
	s.ports.Store(next)
	queues := []tap.Device{p.dev}
	if mq, ok := p.dev.(tap.MultiQueue); ok && len(mq.Queues()) > 1 {
		queues = mq.Queues()
	}
	s.wg.Add(len(queues) + 1)
	p.readers.Add(len(queues))
	for _, q := range queues {
		go s.sendLoop(p, q)
	}
	go func() {
		defer s.wg.Done()
		p.readers.Wait()
		close(p.done)
	}()
	s.log.Debug("port added", "port", p.name, "id", p.id, "vni", p.vni, "mtu", p.mtu, "queues", len(queues))
	return p.id, nil
}

// RemovePort detaches a port, closes its device, waits for its reader to
// stop and withdraws its MACs from the FDB.
func (s *Switch) RemovePort(id int) error {
	s.mu.Lock()
	old := s.ports.Load()
	p, ok := old.byID[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("vtep: no port %d", id)
	}
	next := &portSet{byID: make(map[int]*port, len(old.byID)), byVNI: make(map[uint32][]*port, len(old.byVNI)), lay: old.lay}
	for qid, q := range old.byID {
		if qid != id {
			next.byID[qid] = q
			next.byVNI[q.vni] = append(next.byVNI[q.vni], q)
		}
	}
	s.ports.Store(next)
	s.mu.Unlock()

	err := p.dev.Close()
	<-p.done
	s.fdb.DeleteFunc(func(e fdb.Entry) bool { return e.Port == id })
	if rb := s.resolver.Load(); rb != nil {
		rb.r.ForgetPort(id)
	}
	s.log.Debug("port removed", "port", p.name, "id", id)
	return err
}

// Close stops every goroutine, closes every port's device and the UDP
// endpoint. It is idempotent.
func (s *Switch) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.unsubIPMove()
		s.mu.Lock()
		close(s.closing)
		ports := s.ports.Load()
		s.mu.Unlock()
		err = s.conn.Close()
		// Concurrently: the kernel unregisters each TAP with a grace
		// period; one after another that is ~16 ms a port (16 s for
		// 1000), at once it is 0.1 s for 200.
		errs := make([]error, 0, len(ports.byID))
		var mu sync.Mutex
		var closers sync.WaitGroup
		for _, p := range ports.byID {
			closers.Go(func() {
				if cerr := p.dev.Close(); cerr != nil {
					mu.Lock()
					errs = append(errs, cerr)
					mu.Unlock()
				}
			})
		}
		closers.Wait()
		if err == nil && len(errs) > 0 {
			err = errs[0]
		}
		s.wg.Wait()
	})
	return err
}

func (s *Switch) expireLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpireEvery)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.fdb.Expire()
		}
	}
}

// writeWarnEvery bounds how often failed port writes are logged: a port
// whose writes fail fails them for every frame.
const writeWarnEvery = 10 * time.Second

// warnWrite logs a failed write to port p, at most once a writeWarnEvery
// for the whole switch; the frames are counted as write_error either way.
// EIO, the link being down (a port being attached, before its TAP is up
// in the namespace, or one its container set down), is only a debug
// message.
func (s *Switch) warnWrite(p *port, err error) {
	now := time.Now().UnixNano()
	last := s.lastWriteWarn.Load()
	if now-last < int64(writeWarnEvery) || !s.lastWriteWarn.CompareAndSwap(last, now) {
		return
	}
	level := slog.LevelWarn
	if errors.Is(err, syscall.EIO) {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "frames not written to a port (counted as write_error; next such message in 10 s at the earliest)", "port", p.name, "err", err)
}

// closed reports whether Close has begun.
func (s *Switch) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// storeVNI replaces vni's value in the copy-on-write map m with v, or
// removes it (del): the data plane reads the map through m without
// locking, so a change builds a new map. Called with s.mu held.
func storeVNI[V any](m *atomic.Pointer[map[uint32]V], vni uint32, v V, del bool) {
	var old map[uint32]V
	if p := m.Load(); p != nil {
		old = *p
	}
	next := make(map[uint32]V, len(old)+1)
	maps.Copy(next, old)
	if del {
		delete(next, vni)
	} else {
		next[vni] = v
	}
	m.Store(&next)
}
