package daemon

// This file wires the gossip control plane into the daemon: the agent's
// start (after the switch, so it can hand it member VTEPs), the FDB events
// it announces, the peer lists it computes merged with static --peer ones,
// and its key ring.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
)

// readKeyFile reads a base64 gossip key of 32 bytes.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %w", err)
	}
	key, err := DecodeKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file %s: %w", path, err)
	}
	return key, nil
}

// DecodeKey decodes a base64 gossip key and checks it is 32 bytes.
func DecodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, errors.New("want a 32-byte key in base64 (make one with: head -c 32 /dev/urandom | base64)")
	}
	return key, nil
}

// startGossip starts the agent (encrypted with key, if any) and joins
// cfg.Join.
func (d *Daemon) startGossip(key []byte) error {
	gc := gossip.DefaultConfig()
	gc.Name, gc.BindAddr, gc.VTEP, gc.VNIs, gc.Logger = d.cfg.Name, d.cfg.Bind, d.vtep, d.vnis(), d.log
	if d.cfg.GossipPort != 0 {
		gc.GossipPort = d.cfg.GossipPort
	}
	gc.SecretKey = key
	gc.OnNetworks = d.applyNetworks
	a, err := gossip.New(gc, d.fdb, d)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("gossip port %d on %v is already in use (another ovlsw?): stop it or pass --gossip-port", gc.GossipPort, d.cfg.Bind)
		}
		return err
	}
	d.agent.Store(a)
	d.advertStop = make(chan struct{})
	d.advertDone.Add(1)
	go d.advertiser(a, d.advertStop)
	d.applyNetworks(a.Networks()) // learned while starting, before d.agent was set
	if len(d.cfg.Join) > 0 {
		join, err := joinAddrs(d.cfg.Join, netip.AddrPortFrom(d.cfg.Bind, uint16(gc.GossipPort)))
		if err != nil {
			return err
		}
		if _, err := a.Join(join); err != nil {
			if errors.Is(err, gossip.ErrKeyMismatch) {
				return fmt.Errorf("cannot join %s: the cluster refused our gossip: the key does not match (check --gossip-key-file on both sides)", strings.Join(d.cfg.Join, ","))
			}
			return fmt.Errorf("cannot join %s: %w (is ovlsw up there, with the same --gossip-port?)", strings.Join(d.cfg.Join, ","), err)
		}
	}
	return nil
}

// joinAddrs gives every --join address a port (memberlist would otherwise
// use this node's own gossip port) and refuses this node's own address.
func joinAddrs(join []string, self netip.AddrPort) ([]string, error) {
	defPort := uint16(gossip.DefaultConfig().GossipPort)
	out := make([]string, 0, len(join))
	for _, j := range join {
		host, port := j, defPort
		if h, p, err := net.SplitHostPort(j); err == nil {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("--join %q: bad port", j)
			}
			host, port = h, uint16(n)
		}
		if ip, err := netip.ParseAddr(host); err == nil && netip.AddrPortFrom(ip, port) == self {
			return nil, fmt.Errorf("--join %s is this node's own gossip address: name another member", j)
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	return out, nil
}

// fdbChanged forwards FDB changes to the agent, which announces local
// entries and withdraws them when they go.
func (d *Daemon) fdbChanged(ev fdb.Event) {
	if a := d.agent.Load(); a != nil {
		a.OnFDBEvent(ev)
	}
}

// SetPeers receives the member VTEPs of a VNI from gossip; the switch gets
// them together with the static --peer list. It implements gossip.Members.
func (d *Daemon) SetPeers(vni uint32, vteps []netip.AddrPort) {
	d.peerMu.Lock()
	defer d.peerMu.Unlock()
	if len(vteps) == 0 {
		delete(d.gossipPeers, vni)
	} else {
		d.gossipPeers[vni] = slices.Clone(vteps)
	}
	d.applyPeersLocked(vni)
}

// applyPeers recomputes the switch's peer list of vni.
func (d *Daemon) applyPeers(vni uint32) {
	d.peerMu.Lock()
	defer d.peerMu.Unlock()
	d.applyPeersLocked(vni)
}

func (d *Daemon) applyPeersLocked(vni uint32) {
	var all []netip.AddrPort
	if d.served(vni) {
		all = append(all, d.cfg.Peers...)
	}
	for _, v := range d.gossipPeers[vni] {
		if !slices.Contains(all, v) {
			all = append(all, v)
		}
	}
	d.sw.SetPeers(vni, all)
}

// served reports whether a network with vni exists here. It takes no lock
// of the daemon's: networks are read through the copy kept for it.
func (d *Daemon) served(vni uint32) bool {
	return slices.Contains(*d.vniSet.Load(), vni)
}

// networksChangedLocked tells the switch and the cluster which VNIs this
// node serves after the networks changed, recomputing the peer lists of the
// changed VNIs. Called with d.mu held.
func (d *Daemon) networksChangedLocked(changed map[uint32]bool) {
	var vnis []uint32
	for _, n := range d.networks {
		vnis = append(vnis, n.VNI)
	}
	slices.Sort(vnis)
	d.vniSet.Store(&vnis)
	for vni := range changed {
		d.applyPeers(vni)
	}
	d.advertiseVNIs()
}

// advertiseVNIs asks the advertiser goroutine to publish d.vniSet in the
// node's gossip metadata. It never blocks: memberlist's UpdateNode waits
// (up to a second) for the update to go out, which must not happen under
// d.mu, where it held up status, attach and detach for that long.
func (d *Daemon) advertiseVNIs() {
	select {
	case d.vniAdvert <- struct{}{}:
	default: // one is pending; it will publish the latest set
	}
}

// advertiser publishes the VNI set whenever advertiseVNIs asks, until stop
// closes.
func (d *Daemon) advertiser(a *gossip.Agent, stop <-chan struct{}) {
	defer d.advertDone.Done()
	for {
		select {
		case <-stop:
			return
		case <-d.vniAdvert:
			if err := a.SetVNIs(*d.vniSet.Load(), time.Second); err != nil && !errors.Is(err, gossip.ErrClosed) {
				d.log.Warn("advertise VNIs", "err", err)
			}
		}
	}
}
func (d *Daemon) peers() []control.Member {
	a := d.agent.Load()
	if a == nil {
		return []control.Member{}
	}
	ms := a.Members()
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = control.Member{Name: m.Name, Addr: m.Addr, VTEP: m.VTEP, VNIs: m.VNIs, State: m.State, Bindings: m.Bindings}
	}
	return out
}

func (d *Daemon) gossipStatus() *control.Gossip {
	a := d.agent.Load()
	if a == nil {
		return nil
	}
	st := a.Stats()
	g := &control.Gossip{
		Addr: a.Addr(), LocalBindings: st.LocalBindings, RemoteBindings: st.RemoteBindings,
		MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, Malformed: st.Malformed,
		Encrypted: d.cfg.GossipKeyFile != "",
	}
	for _, m := range a.Members() {
		if m.State == "alive" || m.State == "suspect" {
			g.Members++
		}
	}
	return g
}

func (d *Daemon) listKeys() ([]string, error) {
	a := d.agent.Load()
	if a == nil {
		return nil, errors.New("gossip is not running")
	}
	if d.cfg.GossipKeyFile == "" {
		return nil, userErrorf("gossip is not encrypted on this node: start it with --gossip-key-file")
	}
	var out []string
	for _, k := range a.ListKeys() {
		out = append(out, base64.StdEncoding.EncodeToString(k))
	}
	return out, nil
}

func (d *Daemon) keyOp(req control.KeyRequest) error {
	a := d.agent.Load()
	if a == nil {
		return errors.New("gossip is not running")
	}
	key, err := DecodeKey(req.Key)
	if err != nil {
		return userErrorf("key: %v", err)
	}
	switch req.Op {
	case "install":
		err = a.InstallKey(key)
	case "use":
		err = a.UseKey(key)
	case "remove":
		err = a.RemoveKey(key)
	default:
		return userErrorf("key operation %q: want install, use or remove", req.Op)
	}
	if errors.Is(err, gossip.ErrNoEncryption) {
		return userErrorf("gossip is not encrypted on this node: start it with --gossip-key-file")
	}
	if err != nil {
		return userErrorf("%v", err)
	}
	d.log.Info("gossip key "+req.Op+"ed", "key", req.Key[:6]+"...")
	return nil
}
