package main

// This file holds SIGHUP: read the --config file again, keep the command
// line's flags, and apply what changed where the running node can
// (daemon.Reload); every other change is logged as needing a restart.

import (
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ovlsw/ovlsw/cmd/daemon"
)

// reloadable names the flags whose change a reload applies to the running
// node (daemon.Reload); a change of any other flag needs a restart, so a
// new flag is safe without an entry here. --flood-rate applies to ports
// created after the reload, --flood to networks created after it.
var reloadable = map[string]bool{
	"log-level":         true,
	"max-macs-per-port": true,
	"max-macs-per-vni":  true,
	"flood-rate":        true,
	"flood":             true,
}

// reloadTarget is the running node: *daemon.Daemon.
type reloadTarget interface {
	Reload(next daemon.Config) (applied, refused []string, err error)
}

var _ reloadTarget = (*daemon.Daemon)(nil)

// parseAgain builds ovlsw up's configuration from args (the command line's
// flags) and the --config file they name, as at start, and checks it. It
// returns the configuration and the value of every flag.
func parseAgain(args []string) (daemon.Config, map[string][]string, error) {
	var cfg daemon.Config
	var vals map[string][]string
	c := newUpCommand(func(c *cobra.Command, next daemon.Config, cf *configFile) error {
		if err := next.Validate(); err != nil {
			return flagError(err)
		}
		cfg, vals = next, effective(c.Flags())
		return nil
	})
	c.SilenceErrors, c.SilenceUsage = true, true
	c.SetArgs(args)
	c.SetOut(io.Discard)
	c.SetErr(io.Discard)
	if err := c.Execute(); err != nil {
		return daemon.Config{}, nil, err
	}
	return cfg, vals, nil
}

// changedKeys returns the flags whose values differ between two
// configurations (effective), sorted.
func changedKeys(old, next map[string][]string) []string {
	var keys []string
	for k, v := range next {
		if o, ok := old[k]; !ok || !slices.Equal(o, v) {
			keys = append(keys, k)
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// plan splits the changed flags into those a reload applies and those that
// need a restart.
func plan(running, next map[string][]string) (apply, restart []string) {
	for _, k := range changedKeys(running, next) {
		if reloadable[k] {
			apply = append(apply, k)
		} else {
			restart = append(restart, k)
		}
	}
	return apply, restart
}

// reload reads cf again and applies it to d. It returns the flag values
// now in force: the file's, but the running ones for flags that need a
// restart (so that every reload says so again). A file that cannot be read
// or used is logged and changes nothing.
func reload(d reloadTarget, cf *configFile, running map[string][]string, log *slog.Logger) map[string][]string {
	next, vals, err := parseAgain(cf.args())
	if err != nil {
		log.Error("reload: configuration not changed", "err", err)
		return running
	}
	apply, restart := plan(running, vals)
	applied, _, err := d.Reload(next)
	if err != nil {
		log.Error("reload: configuration not changed", "err", flagError(err))
		return running
	}
	now := maps.Clone(vals)
	for _, k := range restart {
		log.Warn("not applied: " + k + " changed; restart to apply")
		now[k] = running[k]
	}
	log.Info("configuration reloaded", "file", cf.path, "changed", strings.Join(apply, ","), "applied", strings.Join(applied, ", "))
	return now
}
