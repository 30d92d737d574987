package daemon

// This file holds the control API handlers: thin adapters from HTTP to the
// daemon's methods.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
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
		if err := d.createNetwork(n); err != nil {
			return nil, err
		}
		return d.inspectNetwork(n.Name)
	})
	mux.HandleFunc("DELETE /v1/networks/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, d.removeNetwork(r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.peers())
	})
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := d.listKeys()
		reply(w, keys, err)
	})
	handlePost(mux, "/v1/keys", func(req control.KeyRequest) (any, error) {
		return struct{}{}, d.keyOp(req)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, d.listEndpoints(""))
	})
	handlePost(mux, "/v1/attach", func(req control.AttachRequest) (any, error) { return d.Attach(req) })
	handlePost(mux, "/v1/detach", func(req control.DetachRequest) (any, error) { return d.Detach(req) })
	return mux
}

func (d *Daemon) status() control.Status {
	st := control.Status{
		Node: control.Node{
			Name: d.cfg.Name, VTEP: d.vtep, VNIs: d.vnis(),
			Started: d.started, PID: os.Getpid(), Goroutines: runtime.NumGoroutine(),
		},
		Stats:  d.sw.Stats(),
		Gossip: d.gossipStatus(),
		FDB:    control.FDBStat{Entries: d.fdb.Len(), Refused: d.fdb.Refused()},
	}
	d.queueDrops(st.Ports)
	return st
}

func (d *Daemon) fdbEntries() []control.FDBEntry {
	now := d.fdb.Now()
	es := d.fdb.Entries()
	out := make([]control.FDBEntry, 0, len(es))
	for _, e := range es {
		fe := control.FDBEntry{
			VNI: e.VNI, MAC: e.MAC.String(), IPs: e.IPs, Origin: e.Origin.String(),
			Node: e.Node, Seq: e.Seq, Age: now.Sub(e.Seen).Round(time.Second).Seconds(), Dup: e.Duplicate,
		}
		if e.IsLocal() {
			fe.Port = d.sw.PortName(e.Port)
			fe.Where = "port " + fe.Port
		} else {
			fe.VTEP = e.VTEP.String()
			fe.Where = "vtep " + fe.VTEP
		}
		out = append(out, fe)
	}
	slices.SortFunc(out, func(a, b control.FDBEntry) int {
		if a.VNI != b.VNI {
			return int(a.VNI) - int(b.VNI)
		}
		return cmp.Compare(a.MAC, b.MAC)
	})
	return out
}
