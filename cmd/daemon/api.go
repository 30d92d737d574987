package daemon

// This file holds the control API handlers: thin adapters from HTTP to the
// node's owners, and the views the API assembles from several of them.
// convert.go converts between the API's types and the node's.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/gossip"
	"github.com/ovlsw/ovlsw/tap"
)

// maxRequest bounds a control request body.
const maxRequest = 1 << 20

// decode reads a JSON request body into v, answering 400 on failure.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		control.WriteError(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return false
	}
	return true
}

// reply answers with v, or with err as a 400 (a *userError: the caller asked
// for something wrong), 404 (errNotFound) or 500.
func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		control.WriteJSON(w, http.StatusOK, v)
	case errors.Is(err, errNotFound):
		control.WriteError(w, http.StatusNotFound, err)
	case errors.As(err, new(*userError)):
		control.WriteError(w, http.StatusBadRequest, err)
	default:
		control.WriteError(w, http.StatusInternalServerError, err)
	}
}

// errNotFound marks answers that name something that does not exist.
var errNotFound = errors.New("not found")

// userError is a request the daemon refuses, with the reason to show.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func userErrorf(format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...)}
}

// handlePost registers a POST handler that decodes the body into a Req and
// answers with what fn returns.
func handlePost[Req any](mux *http.ServeMux, path string, fn func(Req) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !decode(w, r, &req) {
			return
		}
		v, err := fn(req)
		reply(w, v, err)
	})
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.status())
	})
	mux.HandleFunc("GET /v1/fdb", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.fdbEntries())
	})
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.listNetworks())
	})
	mux.HandleFunc("GET /v1/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, err := d.inspectNetwork(r.PathValue("name"))
		reply(w, n, err)
	})
	handlePost(mux, "/v1/networks", func(n control.Network) (any, error) {
		gn, err := fromControlNetwork(n)
		if err != nil {
			return nil, err
		}
		if err := d.nets.create(gn); err != nil {
			return nil, err
		}
		return d.inspectNetwork(n.Name)
	})
	mux.HandleFunc("DELETE /v1/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, d.nets.remove(r.PathValue("name"), d.networkUsers))
	})
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.routes()) // route.go
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.peers())
	})
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := d.cluster.Load().listKeys()
		reply(w, keys, err)
	})
	handlePost(mux, "/v1/keys", func(req control.KeyRequest) (any, error) {
		return struct{}{}, d.cluster.Load().keyOp(req.Op, req.Key)
	})
	mux.HandleFunc("GET /v1/token", func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.token(), d.tokenErr())
	})
	handlePost(mux, "/v1/token", func(req control.TokenRequest) (any, error) {
		if err := d.tokenErr(); err != nil || !req.Rotate {
			return d.token(), err
		}
		if _, err := d.trust.rotateToken(); err != nil {
			return nil, err
		}
		return d.token(), nil
	})
	mux.HandleFunc("GET /v1/names", func(w http.ResponseWriter, r *http.Request) {
		names, err := d.listNames(r.URL.Query().Get("network"))
		reply(w, names, err)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.listEndpoints(""))
	})
	handlePost(mux, "/v1/attach", func(req control.AttachRequest) (any, error) { return d.Attach(req) })
	handlePost(mux, "/v1/detach", func(req control.DetachRequest) (any, error) { return d.Detach(req) })
	d.observeRoutes(mux) // events, capture, trace (observe_api.go)
	handlePost(mux, "/v1/names", func(req control.NamesRequest) (any, error) { return d.SetNames(req) })
	handlePost(mux, "/v1/relocate", func(req control.RelocateRequest) (any, error) { return d.Relocate(req) })
	return mux
}

// Attach puts a new port of a network into a network namespace.
func (d *Daemon) Attach(req control.AttachRequest) (control.Endpoint, error) {
	ep, err := d.eps.attach(fromControlAttach(req))
	if err != nil {
		return control.Endpoint{}, err
	}
	return toControlEndpoint(ep), nil
}

// SetNames replaces the DNS names of an attached endpoint (rename.go).
func (d *Daemon) SetNames(req control.NamesRequest) (control.Endpoint, error) {
	ep, err := d.eps.setNames(req)
	if err != nil {
		return control.Endpoint{}, err
	}
	return toControlEndpoint(ep), nil
}

// Relocate records where a runtime moved an endpoint's interface
// (rename.go).
func (d *Daemon) Relocate(req control.RelocateRequest) (control.Endpoint, error) {
	ep, err := d.eps.relocate(req)
	if err != nil {
		return control.Endpoint{}, err
	}
	return toControlEndpoint(ep), nil
}

// Detach removes the endpoint at netns/ifname and frees its address.
func (d *Daemon) Detach(req control.DetachRequest) (control.Endpoint, error) {
	ep, err := d.eps.detach(req.Netns, req.IfName)
	if err != nil {
		return control.Endpoint{}, err
	}
	return toControlEndpoint(ep), nil
}

func (d *Daemon) listNetworks() []control.Network {
	list := d.nets.list()
	out := make([]control.Network, len(list))
	for i, n := range list {
		out[i] = toControlNetwork(n)
	}
	return out
}

func (d *Daemon) inspectNetwork(name string) (control.NetworkDetail, error) {
	n, ok := d.nets.get(name)
	if !ok {
		return control.NetworkDetail{}, fmt.Errorf("network %s: %w", name, errNotFound)
	}
	return control.NetworkDetail{Network: toControlNetwork(n), Endpoints: d.clusterEndpoints(n)}, nil
}

func (d *Daemon) listEndpoints(network string) []control.Endpoint {
	eps := d.eps.list(network)
	out := make([]control.Endpoint, len(eps))
	for i, ep := range eps {
		out[i] = toControlEndpoint(ep)
	}
	return out
}

// clusterEndpoints lists n's endpoints on every node: this node's with
// their names, the others' from their gossip bindings (node, MAC, IP). The
// host port of the default network is not an endpoint.
func (d *Daemon) clusterEndpoints(n gossip.Network) []control.Endpoint {
	out := d.listEndpoints(n.Name)
	bits := n.Subnet.Bits()
	for _, e := range d.fdb.Entries() {
		if e.VNI != n.VNI || e.Origin != fdb.OriginGossip || len(e.IPs) == 0 {
			continue
		}
		ep := control.Endpoint{Network: n.Name, VNI: n.VNI, Node: e.Node, MAC: e.MAC.String(), Gateway: gatewayOf(n, e.IPs[0]), MTU: n.MTU}
		b := bits
		if s, ok := n.SubnetOf(e.IPs[0]); ok {
			b = s.Prefix.Bits()
		}
		if b < 0 {
			b = e.IPs[0].BitLen()
		}
		ep.Address = netip.PrefixFrom(e.IPs[0], b)
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b control.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Address.Addr().Compare(b.Address.Addr()))
	})
	return out
}

// networkUsers lists who still uses network n: its endpoints on every
// node, and this node's host port on the default network.
func (d *Daemon) networkUsers(n gossip.Network) []string {
	var in []string
	for _, ep := range d.clusterEndpoints(n) {
		who := ep.Name
		if who == "" {
			who = ep.MAC
		}
		in = append(in, fmt.Sprintf("%s on %s (%v)", who, ep.Node, ep.Address.Addr()))
	}
	if d.host != nil && n.Name == DefaultNetwork {
		in = append(in, "the host port "+d.host.name+" on "+d.cfg.Name)
	}
	return in
}

func (d *Daemon) peers() []control.Member {
	c := d.cluster.Load()
	if c == nil {
		return []control.Member{}
	}
	ms := c.agent.Members()
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = toControlMember(m)
	}
	return out
}

func (d *Daemon) status() control.Status {
	st := control.Status{
		Node: control.Node{
			Name: d.cfg.Name, VTEP: d.vtep, VNIs: d.nets.served(),
			Started: d.started, PID: os.Getpid(), Goroutines: runtime.NumGoroutine(),
		},
		Stats:  toControlStats(d.sw.Stats()),
		Gossip: d.gossipStatus(),
		FDB:    control.FDBStat{Entries: d.fdb.Len(), Refused: d.fdb.Refused()},
	}
	d.queueDrops(st.Ports)
	if d.enc != nil {
		st.Encryption = d.enc.status()
	}
	if d.names != nil {
		st.Stats.DNS = toControlDNS(d.names.stats(), d.names.upstreams())
	}
	return st
}

// names lists the names of network, or (network "") of every network
// this node serves.
func (d *Daemon) listNames(network string) ([]control.Name, error) {
	var nets []gossip.Network
	if network != "" {
		n, ok := d.nets.get(network)
		if !ok {
			return nil, fmt.Errorf("network %s: %w", network, errNotFound)
		}
		nets = append(nets, n)
	} else {
		nets = d.nets.list()
	}
	out := []control.Name{}
	for _, n := range nets {
		for _, r := range d.names.list(n.VNI) {
			node := d.cfg.Name
			if e, ok := d.fdb.Get(fdb.Key{VNI: n.VNI, MAC: r.Owner}); ok && e.Origin == fdb.OriginGossip {
				node = e.Node
			}
			out = append(out, toControlName(n.Name, r, node))
		}
	}
	return out, nil
}

// token returns this node's join token.
func (d *Daemon) token() control.Token {
	return control.Token{Token: d.trust.token(), Cluster: d.trust.secret.Fingerprint()}
}

// tokenErr says why this node has no token, if it has none.
func (d *Daemon) tokenErr() error {
	if !d.trust.secure() {
		return errInsecure
	}
	return nil
}

func (d *Daemon) gossipStatus() *control.Gossip {
	c := d.cluster.Load()
	if c == nil {
		return nil
	}
	g := toControlGossip(c.agent.Stats(), c.agent.Addr(), c.encrypted())
	if d.cfg.AdvertiseAddr.IsValid() {
		port := d.cfg.GossipPort
		if port == 0 {
			port = gossip.DefaultConfig().GossipPort
		}
		if bind := netip.AddrPortFrom(d.cfg.Bind, uint16(port)); bind != g.Addr {
			g.Bind = bind
		}
	}
	if d.trust.secure() {
		g.Cluster = d.trust.secret.Fingerprint()
		g.KeyEpoch = c.rotator.epoch.Load()
		g.KeyRotation = c.cfg.Schedule.Interval.Seconds()
	}
	for _, m := range c.agent.Members() {
		if m.State == "alive" || m.State == "suspect" {
			g.Members++
		}
	}
	return g
}

// queueDrops fills in each port's QueueDrops: the TX drops of its TAP as
// the kernel counts them (frames the container or host sent that the TAP
// queue could not hold until ovlsw read them). Endpoints' links are read
// in their namespaces. Errors leave the figure zero.
func (d *Daemon) queueDrops(ports []control.Port) {
	where := d.eps.links()
	if d.host != nil {
		where[d.host.id] = [2]string{"", d.host.name}
	}
	for i := range ports {
		w, ok := where[ports[i].ID]
		if !ok {
			continue
		}
		if n, err := tap.TxDropped(w[0], w[1]); err == nil {
			ports[i].QueueDrops = n
		}
	}
}

func (d *Daemon) fdbEntries() []control.FDBEntry {
	now := d.fdb.Now()
	es := d.fdb.Entries()
	out := make([]control.FDBEntry, 0, len(es))
	for _, e := range es {
		out = append(out, toControlFDBEntry(e, now, d.sw.PortName(e.Port)))
	}
	slices.SortFunc(out, func(a, b control.FDBEntry) int {
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return cmp.Compare(a.MAC, b.MAC)
	})
	return out
}
