package main

// This file holds the endpoints' DNS names. Docker tells a remote network
// driver nothing about the container (CreateEndpoint and Join carry no
// name), so after Join the plugin asks dockerd which container holds the
// endpoint and gives the ovlsw endpoint that container's name and network
// aliases (POST /v1/names). The switch then answers them on every node,
// and containers find each other across hosts by name: Docker's embedded
// resolver (127.0.0.11) answers its own host's containers and forwards
// the rest to the servers given with --dns, so `--dns GATEWAY` reaches
// ovlsw's name service.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ovlsw/ovlsw/cmd/control"
)

// nameWait bounds how long the plugin looks for an endpoint's container:
// dockerd shows it once the container's start has got past Join.
const nameWait = 30 * time.Second

// dockerAPI is the part of dockerd's API the plugin reads.
type dockerAPI struct {
	http *http.Client
}

func newDockerAPI(host string) (*dockerAPI, error) {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return nil, fmt.Errorf("docker host %q: want unix:///PATH", host)
	}
	return &dockerAPI{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

func (a *dockerAPI) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/v1.41"+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// containerNames finds the container holding endpoint epID of network
// netID: its name, its aliases on that network and its process (whose
// network namespace is the container's).
func (a *dockerAPI) containerNames(ctx context.Context, netID, epID string) (name string, aliases []string, pid int, err error) {
	var n struct {
		Name       string
		Containers map[string]struct {
			Name       string
			EndpointID string
		}
	}
	if err := a.get(ctx, "/networks/"+url.PathEscape(netID), &n); err != nil {
		return "", nil, 0, err
	}
	for id, c := range n.Containers {
		if c.EndpointID != epID {
			continue
		}
		var ct struct {
			State struct {
				Pid int
			}
			NetworkSettings struct {
				Networks map[string]struct {
					Aliases    []string
					EndpointID string
				}
			}
		}
		if err := a.get(ctx, "/containers/"+url.PathEscape(id)+"/json", &ct); err != nil {
			return "", nil, 0, err
		}
		name = strings.TrimPrefix(c.Name, "/")
		for _, nw := range ct.NetworkSettings.Networks {
			if nw.EndpointID == epID {
				for _, al := range nw.Aliases {
					if !strings.EqualFold(al, name) && !slices.Contains(aliases, al) {
						aliases = append(aliases, al)
					}
				}
			}
		}
		return name, aliases, ct.State.Pid, nil
	}
	return "", nil, 0, errNotYet
}

var errNotYet = fmt.Errorf("not joined yet")

// afterJoin runs in its own goroutine once Join has answered (dockerd
// holds the container while it waits for Join): it names the endpoint and
// records where Docker moved its interface.
func (d *driver) afterJoin(req joinRequest, ep endpointState) {
	ctx, cancel := context.WithTimeout(context.Background(), nameWait)
	defer cancel()
	if pid := d.nameEndpoint(ctx, req.NetworkID, req.EndpointID, ep); pid > 0 {
		// The container's namespace by its process: dockerd's bind mount
		// (SandboxKey) may not be visible in this mount namespace or the
		// node's.
		d.relocate(ctx, req.EndpointID, fmt.Sprintf("/proc/%d/ns/net", pid), ep)
	}
}

// nameEndpoint gives the ovlsw endpoint of epID its container's names,
// looking for the container until ctx is done, and returns the container's
// process (0 if not found).
func (d *driver) nameEndpoint(ctx context.Context, netID, epID string, ep endpointState) int {
	if d.docker == nil {
		return 0
	}
	var name string
	var aliases []string
	var pid int
	var err error
	for {
		name, aliases, pid, err = d.docker.containerNames(ctx, netID, epID)
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // polling interval
		}
	}
	if err != nil {
		d.cfg.Log.Warn("no container name for endpoint", "endpoint", epID, "err", err)
		return 0
	}
	req := control.NamesRequest{Netns: d.cfg.Netns, IfName: ep.IfName, DNSName: name, Aliases: aliases}
	if err := d.do(http.MethodPost, "/v1/names", req, nil); err != nil {
		// A name that is not a DNS name, or taken: the container keeps
		// working, unnamed on the overlay.
		d.cfg.Log.Warn("endpoint not named", "endpoint", epID, "name", name, "err", err)
		return pid
	}
	d.cfg.Log.Info("endpoint named", "endpoint", epID, "name", name, "aliases", aliases)
	return pid
}

// relocate finds the endpoint's interface in the container's namespace
// (sandbox, a path) by its MAC, once Docker has moved it there, and tells the
// daemon. Without it a restarted node would look for the TAP in dockerd's
// namespace under the name it was made with, and drop the endpoint.
func (d *driver) relocate(ctx context.Context, epID, sandbox string, ep endpointState) {
	if ep.MAC == "" || sandbox == "" {
		return
	}
	var ifname string
	var err error
	for {
		ifname, err = linkByMAC(sandbox, ep.MAC)
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
	if err != nil {
		d.cfg.Log.Warn("interface not found in the container; a restart of the node will drop the endpoint", "endpoint", epID, "err", err)
		return
	}
	req := control.RelocateRequest{Netns: d.cfg.Netns, IfName: ep.IfName, ToNetns: sandbox, ToIfName: ifname}
	if err := d.do(http.MethodPost, "/v1/relocate", req, nil); err != nil {
		d.cfg.Log.Warn("relocate", "endpoint", epID, "err", err)
	}
}
