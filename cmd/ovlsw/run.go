package main

// This file holds what ovlsw up does once its configuration is built: start
// the node, tell systemd (sd_notify) and wait for signals.

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ovlsw/ovlsw/cmd/daemon"
)

// runUp starts a node with cfg and runs it until SIGINT, SIGTERM (leave and
// remove everything) or SIGUSR2 (stop for a restart). SIGHUP reads the
// configuration file again and applies what can change at run time
// (reload.go). Under systemd (Type=notify) it reports READY=1 once the
// node is up, data path and control socket included, and STOPPING=1 when
// a signal stops it.
func runUp(c *cobra.Command, cfg daemon.Config, cf *configFile) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR2, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg.Version = version // labels ovlsw_build_info
	d, err := daemon.New(cfg)
	if err != nil {
		return flagError(err)
	}
	log := cfg.Logger
	notify(log, sdnotify.SdNotifyReady)
	running := effective(c.Flags())
	for {
		sig := <-sigs
		if sig == syscall.SIGHUP {
			notify(log, reloadingState())
			running = reload(d, cf, running, log)
			notify(log, sdnotify.SdNotifyReady)
			continue
		}
		log.Info("shutting down", "signal", sig.String())
		notify(log, sdnotify.SdNotifyStopping)
		if sig == syscall.SIGUSR2 {
			return d.CloseForRestart()
		}
		return d.Close()
	}
}

// notify sends state to systemd's notification socket ($NOTIFY_SOCKET);
// without one (not started by systemd) it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sdnotify.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// reloadingState is RELOADING=1 with the monotonic clock in microseconds,
// which systemd 253 and later want beside it.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return sdnotify.SdNotifyReloading
	}
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sdnotify.SdNotifyReloading, ts.Sec*1e6+ts.Nsec/1e3)
}
