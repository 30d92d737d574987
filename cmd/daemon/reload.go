package daemon

// This file holds Reload: a new configuration applied to a running node
// (ovlsw up on SIGHUP). What the node can change at run time it changes:
// the log level, the FDB's learning limits, the flood rate of ports created
// from now on and the flood policy of networks created from now on. Any
// other value is fixed for the process's life; Reload names each one that
// differs, for the caller to say it needs a restart.

import (
	"reflect"
	"sync"
)

// reloader owns the node's configuration as given to New (before the
// defaults New fills in), which a reload compares with.
type reloader struct {
	mu    sync.Mutex // serialises reloads and guards given
	given Config
}

func newReloader(given Config) *reloader { return &reloader{given: given} }

// fixedSkip names the Config fields that are not settings: Reload neither
// applies nor compares them.
var fixedSkip = map[string]bool{"Logger": true, "Out": true, "LevelVar": true, "Version": true}

// Reload applies next to the running node where it can. It validates next
// first, and an invalid one changes nothing (a ConfigError). applied names
// the values it changed; refused names (as Config fields) the values that
// differ but are fixed until a restart. The flood rate applies to ports
// created after the reload (endpoints attached or taken back) and the flood
// policy to networks created after it, not to those already there.
// It is safe for concurrent use.
func (d *Daemon) Reload(next Config) (applied, refused []string, err error) {
	if err := next.Validate(); err != nil {
		return nil, nil, err
	}
	r := d.conf
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.given
	reloaded := map[string]bool{}
	if next.LogLevel != cur.LogLevel && cur.LevelVar != nil {
		cur.LevelVar.Set(next.LogLevel)
		cur.LogLevel = next.LogLevel
		applied = append(applied, "log level")
		reloaded["LogLevel"] = true
	}
	if next.MaxMACsPerPort != cur.MaxMACsPerPort || next.MaxMACsPerVNI != cur.MaxMACsPerVNI {
		d.fdb.SetLimits(next.MaxMACsPerPort, next.MaxMACsPerVNI)
		if next.MaxMACsPerPort != cur.MaxMACsPerPort {
			applied = append(applied, "MAC limit per port")
		}
		if next.MaxMACsPerVNI != cur.MaxMACsPerVNI {
			applied = append(applied, "MAC limit per VNI")
		}
		cur.MaxMACsPerPort, cur.MaxMACsPerVNI = next.MaxMACsPerPort, next.MaxMACsPerVNI
	}
	if next.FloodRate != cur.FloodRate {
		d.eps.floodRate.Store(int64(next.FloodRate))
		cur.FloodRate = next.FloodRate
		applied = append(applied, "flood rate (for new ports)")
	}
	if next.Flood != cur.Flood {
		d.nets.defFlood.Store(&next.Flood)
		cur.Flood = next.Flood
		applied = append(applied, "flood policy (for new networks)")
	}
	r.given = cur
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		if fixedSkip[f.Name] || reloaded[f.Name] {
			continue
		}
		if !reflect.DeepEqual(reflect.ValueOf(cur).FieldByIndex(f.Index).Interface(), reflect.ValueOf(next).FieldByIndex(f.Index).Interface()) {
			refused = append(refused, f.Name)
		}
	}
	return applied, refused, nil
}
