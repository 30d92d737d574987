// Command ovlsw-docker is Docker's way onto ovlsw: a libnetwork remote
// network driver and IPAM driver, serving Docker's plugin protocol on a
// unix socket that dockerd discovers (/run/docker/plugins/ovlsw.sock) and
// talking to the node's ovlsw daemon over its control socket. With it,
//
//	docker network create -d ovlsw --ipam-driver ovlsw --subnet 10.0.9.0/24 -o ovlsw.network=web web
//	docker run --network web --dns 10.0.9.1 ...
//
// puts containers on ovlsw network web, on every host that does the same.
// driver.go and ipam.go say what each call does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ovlsw/ovlsw/cmd/control"
)

func main() {
	var cfg config
	plugin := flag.String("plugin-socket", "/run/docker/plugins/ovlsw.sock", "`PATH` of the plugin socket dockerd finds the driver at (its name before .sock is the driver's name)")
	flag.StringVar(&cfg.Socket, "socket", control.DefaultSocket, "control socket of this node's ovlsw daemon")
	flag.StringVar(&cfg.Netns, "netns", "/proc/1/ns/net", "network namespace dockerd runs in, where endpoints' interfaces are handed to it")
	flag.StringVar(&cfg.DockerHost, "docker-host", "unix:///run/docker.sock", "dockerd's API `SOCKET`, asked for containers' names and processes (empty: containers get no names on the overlay, and a restarted node drops their ports)")
	flag.StringVar(&cfg.State, "state", "/var/lib/ovlsw/docker.json", "`FILE` keeping which Docker networks map to which ovlsw networks")
	flag.Parse()
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(cfg, *plugin); err != nil {
		fmt.Fprintln(os.Stderr, "ovlsw-docker:", err)
		os.Exit(1)
	}
}

// run serves the plugin socket until SIGINT or SIGTERM, then removes it.
func run(cfg config, socket string) error {
	d, err := newDriver(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return err
	}
	os.Remove(socket) // a stale one of an earlier run
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	defer os.Remove(socket)
	srv := &http.Server{Handler: d.handler()}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	cfg.Log.Info("ovlsw-docker serving", "plugin_socket", socket, "ovlsw_socket", cfg.Socket)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
