// Package daemon is `ovlsw up`: it checks the host, opens the VXLAN socket,
// creates the TAP port, starts the switch and serves the control API, and
// undoes all of it on Close. cmd/ovlsw only turns flags into a Config.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap"
	"github.com/ovlsw/ovlsw/vtep"
)

// Config is everything `ovlsw up` needs.
type Config struct {
	Name    string           // node name; defaults to the host name
	Bind    netip.Addr       // underlay address for VXLAN; required, must be on this host
	Port    uint16           // VXLAN UDP port
	VNI     uint32           // the default network's VNI; 0: no default network and no host port
	Subnet  netip.Prefix     // the default network's subnet, for address allocation; optional
	Gateway netip.Addr       // the default network's gateway; optional
	Peers   []netip.AddrPort // static remote VTEPs (head-end replication list)
	TAP     string           // host TAP port name; defaults to ovl<VNI>
	MTU     int              // overlay MTU; 0 means the bind interface's MTU minus 50
	Address []netip.Prefix   // addresses for the host TAP port, if any
	Ageing  time.Duration    // FDB ageing for local and learned entries
	Flood   string           // default flood policy of networks (vtep.ParseFloodPolicy)
	// MaxMACsPerPort and MaxMACsPerVNI bound data-plane learning
	// (fdb.Config.MaxPerPort, MaxPerVNI); 0 means no limit.
	MaxMACsPerPort, MaxMACsPerVNI int
	// FloodRate limits each port's broadcast, multicast and unknown-unicast
	// frames a second (vtep.PortConfig.FloodRate); 0 means no limit.
	FloodRate int
	// Offload turns on the fast path's offloads where the kernel has them:
	// virtio-net headers with TSO and checksum offload on the TAPs, UDP
	// GSO and GRO and a pool of source ports on the VXLAN socket.
	Offload bool
	Socket  string // control socket path
	// State is the state file, from which a restarted node takes back the
	// containers it had attached (restart.go); empty means
	// DefaultStatePath(Socket).
	State string

	Join          []string      // gossip members to join; none founds a cluster
	GossipPort    int           // gossip TCP and UDP port
	GossipKeyFile string        // base64 32-byte key encrypting gossip; empty: plain
	ClaimSettle   time.Duration // how long an allocated address's claim waits for conflicts
	Logger        *slog.Logger  // nil discards
}

// DefaultConfig returns the defaults `ovlsw up` starts from.
func DefaultConfig() Config {
	return Config{
		Port:           vtep.DefaultPort,      // IANA VXLAN port (the Linux driver needs `dstport 4789` to match)
		Ageing:         300 * time.Second,     // as the Linux bridge
		MaxMACsPerPort: 4096,                  // a container has one MAC; a host port bridging a LAN segment may have many
		MaxMACsPerVNI:  65536,                 // ~10 MB of FDB per VNI at most
		Socket:         control.DefaultSocket, // one daemon per host; namespaces pass their own
		GossipPort:     7946,                  // memberlist's and Serf's usual port
		ClaimSettle:    time.Second,           // a few gossip rounds (200 ms each) on a LAN
		Offload:        true,                  // each offload is probed; off only to compare
	}
}

// Daemon is a running node.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	fdb     *fdb.Table
	sw      *vtep.Switch
	ctl     *control.Server
	vtep    netip.AddrPort
	mtu     int // default overlay MTU
	started time.Time

	// mu guards the networks, the endpoints and the state file; attach and
	// detach hold it throughout, so they are serialised.
	mu          sync.Mutex
	networks    map[string]*control.Network
	endpoints   map[int]*control.Endpoint // by switch port ID
	epPorts     map[int]epPort            // the endpoints' TAPs and networks, by switch port ID
	pending     map[fdb.IPKey]struct{}    // addresses claimed by attaches in progress
	hostPort    int                       // port ID of the host TAP, 0 if none
	stateLoaded bool                      // readopt ran: the state file is this process's

	// The namespace watcher (nswatch.go): its stop signal, its exit.
	nsStop chan struct{}
	nsDone sync.WaitGroup

	// The VNI advertiser (cluster.go): requests, its stop signal, its exit.
	vniAdvert  chan struct{}
	advertStop chan struct{}
	advertDone sync.WaitGroup

	swReady atomic.Pointer[vtep.Switch]  // d.sw, for callbacks that may run before New returns
	agent   atomic.Pointer[gossip.Agent] // nil until started

	// peerMu guards gossipPeers, the member VTEPs gossip reported per VNI.
	peerMu      sync.Mutex
	gossipPeers map[uint32][]netip.AddrPort
	vniSet      atomic.Pointer[[]uint32] // VNIs of the networks, sorted
}

// ipMoved is the FDB's word that an address now belongs to another MAC:
// tell the local ports, so their neighbour caches follow at once.
func (d *Daemon) ipMoved(k fdb.IPKey, from, to fdb.MAC) {
	if sw := d.swReady.Load(); sw != nil {
		sw.AnnounceIP(k.VNI, k.IP, to)
		d.log.Info("address moved", "vni", k.VNI, "ip", k.IP, "from", from, "to", to)
	}
}

// Validate checks cfg without touching the host.
func (c *Config) Validate() error {
	if !c.Bind.IsValid() {
		return errors.New("--bind is required: the underlay address VXLAN is sent from (one of this host's addresses)")
	}
	if c.Bind.IsUnspecified() || c.Bind.IsMulticast() {
		return fmt.Errorf("--bind %v: give a unicast address of this host", c.Bind)
	}
	if c.VNI > vtep.MaxVNI {
		return fmt.Errorf("--vni %d out of range: a VXLAN network identifier is 1..%d", c.VNI, vtep.MaxVNI)
	}
	if c.VNI == 0 && (c.Subnet.IsValid() || len(c.Address) > 0 || c.TAP != "") {
		return errors.New("--subnet, --address and --tap describe the default network: give its --vni too")
	}
	if c.Subnet.IsValid() && c.Subnet != c.Subnet.Masked() {
		return fmt.Errorf("--subnet %v has host bits set: did you mean %v?", c.Subnet, c.Subnet.Masked())
	}
	if c.Gateway.IsValid() && !c.Subnet.Contains(c.Gateway) {
		return fmt.Errorf("--gateway %v is not in --subnet %v", c.Gateway, c.Subnet)
	}
	if c.Port == 0 {
		return errors.New("--port 0: give the VXLAN UDP port (default 4789)")
	}
	for _, p := range c.Peers {
		if p.Addr() == c.Bind {
			return fmt.Errorf("--peer %v is this node's own --bind address", p)
		}
		if p.Addr().Is4() != c.Bind.Is4() {
			return fmt.Errorf("--peer %v and --bind %v are of different IP families", p, c.Bind)
		}
	}
	if c.TAP == "" && c.VNI != 0 {
		c.TAP = fmt.Sprintf("ovl%d", c.VNI)
	}
	if len(c.TAP) > 15 {
		return fmt.Errorf("--tap %q is too long: Linux interface names have at most 15 characters", c.TAP)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535-vtep.Overhead) {
		return fmt.Errorf("--mtu %d out of range 576..%d", c.MTU, 65535-vtep.Overhead)
	}
	if c.Ageing < time.Second {
		return fmt.Errorf("--ageing %v is too short: give at least 1s", c.Ageing)
	}
	if c.MaxMACsPerPort < 0 || c.MaxMACsPerVNI < 0 || c.FloodRate < 0 {
		return errors.New("--max-macs-per-port, --max-macs-per-vni and --flood-rate must be 0 (no limit) or more")
	}
	if _, err := vtep.ParseFloodPolicy(c.Flood); err != nil {
		return fmt.Errorf("--flood: %v", err)
	}
	if c.Socket == "" {
		return errors.New("--socket must not be empty")
	}
	if c.State == "" {
		c.State = DefaultStatePath(c.Socket)
	}
	return nil
}

// New checks the host and starts a node. If any step fails, everything built
// so far is removed before the error is returned.
func New(cfg Config) (d *Daemon, reterr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("ovlsw up must run as root (it creates TAP devices and sets up links): run it with sudo")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, errors.New("/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, pass the device in (--device /dev/net/tun)")
	}
	var key []byte
	if cfg.GossipKeyFile != "" {
		var err error
		if key, err = readKeyFile(cfg.GossipKeyFile); err != nil {
			return nil, err
		}
	}
	mtu, ifname, err := interfaceMTU(cfg.Bind)
	if err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = mtu - vtep.Overhead
	} else if cfg.MTU > mtu-vtep.Overhead {
		cfg.Logger.Warn("TAP MTU exceeds what the underlay carries without fragmenting; larger frames will be lost",
			"mtu", cfg.MTU, "underlay", ifname, "underlay_mtu", mtu)
	}

	d = &Daemon{
		cfg: cfg, log: cfg.Logger, started: time.Now(), vtep: netip.AddrPortFrom(cfg.Bind, cfg.Port), mtu: cfg.MTU,
		networks: make(map[string]*control.Network), endpoints: make(map[int]*control.Endpoint),
		epPorts:     make(map[int]epPort),
		vniAdvert:   make(chan struct{}, 1),
		pending:     make(map[fdb.IPKey]struct{}),
		gossipPeers: make(map[uint32][]netip.AddrPort),
	}
	d.vniSet.Store(&[]uint32{})
	defer func() {
		if reterr != nil {
			// Endpoints taken back from the state file stay for the next
			// try, as after a crash.
			d.mu.Lock()
			keep := len(d.epPorts) > 0
			d.mu.Unlock()
			d.close(keep)
			d = nil
		}
	}()

	if d.ctl, err = control.Listen(cfg.Socket); err != nil {
		return d, err
	}
	connCfg := vtep.DefaultConnConfig()
	connCfg.Addr = d.vtep
	if !cfg.Offload {
		connCfg.GSO, connCfg.GRO, connCfg.SourcePorts, connCfg.Readers = false, false, 0, 1
	}
	conn, err := vtep.Listen(connCfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return d, fmt.Errorf("UDP port %d on %v is already in use (another ovlsw, or a kernel vxlan device with that dstport): stop it or pass --port", cfg.Port, cfg.Bind)
		}
		return d, err
	}
	if rel := conn.Offloads().GSOKernelBug; rel != "" {
		d.log.Warn("UDP GSO left off: this kernel corrupts GSO output whose segments are all one size (kernels 7.0 to 7.1.4; 7.1.5 fixes it)", "kernel", rel)
	}
	d.fdb = fdb.New(fdb.Config{Ageing: cfg.Ageing, OnIPMove: d.ipMoved, OnChange: d.fdbChanged,
		MaxPerPort: cfg.MaxMACsPerPort, MaxPerVNI: cfg.MaxMACsPerVNI})
	d.sw, err = vtep.New(vtep.Config{Conn: conn, FDB: d.fdb, Logger: cfg.Logger, OnPortStopped: d.portStopped})
	if err != nil {
		conn.Close()
		return d, err
	}
	d.swReady.Store(d.sw)
	readopted := d.readopt() // before gossip: see restart.go
	if err := d.startGossip(key); err != nil {
		return d, err
	}
	if cfg.VNI != 0 {
		if err := d.createNetwork(control.Network{Name: DefaultNetwork, VNI: cfg.VNI, Subnet: cfg.Subnet, Gateway: cfg.Gateway}); err != nil {
			return d, err
		}
		if err := d.addHostPort(); err != nil {
			return d, err
		}
	}
	d.readoptSettle(readopted)
	d.nsStop = make(chan struct{})
	d.nsDone.Add(1)
	go d.watchNamespaces(d.nsStop)
	d.ctl.Serve(d.handler(), d.log)
	d.log.Info("ovlsw up", "node", cfg.Name, "vtep", d.vtep, "vni", cfg.VNI, "tap", cfg.TAP,
		"mtu", cfg.MTU, "peers", len(cfg.Peers), "socket", cfg.Socket)
	return d, nil
}

// addHostPort creates the host's own TAP port on the default network.
func (d *Daemon) addHostPort() error {
	mac, err := d.endpointMAC(d.cfg.VNI, "")
	if err != nil {
		return err
	}
	dev, err := tap.Create(tap.Config{Name: d.cfg.TAP, MTU: d.mtu, MAC: mac, Addresses: d.cfg.Address, Up: true, Offload: d.cfg.Offload, Queues: d.tapQueues()})
	if err != nil {
		if errors.Is(err, tap.ErrNameInUse) {
			return fmt.Errorf("a link named %s already exists: remove it (ip link del %s) or pass another --tap", d.cfg.TAP, d.cfg.TAP)
		}
		return fmt.Errorf("create TAP port %s: %w", d.cfg.TAP, err)
	}
	id, err := d.sw.AddPort(vtep.PortConfig{VNI: d.cfg.VNI, Device: dev, MTU: d.mtu, FloodRate: d.cfg.FloodRate})
	if err != nil {
		dev.Close()
		return err
	}
	d.hostPort = id
	// Known from the start, so it is announced (and proxied) before any
	// traffic; pinned, so an idle host port is not aged out.
	var ips []netip.Addr
	for _, a := range d.cfg.Address {
		ips = append(ips, a.Addr())
	}
	d.fdb.Set(fdb.Entry{Key: fdb.Key{VNI: d.cfg.VNI, MAC: mac}, Location: fdb.Location{Port: id},
		Origin: fdb.OriginLocal, IPs: ips, Pinned: true})
	return nil
}

// Close leaves the cluster (withdrawing this node's bindings everywhere),
// stops the switch, removes every TAP port (the endpoints' in their
// namespaces too), the state file and the control socket. It is
// idempotent.
func (d *Daemon) Close() error { return d.close(false) }

// CloseForRestart stops the node so that the next New with the same state
// file takes its endpoints back (restart.go): like Close, but it does not
// leave the cluster, and it leaves the endpoints' TAPs in their namespaces,
// persistent, and the state file. The host TAP is removed.
func (d *Daemon) CloseForRestart() error { return d.close(true) }

func (d *Daemon) close(keepPorts bool) error {
	var errs []error
	if d.nsStop != nil {
		close(d.nsStop)
		d.nsDone.Wait()
		d.nsStop = nil
	}
	if a := d.agent.Swap(nil); a != nil {
		close(d.advertStop)
		if !keepPorts {
			if err := a.Leave(2 * time.Second); err != nil {
				d.log.Warn("leave", "err", err)
			}
		}
		errs = append(errs, a.Close())
		d.advertDone.Wait()
	}
	if d.ctl != nil {
		errs = append(errs, d.ctl.Close())
		d.ctl = nil
	}
	if d.sw != nil {
		if keepPorts {
			d.keepPorts()
		} else {
			d.releasePorts()
		}
		errs = append(errs, d.sw.Close())
		d.sw = nil
	}
	return errors.Join(errs...)
}

// interfaceMTU finds the interface holding addr and returns its MTU.
func interfaceMTU(addr netip.Addr) (int, string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
					return ifc.MTU, ifc.Name, nil
				}
			}
		}
	}
	return 0, "", fmt.Errorf("--bind %v is not an address of this host: pick one from `ip -brief address`", addr)
}
