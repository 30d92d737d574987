package daemon

// This file holds the control API's observability endpoints: GET
// /v1/events (newline-delimited JSON until the client hangs up or the node
// closes), GET /v1/capture (pcapng, likewise, or until ?count frames) and
// POST /v1/trace (trace.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
	"github.com/ovlsw/ovlsw/vtep/capture"
)

func (d *Daemon) observeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", d.serveEvents)
	mux.HandleFunc("GET /v1/capture", d.serveCapture)
	handlePost(mux, "/v1/trace", func(req control.TraceRequest) (any, error) { return d.trace(req) })
}

// streamContext ends when the request's does or the node closes.
func (d *Daemon) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(d.obs.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (d *Daemon) serveEvents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := d.streamContext(r)
	defer cancel()
	f := d.obs.watch.follow()
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	if enc.Encode(control.Event{Time: time.Now(), Kind: "follow", Node: d.cfg.Name}) != nil {
		return
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-f.C():
			if !ok {
				return
			}
			if n := f.TakeLost(); n > 0 {
				if enc.Encode(control.Event{Time: e.Time, Kind: "lost", Lost: n}) != nil {
					return
				}
			}
			if enc.Encode(e) != nil {
				return
			}
			if len(f.C()) == 0 && fl != nil {
				fl.Flush()
			}
		}
	}
}

// captureFilter reads the filter of GET /v1/capture: port (a switch port
// name or an endpoint name), vni or peer, exactly one.
func (d *Daemon) captureFilter(r *http.Request) (capture.Filter, string, error) {
	q := r.URL.Query()
	var f capture.Filter
	var name string
	given := 0
	if p := q.Get("port"); p != "" {
		given++
		id, ok := d.sw.PortID(p)
		if !ok {
			id, ok = d.eps.portOf(p)
		}
		if !ok {
			return f, "", fmt.Errorf("port %s: %w (see ovlsw status for ports, ovlsw network inspect for endpoints)", p, errNotFound)
		}
		f.Port, name = id, "port "+p
	}
	if v := q.Get("vni"); v != "" {
		given++
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > 1<<24-1 {
			return f, "", userErrorf("vni %q: want 1..16777215", v)
		}
		f.VNI, name = uint32(n), "vni "+v
	}
	if p := q.Get("peer"); p != "" {
		given++
		a, err := netip.ParseAddr(p)
		if err != nil {
			return f, "", userErrorf("peer %q is not an IP address", p)
		}
		f.Peer, name = a.Unmap(), "peer "+p
	}
	if given != 1 {
		return f, "", userErrorf("capture: give one of port, vni or peer")
	}
	return f, name, nil
}

func (d *Daemon) serveCapture(w http.ResponseWriter, r *http.Request) {
	f, name, err := d.captureFilter(r)
	if err != nil {
		reply(w, nil, err)
		return
	}
	count := uint64(0)
	if c := r.URL.Query().Get("count"); c != "" {
		if count, err = strconv.ParseUint(c, 10, 64); err != nil || count == 0 {
			reply(w, nil, userErrorf("count %q: want a number from 1", c))
			return
		}
	}
	sess, err := d.sw.StartCapture(f, 0, 0)
	if err != nil {
		reply(w, nil, userErrorf("%v", err))
		return
	}
	d.obs.track(sess)
	defer d.obs.untrack(sess)
	defer sess.Close()
	ctx, cancel := d.streamContext(r)
	defer cancel()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	pw, err := capture.NewWriter(w, "ovlsw "+name, capture.DefaultSnap, func(id int) string { return d.sw.PortName(id) })
	if err != nil {
		return
	}
	fl, _ := w.(http.Flusher)
	flush := func() bool {
		if pw.Flush() != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	if !flush() {
		return
	}
	var rec capture.Record
	for n := uint64(0); count == 0 || n < count; n++ {
		if err := sess.Next(ctx, &rec); err != nil {
			if !errors.Is(err, capture.ErrClosed) {
				return
			}
			break
		}
		if pw.Write(&rec) != nil || !flush() {
			return
		}
	}
	flush()
}

// captureSessions tracks the node's capture sessions for the metrics.
type captureSessions struct {
	mu             sync.Mutex
	live           map[*capture.Session]struct{}
	captured, lost uint64 // of the sessions that ended
}

func (o *observer) track(s *capture.Session) {
	o.caps.mu.Lock()
	defer o.caps.mu.Unlock()
	if o.caps.live == nil {
		o.caps.live = map[*capture.Session]struct{}{}
	}
	o.caps.live[s] = struct{}{}
}

func (o *observer) untrack(s *capture.Session) {
	c, l := s.Stats()
	o.caps.mu.Lock()
	defer o.caps.mu.Unlock()
	delete(o.caps.live, s)
	o.caps.captured += c
	o.caps.lost += l
}

// captureStats returns the frames every capture session so far captured
// and lost.
func (d *Daemon) captureStats() (captured, lost uint64) {
	o := &d.obs
	o.caps.mu.Lock()
	defer o.caps.mu.Unlock()
	captured, lost = o.caps.captured, o.caps.lost
	for s := range o.caps.live {
		c, l := s.Stats()
		captured += c
		lost += l
	}
	return captured, lost
}
