// Package daemon is `ovlsw up`: it checks the host, opens the VXLAN socket,
// creates the TAP port, starts the switch and serves the control API, and
// undoes all of it on Close. cmd/ovlsw only turns flags into a Config.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/gossip/secret"
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/seal"
)

// Config is everything `ovlsw up` needs.
type Config struct {
	Name    string           // node name; defaults to the host name
	Bind    netip.Addr       // underlay address gossip binds (and VXLAN's unless DataAddr); required, must be on this host
	Port    uint16           // VXLAN UDP port
	VNI     uint32           // the default network's VNI; 0: no default network and no host port
	Subnet  netip.Prefix     // the default network's subnet, for address allocation; optional
	Gateway netip.Addr       // the default network's gateway; optional
	Peers   []netip.AddrPort // static remote VTEPs (head-end replication list)
	TAP     string           // host TAP port name; defaults to ovl<VNI>
	MTU     int              // overlay MTU; 0 means the data address's interface MTU minus the VXLAN overhead (vtep.OverheadFor)
	Address []netip.Prefix   // addresses for the host TAP port, if any
	Ageing  time.Duration    // FDB ageing for local and learned entries
	Flood   string           // default flood policy of networks (vtep.ParseFloodPolicy)
	// MaxMACsPerPort and MaxMACsPerVNI bound data-plane learning
	// (fdb.Config.MaxPerPort, MaxPerVNI); 0 means no limit.
	MaxMACsPerPort, MaxMACsPerVNI int
	// FloodRate limits each port's broadcast, multicast and unknown-unicast
	// frames a second (vtep.PortConfig.FloodRate); 0 means no limit.
	FloodRate int
	// Group puts the default network in multicast mode (group.go): its
	// floods go to this underlay multicast group, joined on GroupDev
	// (empty: the interface holding the data address) and sent with TTL GroupTTL (0:
	// 1), and its datagrams are accepted from any sender. Zero: head-end
	// replication.
	Group    netip.Addr
	GroupDev string
	GroupTTL int
	// Offload turns on the fast path's offloads where the kernel has them:
	// virtio-net headers with TSO and checksum offload on the TAPs, UDP
	// GSO and GRO and a pool of source ports on the VXLAN socket.
	Offload bool
	Socket  string // control socket path
	// State is the state file, from which a restarted node takes back the
	// containers it had attached (restart.go); empty means
	// DefaultStatePath(Socket).
	State string

	// DataAddr is the underlay address VXLAN is sent from and received on,
	// announced in gossip as this node's VTEP; invalid means Bind. It
	// must be on this host.
	DataAddr netip.Addr
	// AdvertiseAddr is the gossip address other members are told to reach
	// this node at (behind NAT, or on a host with several addresses);
	// invalid means Bind, port 0 the gossip port.
	AdvertiseAddr netip.AddrPort

	Join          []string      // gossip members to join; none founds a cluster
	GossipPort    int           // gossip TCP and UDP port
	GossipKeyFile string        // base64 32-byte key: the cluster secret (with Insecure: a static gossip key)
	ClaimSettle   time.Duration // how long an allocated address's claim waits for conflicts
	// Token is a join token from a member (`ovlsw token`), with which the
	// node obtains the cluster secret from the member it joins. TokenFile
	// names a file holding one instead.
	Token, TokenFile string
	// Insecure keeps gossip open (or on the static GossipKeyFile key): no
	// cluster secret, no join token, no key rotation. For labs only.
	Insecure bool
	// KeyRotation is how long each gossip key is primary before the next,
	// the same on every member (gossip/secret.Schedule).
	KeyRotation time.Duration
	// SecretFile and JoinKeyFile keep the cluster secret and this node's
	// join key, mode 0600; empty means beside the state file.
	SecretFile, JoinKeyFile string
	// Encrypted makes the default network (VNI) an encrypted one: every
	// datagram of it sealed between nodes (encryption.go).
	Encrypted bool
	// RekeyInterval is how long each data key of encrypted networks is
	// used before the next (and, by volume, every 2^28 datagrams), the
	// same on every member; 0 means seal.DefaultInterval.
	RekeyInterval time.Duration
	// NetworkKeyFile holds a base64 32-byte key every node shares, which
	// seals encrypted networks instead of the members' key pairs (static
	// peers without a common cluster).
	NetworkKeyFile string
	// DataKeyFile keeps this node's X25519 private key for encrypted
	// networks, mode 0600; empty means beside the state file.
	DataKeyFile string
	// DNSUpstreams are the resolvers the name service forwards outside
	// names to; empty means those of ResolvConf, unless NoDNSUpstream,
	// which answers outside names REFUSED.
	DNSUpstreams  []netip.AddrPort
	NoDNSUpstream bool
	// ResolvConf is the host's resolver configuration, read for
	// upstreams; empty means /etc/resolv.conf.
	ResolvConf string
	// DNSTTL is the TTL of the name service's answers: 0 keeps resolvers
	// from caching a name that may move.
	DNSTTL uint32
	// DNSRate limits the DNS queries each port may send, a second (bursts
	// of a fifth of that); past it they are dropped and counted. 0: no
	// limit.
	DNSRate int
	// NetnsEtc is where attach writes a named namespace's resolv.conf,
	// which `ip netns exec` mounts over /etc/resolv.conf; empty means
	// /etc/netns.
	NetnsEtc string
	// Out receives what the node prints once for its operator: the join
	// token of a cluster it founds. Nil discards.
	Out    io.Writer
	Logger *slog.Logger // nil discards
	// LogLevel is the level of Logger's handler, and LevelVar, if the
	// handler takes its level from one, lets Reload change it; nil: the
	// level is fixed.
	LogLevel slog.Level
	LevelVar *slog.LevelVar

	// Metrics is the HOST:PORT /metrics is served on in the Prometheus
	// text format (observe.go); empty: no metrics. A non-loopback
	// address shows the node's counters to whoever reaches it.
	Metrics string
	// Version labels ovlsw_build_info.
	Version string
}

// DefaultConfig returns the defaults `ovlsw up` starts from.
func DefaultConfig() Config {
	return Config{
		Port:           vtep.DefaultPort,       // IANA VXLAN port (the Linux driver needs `dstport 4789` to match)
		Ageing:         300 * time.Second,      // as the Linux bridge
		MaxMACsPerPort: 4096,                   // a container has one MAC; a host port bridging a LAN segment may have many
		MaxMACsPerVNI:  65536,                  // ~10 MB of FDB per VNI at most
		Socket:         control.DefaultSocket,  // one daemon per host; namespaces pass their own
		GossipPort:     7946,                   // memberlist's and Serf's usual port
		ClaimSettle:    time.Second,            // a few gossip rounds (200 ms each) on a LAN
		Offload:        true,                   // each offload is probed; off only to compare
		KeyRotation:    secret.DefaultInterval, // as Docker swarm rotates its gossip key
		RekeyInterval:  seal.DefaultInterval,   // data keys of encrypted networks: hourly, and every 2^28 datagrams
		DNSRate:        1000,                   // far above what a container's resolver asks; a runaway loop cannot starve the others
	}
}

// Daemon is a running node. It wires the owners of the node's state
// together and serves the control API; each owner has one concern and its
// own lock: the network registry (network.go), the endpoints (endpoint.go,
// restart.go, nswatch.go), address allocation (ipam.go) and the cluster
// glue (cluster.go). A new feature adds an owner beside these.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	vtep    netip.AddrPort
	mtu     int    // default overlay MTU
	mcDev   string // the multicast interface: --group-dev, else the data address's (group.go)

	fdb     *fdb.Table
	sw      *vtep.Switch
	nets    *networks
	alloc   *allocator
	eps     *endpoints
	names   *names                  // the name service; set once in wire
	enc     *encryption             // encrypted networks; set once in wire
	host    *hostPort               // nil without a default network; set once in New
	trust   *trust                  // the cluster secret and join key; set once in New
	cluster atomic.Pointer[cluster] // nil until gossip runs
	ctl     *control.Server
	conf    *reloader // the configuration as given, and Reload (reload.go)
	obs     observer  // metrics (observe.go)
}

// ConfigError is a Config value that cannot be used. Its message names the
// value ("ageing 1ms is too short"), not a command-line flag: cmd/ovlsw
// turns the names into its flags.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{msg: fmt.Sprintf(format, args...)}
}

// Validate checks cfg without touching the host.
func (c *Config) Validate() error {
	if c.DNSRate < 0 {
		return configErrorf("DNS rate %d: give 0 (no limit) or more", c.DNSRate)
	}
	if c.NoDNSUpstream && len(c.DNSUpstreams) > 0 {
		return configErrorf("DNS upstream none and DNS upstreams %v: give one or the other", c.DNSUpstreams)
	}
	for _, u := range c.DNSUpstreams {
		if !u.Addr().IsValid() || u.Addr().IsUnspecified() || u.Addr().IsMulticast() || u.Port() == 0 {
			return configErrorf("DNS upstream %v: give a unicast resolver address", u)
		}
	}
	if !c.Bind.IsValid() {
		return configErrorf("bind address is required: the underlay address VXLAN is sent from (one of this host's addresses)")
	}
	if c.Bind.IsUnspecified() || c.Bind.IsMulticast() {
		return configErrorf("bind address %v: give a unicast address of this host", c.Bind)
	}
	if c.DataAddr.IsValid() && (c.DataAddr.IsUnspecified() || c.DataAddr.IsMulticast()) {
		return configErrorf("data address %v: give a unicast address of this host", c.DataAddr)
	}
	if a := c.AdvertiseAddr; a.IsValid() {
		if a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
			return configErrorf("advertise address %v: give the unicast address other members reach this node's gossip at", a.Addr())
		}
		if a.Addr().Unmap().Is4() != c.Bind.Unmap().Is4() {
			return configErrorf("advertise address %v and bind address %v are of different IP families: gossip is reached at one and sent from the other", a, c.Bind)
		}
	}
	data := c.dataAddr()
	if c.VNI != 0 {
		if err := fdb.CheckVNI(c.VNI); err != nil {
			return configErrorf("%v", err)
		}
	}
	if c.VNI == 0 && (c.Subnet.IsValid() || len(c.Address) > 0 || c.TAP != "") {
		return configErrorf("subnet, host port addresses and TAP name describe the default network: give its VNI too")
	}
	if err := gossip.CheckSubnet(c.Subnet); err != nil {
		return configErrorf("%v", err)
	}
	if err := gossip.CheckGateway(c.Gateway, c.Subnet); err != nil {
		return configErrorf("%v", err)
	}
	if c.Port == 0 {
		return configErrorf("VXLAN port 0: give the VXLAN UDP port (default 4789)")
	}
	for _, p := range c.Peers {
		if p.Addr() == data {
			return configErrorf("peer %v is this node's own %s", p, c.dataAddrName())
		}
		if p.Addr().Is4() != data.Is4() {
			return configErrorf("peer %v and %s %v are of different IP families", p, c.dataAddrName(), data)
		}
	}
	if err := c.validateGroup(); err != nil {
		return err
	}
	if c.TAP == "" && c.VNI != 0 {
		c.TAP = fmt.Sprintf("ovl%d", c.VNI)
	}
	if len(c.TAP) > 15 {
		return configErrorf("TAP name %q is too long: Linux interface names have at most 15 characters", c.TAP)
	}
	if c.MTU != 0 {
		if err := gossip.CheckMTU(c.MTU, 65535-vtep.OverheadFor(data)); err != nil {
			return configErrorf("%v", err)
		}
	}
	if c.Ageing < time.Second {
		return configErrorf("ageing %v is too short: give at least 1s", c.Ageing)
	}
	switch {
	case c.MaxMACsPerPort < 0:
		return configErrorf("MAC limit per port must be 0 (no limit) or more")
	case c.MaxMACsPerVNI < 0:
		return configErrorf("MAC limit per VNI must be 0 (no limit) or more")
	case c.FloodRate < 0:
		return configErrorf("flood rate must be 0 (no limit) or more")
	}
	if _, err := vtep.ParseFloodPolicy(c.Flood); err != nil {
		return configErrorf("%v", err)
	}
	if c.Socket == "" {
		return configErrorf("control socket must not be empty")
	}
	if c.State == "" {
		c.State = DefaultStatePath(c.Socket)
	}
	if c.SecretFile == "" {
		c.SecretFile = DefaultSecretPath(c.State)
	}
	if c.JoinKeyFile == "" {
		c.JoinKeyFile = DefaultJoinKeyPath(c.State)
	}
	if err := (secret.Schedule{Interval: c.KeyRotation}).Validate(); err != nil {
		return configErrorf("%v", err)
	}
	if err := checkMetricsAddr(c.Metrics); err != nil {
		return err
	}
	if c.DataKeyFile == "" {
		c.DataKeyFile = DefaultDataKeyPath(c.State)
	}
	if c.RekeyInterval != 0 && (c.RekeyInterval < seal.MinInterval || c.RekeyInterval%time.Second != 0) {
		return configErrorf("rekey interval %v: give whole seconds, at least %v", c.RekeyInterval, seal.MinInterval)
	}
	if c.Encrypted && c.VNI == 0 {
		return configErrorf("encrypted mode describes the default network: give its VNI too")
	}
	if c.Encrypted && c.Group.IsValid() {
		return configErrorf("encrypted mode and multicast group: an encrypted network cannot use a group")
	}
	if c.Token != "" && c.TokenFile != "" {
		return configErrorf("join token and join token file: give one")
	}
	if c.Insecure && (c.Token != "" || c.TokenFile != "") {
		return configErrorf("insecure mode has no join token: drop one of them")
	}
	return nil
}

// dataAddr is the address VXLAN uses: DataAddr, or Bind.
func (c *Config) dataAddr() netip.Addr {
	if c.DataAddr.IsValid() {
		return c.DataAddr
	}
	return c.Bind
}

// dataAddrName names the value dataAddr comes from, for errors.
func (c *Config) dataAddrName() string {
	if c.DataAddr.IsValid() {
		return "data address"
	}
	return "bind address"
}

// New checks the host and starts a node. If any step fails, everything built
// so far is removed before the error is returned.
func New(cfg Config) (d *Daemon, reterr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	given := cfg // before the defaults below: what a reload compares with
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
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, configErrorf("join token file: %v", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if cfg.KeyRotation < secret.RecommendedMinInterval && !cfg.Insecure {
		cfg.Logger.Warn("key rotation interval below ten minutes: clocks of the members must agree within it", "interval", cfg.KeyRotation)
	}
	if _, _, err := interfaceMTU(cfg.Bind, "bind address"); err != nil {
		return nil, err
	}
	data := cfg.dataAddr()
	mtu, ifname, err := interfaceMTU(data, cfg.dataAddrName())
	if err != nil {
		return nil, err
	}
	if overhead := vtep.OverheadFor(data); cfg.MTU == 0 {
		cfg.MTU = mtu - overhead
	} else if cfg.MTU > mtu-overhead {
		cfg.Logger.Warn("TAP MTU exceeds what the underlay carries without fragmenting; larger frames will be lost",
			"mtu", cfg.MTU, "underlay", ifname, "underlay_mtu", mtu, "vxlan_overhead", overhead)
	}

	d = &Daemon{cfg: cfg, log: cfg.Logger, started: time.Now(), vtep: netip.AddrPortFrom(data, cfg.Port), mtu: cfg.MTU}
	d.conf = newReloader(given)
	defer func() {
		if reterr != nil {
			// Endpoints taken back from the state file stay for the next
			// try, as after a crash.
			d.close(d.eps != nil && d.eps.count() > 0)
			d = nil
		}
	}()

	if d.ctl, err = control.Listen(cfg.Socket); err != nil {
		return d, err
	}
	gossipPort := cfg.GossipPort
	if gossipPort == 0 {
		gossipPort = gossip.DefaultConfig().GossipPort
	}
	if d.trust, err = loadTrust(context.Background(), trustConfig{SecretFile: cfg.SecretFile, JoinKeyFile: cfg.JoinKeyFile,
		Insecure: cfg.Insecure, Key: key, Token: cfg.Token, Join: cfg.Join, Self: netip.AddrPortFrom(cfg.Bind, uint16(gossipPort)),
		Out: cfg.Out, Log: d.log}); err != nil {
		return d, err
	}
	connCfg := vtep.DefaultConnConfig()
	connCfg.Addr = d.vtep
	if !cfg.Offload {
		connCfg.GSO, connCfg.GRO, connCfg.SourcePorts, connCfg.Readers = false, false, 0, 1
	}
	d.mcDev = cmp.Or(cfg.GroupDev, ifname)
	if err := cfg.groupConn(ifname, &connCfg); err != nil {
		return d, err
	}
	conn, err := vtep.Listen(connCfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return d, fmt.Errorf("UDP port %d on %v is already in use (another ovlsw, or a kernel vxlan device with that dstport): stop it or choose another VXLAN port", cfg.Port, data)
		}
		return d, err
	}
	if rel := conn.Offloads().GSOKernelBug; rel != "" {
		d.log.Warn("UDP GSO left off: this kernel corrupts GSO output whose segments are all one size (kernels 7.0 to 7.1.4; 7.1.5 fixes it)", "kernel", rel)
	}
	if err := d.wire(conn); err != nil {
		return d, err
	}
	readopted := d.eps.readopt() // before gossip: see restart.go
	if err := d.startCluster(); err != nil {
		return d, err
	}
	if cfg.VNI != 0 {
		if err := d.nets.create(gossip.Network{Name: DefaultNetwork, VNI: cfg.VNI, Subnet: cfg.Subnet, Gateway: cfg.Gateway, Encrypted: cfg.Encrypted}); err != nil {
			return d, err
		}
		if err := d.setGroup(); err != nil {
			return d, err
		}
		hostMTU := d.mtu
		if n, ok := d.nets.get(DefaultNetwork); ok && n.Encrypted {
			hostMTU = encryptedMTU(d.mtu, n) // an encrypted default network, ours or the cluster's
		}
		if d.host, err = addHostPort(cfg, hostMTU, d.sw, d.fdb); err != nil {
			return d, err
		}
	}
	d.eps.readoptSettle(readopted, d.cluster.Load().agent)
	d.eps.watch()
	if err := d.startObserver(); err != nil {
		return d, err
	}
	d.ctl.Serve(d.handler(), d.log)
	d.trust.announce()
	d.log.Info("ovlsw up", "node", cfg.Name, "vtep", d.vtep, "vni", cfg.VNI, "tap", cfg.TAP,
		"mtu", cfg.MTU, "peers", len(cfg.Peers), "socket", cfg.Socket)
	return d, nil
}

// wire builds the node's owners around conn: the FDB, the switch (which
// owns the peer set: the static --peer list here, gossip's members later),
// the network registry, address allocation and the endpoints.
func (d *Daemon) wire(conn vtep.Conn) error {
	cfg := d.cfg
	if d.conf == nil { // a node built without New (tests)
		given := cfg
		_ = given.Validate() // the defaults it fills in, as New's
		d.conf = newReloader(given)
	}
	d.fdb = fdb.New(fdb.Config{Ageing: cfg.Ageing, MaxPerPort: cfg.MaxMACsPerPort, MaxPerVNI: cfg.MaxMACsPerVNI})
	var err error
	if d.sw, err = vtep.New(vtep.Config{Conn: conn, FDB: d.fdb, Logger: cfg.Logger, StaticPeers: cfg.Peers,
		OnPortStopped: func(id int, err error) { d.eps.portStopped(id, err) }}); err != nil {
		conn.Close()
		return err
	}
	d.nets = newNetworks(d.log, d.mtu, cfg.Flood, d.sw, func() {
		if c := d.cluster.Load(); c != nil {
			c.advertise()
		}
	})
	d.nets.groups = networkGroups{check: d.checkNetworkGroup, join: d.joinNetworkGroup, leave: d.leaveNetworkGroup}
	if d.names, err = newNames(namesConfig{Upstreams: d.dnsUpstreams(), TTL: cfg.DNSTTL, Rate: cfg.DNSRate, Log: d.log}, d.fdb, d.sw); err != nil {
		d.sw.Close()
		return err
	}
	var secretS secret.Secret
	if d.trust != nil {
		secretS = d.trust.secret
	}
	if d.enc, err = newEncryption(encryptionConfig{KeyFile: cfg.DataKeyFile, NetworkKeyFile: cfg.NetworkKeyFile,
		Interval: cfg.RekeyInterval, Secret: secretS, Log: d.log}, d.sw); err != nil {
		d.names.close()
		d.sw.Close()
		return err
	}
	d.nets.watch = func(old, n gossip.Network) {
		d.names.networkChanged(old, n)
		d.enc.networkChanged(old, n)
	}
	d.alloc = newAllocator(cfg.Name, d.fdb, d.holder)
	d.eps = newEndpoints(endpointsConfig{Node: cfg.Name, State: cfg.State, Offload: cfg.Offload, FloodRate: cfg.FloodRate,
		ClaimSettle: cfg.ClaimSettle, NetnsEtc: cfg.NetnsEtc, Log: d.log}, d.sw, d.fdb, d.alloc, d.nets)
	d.eps.names = d.names
	return nil
}

// dnsUpstreams returns where the name service forwards outside names:
// the configured resolvers, else the host's (ResolvConf), else none.
func (d *Daemon) dnsUpstreams() []netip.AddrPort {
	if d.cfg.NoDNSUpstream {
		return nil
	}
	if len(d.cfg.DNSUpstreams) > 0 {
		return d.cfg.DNSUpstreams
	}
	path := cmp.Or(d.cfg.ResolvConf, "/etc/resolv.conf")
	ups, err := readResolvConf(path)
	if err != nil || len(ups) == 0 {
		d.log.Warn("no upstream resolver: names outside the overlay networks are answered REFUSED", "resolv_conf", path, "err", err)
	}
	return ups
}

// startCluster starts gossip and hands it to the owners that read the
// cluster.
func (d *Daemon) startCluster() error {
	c, err := startCluster(clusterConfig{Name: d.cfg.Name, Bind: d.cfg.Bind, Advertise: d.cfg.AdvertiseAddr, VTEP: d.vtep, GossipPort: d.cfg.GossipPort,
		Trust: d.trust, Schedule: secret.Schedule{Interval: d.cfg.KeyRotation}, Join: d.cfg.Join, Log: d.log},
		d.fdb, d.sw, func(l []gossip.Network) { d.networksChanged(l) }, d.nets.served)
	if err != nil {
		return err
	}
	d.cluster.Store(c)
	d.enc.setAgent(c.agent)
	d.nets.setStore(c.agent)
	d.alloc.setView(c.agent)
	d.networksChanged(c.agent.Networks()) // learned while starting
	c.advertise()
	return nil
}

// networksChanged applies the cluster's networks and warns about endpoints
// whose network was removed elsewhere.
func (d *Daemon) networksChanged(list []gossip.Network) {
	for _, name := range d.nets.apply(list) {
		for _, ep := range d.eps.list(name) {
			d.log.Warn("network removed elsewhere while an endpoint is attached here", "network", name, "endpoint", ep.Name)
		}
	}
}

// holder reports which local port holds addr in vni: an endpoint or the
// host port; "" if none.
func (d *Daemon) holder(vni uint32, addr netip.Addr) string {
	if who := d.eps.holder(vni, addr); who != "" {
		return who
	}
	if h := d.host; h != nil && h.vni == vni && h.holds(addr) {
		return "the host port " + h.name
	}
	return ""
}

// Close leaves the cluster (withdrawing this node's bindings everywhere),
// stops the switch, removes every TAP port (the endpoints' in their
// namespaces too), the state file and the control socket. The cluster
// secret and join key stay: the node rejoins with them when started again.
// It is idempotent.
func (d *Daemon) Close() error { return d.close(false) }

// CloseForRestart stops the node so that the next New with the same state
// file takes its endpoints back (restart.go): like Close, but it does not
// leave the cluster, and it leaves the endpoints' TAPs in their namespaces,
// persistent, and the state file. The host TAP is removed.
func (d *Daemon) CloseForRestart() error { return d.close(true) }

func (d *Daemon) close(keepPorts bool) error {
	var errs []error
	if d.eps != nil {
		d.eps.stopWatch()
	}
	errs = append(errs, d.obs.close())
	if c := d.cluster.Load(); c != nil {
		errs = append(errs, c.close(!keepPorts))
	}
	if d.ctl != nil {
		errs = append(errs, d.ctl.Close())
		d.ctl = nil
	}
	if d.sw != nil {
		if keepPorts {
			d.eps.keep()
		} else {
			d.eps.release()
		}
		errs = append(errs, d.sw.Close())
		d.sw = nil
	}
	if d.names != nil {
		d.names.close()
		d.names = nil
	}
	return errors.Join(errs...)
}

// interfaceMTU finds the interface holding addr and returns its MTU; what
// names addr in the error if none does.
func interfaceMTU(addr netip.Addr, what string) (int, string, error) {
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
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.Unmap().WithZone("") {
					return ifc.MTU, ifc.Name, nil
				}
			}
		}
	}
	return 0, "", configErrorf("%s %v is not an address of this host: pick one from `ip -brief address`", what, addr)
}
