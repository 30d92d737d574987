package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/daemon"
	"github.com/ovlsw/ovlsw/fdb"
)

func newUp() *cobra.Command { return newUpCommand(runUp) }

// newUpCommand is ovlsw up, which parses its flags and its --config file
// into a daemon.Config and hands it to run (runUp starts the node; a reload
// only takes the configuration).
func newUpCommand(run func(*cobra.Command, daemon.Config, *configFile) error) *cobra.Command {
	cfg := daemon.DefaultConfig()
	cf := &configFile{}
	var bind, logLevel, subnet, gateway, offload, group string
	var advertise, dataAddr string
	var peers, addrs, dnsUpstreams []string
	var vni uint32
	var port uint16
	c := &cobra.Command{
		Use:   "up",
		Short: "Run a node in the foreground until SIGINT or SIGTERM (SIGUSR2: stop for a restart)",
		Long: `Run a node in the foreground.

SIGINT or SIGTERM: leave the gossip cluster, remove every TAP port (attached
containers lose their interfaces), the state file and the control socket,
and exit 0.

SIGUSR2: stop for an upgrade or restart, and exit 0. The node does not leave
the cluster and leaves the attached containers' TAPs in place (persistent,
with their MACs, addresses and routes) and the state file (--state). The
next ovlsw up with the same flags takes them back: ports, addresses and
bindings are restored and re-announced, with no attach, after a short
traffic gap. A crash or SIGKILL leaves the same state behind.`,
		Args:    cobra.NoArgs,
		PreRunE: func(c *cobra.Command, _ []string) error { return cf.load(c.Flags()) },
		RunE: func(c *cobra.Command, _ []string) error {
			if cf.print {
				return printConfig(c.OutOrStdout(), c.Flags())
			}
			if bind == "" {
				return fmt.Errorf("--bind is required: the underlay address VXLAN is sent from (one of this host's addresses)")
			}
			var err error
			if cfg.Bind, err = netip.ParseAddr(bind); err != nil {
				return fmt.Errorf("--bind %q is not an IP address", bind)
			}
			if dataAddr != "" {
				if cfg.DataAddr, err = netip.ParseAddr(dataAddr); err != nil {
					return fmt.Errorf("--data-addr %q is not an IP address", dataAddr)
				}
			}
			if advertise != "" {
				if cfg.AdvertiseAddr, err = parseAdvertise(advertise); err != nil {
					return err
				}
			}
			if c.Flags().Changed("vni") {
				if err := fdb.CheckVNI(vni); err != nil {
					return errors.New(flagText(err.Error()))
				}
			}
			if subnet != "" {
				if cfg.Subnet, err = netip.ParsePrefix(subnet); err != nil {
					return fmt.Errorf("--subnet %q: want a CIDR prefix, e.g. 10.0.9.0/24", subnet)
				}
			}
			if gateway != "" {
				if cfg.Gateway, err = netip.ParseAddr(gateway); err != nil {
					return fmt.Errorf("--gateway %q is not an IP address", gateway)
				}
			}
			cfg.VNI, cfg.Port = vni, port
			if group != "" {
				if cfg.Group, err = netip.ParseAddr(group); err != nil {
					return fmt.Errorf("--group %q is not an IP address", group)
				}
			}
			for _, p := range peers {
				ap, err := parsePeer(p, port)
				if err != nil {
					return err
				}
				cfg.Peers = append(cfg.Peers, ap)
			}
			for _, a := range addrs {
				pfx, err := netip.ParsePrefix(a)
				if err != nil {
					return fmt.Errorf("--address %q: want ADDRESS/PREFIX, e.g. 10.91.0.1/24", a)
				}
				cfg.Address = append(cfg.Address, pfx)
			}
			for _, u := range dnsUpstreams {
				if u == "none" {
					if len(dnsUpstreams) > 1 {
						return fmt.Errorf("--dns-upstream none: give it alone, not with resolvers")
					}
					cfg.NoDNSUpstream = true
					continue
				}
				ap, err := daemon.ParseDNSUpstream(u)
				if err != nil {
					return fmt.Errorf("--dns-upstream %q: %v", u, err)
				}
				cfg.DNSUpstreams = append(cfg.DNSUpstreams, ap)
			}
			switch offload {
			case "on":
				cfg.Offload = true
			case "off":
				cfg.Offload = false
			default:
				return fmt.Errorf("--offload %q: want on or off", offload)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			cfg.LevelVar = new(slog.LevelVar) // SIGHUP may change it
			cfg.LevelVar.Set(level)
			cfg.LogLevel = level
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LevelVar}))
			cfg.Out = c.OutOrStdout()
			return run(c, cfg, cf)
		},
	}
	wrapFileErrors(c, cf)
	f := c.Flags()
	cf.addFlags(f)
	f.StringVar(&bind, "bind", "", "underlay address of this host for gossip, and for VXLAN unless --data-addr (required)")
	f.StringVar(&dataAddr, "data-addr", "", "underlay `IP` of this host to send and receive VXLAN on, announced to the cluster as this node's VTEP (default: --bind)")
	f.StringVar(&advertise, "advertise-addr", "", "gossip address `IP[:PORT]` other members are told to reach this node at, behind NAT or on a multi-homed host (default: --bind and --gossip-port)")
	f.Uint32Var(&vni, "vni", 0, "VNI of the default network and its host TAP port, 1..16777215 (none: the node starts with no network)")
	f.StringVar(&subnet, "subnet", "", "`CIDR` of the default network, from which attach allocates addresses")
	f.StringVar(&gateway, "gateway", "", "gateway `IP` of the default network (attached containers get a default route via it)")
	f.Uint16Var(&port, "port", cfg.Port, "VXLAN UDP port")
	f.StringVar(&group, "group", "", "underlay multicast `GROUP` for the default network (--vni): broadcast and unknown traffic go to it once instead of to every peer, and datagrams of the VNI are accepted from any sender on the underlay (as a kernel vxlan device in group mode)")
	f.StringVar(&cfg.GroupDev, "group-dev", "", "`IFNAME` to join --group on and send to it through (default: the interface holding --bind)")
	f.IntVar(&cfg.GroupTTL, "group-ttl", 0, "TTL of datagrams sent to --group (default 1: the local segment)")
	f.StringArrayVar(&peers, "peer", nil, "static remote VTEP `IP[:PORT]` (repeatable); broadcast and unknown traffic is replicated to each")
	f.StringVar(&cfg.TAP, "tap", "", "host TAP port name (default ovl<VNI>)")
	f.IntVar(&cfg.MTU, "mtu", 0, "overlay MTU (default: MTU of the --data-addr interface minus 50, or 70 over IPv6)")
	f.StringArrayVar(&addrs, "address", nil, "`ADDRESS/PREFIX` to assign to the host TAP port (repeatable)")
	f.DurationVar(&cfg.Ageing, "ageing", cfg.Ageing, "how long a learned MAC lives without traffic")
	f.IntVar(&cfg.MaxMACsPerPort, "max-macs-per-port", cfg.MaxMACsPerPort, "most source MACs learned from one port (0: no limit); past it new MACs are not learned")
	f.IntVar(&cfg.MaxMACsPerVNI, "max-macs-per-vni", cfg.MaxMACsPerVNI, "most learned MACs in one VNI (0: no limit)")
	f.IntVar(&cfg.FloodRate, "flood-rate", cfg.FloodRate, "most broadcast, multicast and unknown-unicast frames a second each port may flood (0: no limit)")
	f.StringVar(&offload, "offload", "on", "fast-path offloads (TAP TSO and checksum offload, UDP GSO/GRO, userspace GRO, source-port pool): on, or off to compare; each is probed and used only where the kernel has it (see ovlsw status)")
	f.StringVar(&cfg.Flood, "flood", "flood", "flood policy for traffic the FDB cannot place: flood, drop, or arp=,unicast=,broadcast= with flood|drop (multicast always floods)")
	f.StringArrayVar(&cfg.Join, "join", nil, "gossip member `HOST[:PORT]` to join (repeatable); without it the node founds a cluster")
	f.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "gossip TCP and UDP port")
	f.StringVar(&cfg.Token, "token", "", "join `TOKEN` printed by `ovlsw token` on the member given with --join (needed once: the node keeps the cluster secret)")
	f.StringVar(&cfg.TokenFile, "token-file", "", "`FILE` holding the join token, instead of --token (keeps it out of the process list)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "labs only: gossip without the cluster secret (plain, or with --gossip-key-file's static key), no join token, no key rotation; any host reaching the gossip port can join")
	f.DurationVar(&cfg.KeyRotation, "key-rotation", cfg.KeyRotation, "how long each gossip key is used before the next, the same on every member (keys derive from the cluster secret and the time)")
	f.StringVar(&cfg.GossipKeyFile, "gossip-key-file", "", "`FILE` holding a base64 32-byte cluster secret (with --insecure: a static gossip key) instead of one made by the founding node")
	f.BoolVar(&cfg.Encrypted, "encrypted", false, "make the default network (--vni) encrypted: every datagram of it sealed between nodes (AES-256-GCM or ChaCha20-Poly1305, keys per pair of nodes; see docs/encryption.md)")
	f.DurationVar(&cfg.RekeyInterval, "rekey-interval", cfg.RekeyInterval, "how long each data key of encrypted networks is used before the next, the same on every member (keys also change every 2^28 datagrams)")
	f.StringVar(&cfg.NetworkKeyFile, "network-key-file", "", "`FILE` holding a base64 32-byte key every node shares, sealing encrypted networks instead of the members' key pairs (static --peer setups)")
	f.StringVar(&cfg.DataKeyFile, "data-key-file", "", "`FILE` keeping this node's private key for encrypted networks, mode 0600 (default: beside --state, <state without .state.json>.datakey)")
	f.StringArrayVar(&dnsUpstreams, "dns-upstream", nil, "resolver `IP[:PORT]` the networks' name service forwards names outside the overlay to (repeatable), or none to answer them REFUSED (default: the nameservers of /etc/resolv.conf)")
	f.IntVar(&cfg.DNSRate, "dns-rate", cfg.DNSRate, "most DNS queries a second each port may send to the name service (bursts of a fifth of that); past it they are dropped and counted (0: no limit)")
	f.Uint32Var(&cfg.DNSTTL, "dns-ttl", cfg.DNSTTL, "TTL in seconds of the name service's answers (0: resolvers never cache a name, which may move)")
	f.StringVar(&cfg.Socket, "socket", cfg.Socket, "control socket path")
	f.StringVar(&cfg.State, "state", "", "`FILE` recording the attached containers, for a restart to take back (default: beside --socket, <socket without .sock>.state.json)")
	f.StringVar(&cfg.Name, "name", "", "node name (default: the host name)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics at http://`HOST:PORT`/metrics (off by default; a non-loopback address shows the node's counters to anyone who reaches it)")
	return c
}

// parsePeer parses IP or IP:PORT; a bare IP gets defPort.
func parsePeer(s string, defPort uint16) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, defPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--peer %q: want IP or IP:PORT (IPv6 as [IP]:PORT)", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("--peer %q: port 0 is not a VXLAN port", s)
	}
	return ap, nil
}

// parseAdvertise parses --advertise-addr: IP or IP:PORT; a bare IP keeps
// the gossip port (port 0).
func parseAdvertise(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 0), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("--advertise-addr %q: want IP or IP:PORT with a port from 1 (IPv6 as [IP]:PORT)", s)
	}
	return ap, nil
}

// flagNames maps the names the node gives its configuration values in
// errors to the flags of ovlsw up that set them; longer names first, so
// that "MAC limit per VNI" is not read as "VNI".
var flagNames = []struct{ value, flag string }{
	{"own bind address", "own --bind address"},
	{"multicast interface", "--group-dev"},
	{"multicast group", "--group"},
	{"multicast TTL", "--group-ttl"},
	{"own data address", "own --data-addr address"},
	{"advertise address", "--advertise-addr"},
	{"join token file", "--token-file"},
	{"join token", "--token"},
	{"member to join", "--join"},
	{"insecure mode", "--insecure"},
	{"key rotation interval", "--key-rotation"},
	{"rekey interval", "--rekey-interval"},
	{"encrypted mode", "--encrypted"},
	{"network key file", "--network-key-file"},
	{"host port addresses", "--address"},
	{"MAC limit per port", "--max-macs-per-port"},
	{"MAC limit per VNI", "--max-macs-per-vni"},
	{"control socket", "--socket"},
	{"metrics address", "--metrics"},
	{"DNS upstream none", "--dns-upstream none"},
	{"DNS upstreams", "--dns-upstream"},
	{"DNS upstream", "--dns-upstream"},
	{"DNS rate", "--dns-rate"},
	{"bind address", "--bind"},
	{"data address", "--data-addr"},
	{"flood policy", "--flood"},
	{"VXLAN port", "--port"},
	{"flood rate", "--flood-rate"},
	{"TAP name", "--tap"},
	{"gateway", "--gateway"},
	{"ageing", "--ageing"},
	{"subnet", "--subnet"},
	{"peer", "--peer"},
	{"MTU", "--mtu"},
	{"VNI", "--vni"},
}

var flagNameRE = func() *regexp.Regexp {
	alts := make([]string, len(flagNames))
	for i, f := range flagNames {
		alts[i] = regexp.QuoteMeta(f.value)
	}
	return regexp.MustCompile(`\b(` + strings.Join(alts, "|") + `)\b`)
}()

// flagError rewrites an error about the node's configuration (a
// daemon.ConfigError) in terms of the flags that set the values it names.
// Other errors pass unchanged.
func flagError(err error) error {
	var ce *daemon.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	return errors.New(flagText(err.Error()))
}

// flagText replaces the names of configuration values in msg by the flags
// that set them.
func flagText(msg string) string {
	return flagNameRE.ReplaceAllStringFunc(msg, func(v string) string {
		for _, f := range flagNames {
			if f.value == v {
				return f.flag
			}
		}
		return v
	})
}
