package main

// This file reads where the machine's CPU time goes, from /proc: the
// machine's non-idle time (/proc/stat), a process's time (/proc/PID/stat),
// and the time of processes that are not the harness's, so that it can tell
// how much CPU other work on the machine took while it measured. Every
// figure assumes an otherwise idle machine; on a shared one the report says
// when that did not hold.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat times.
// It is 100 on every Linux architecture's user ABI.
const clockTicks = 100

// otherWorkLimit is how many cores of other work during a measurement make
// the report warn.
const otherWorkLimit = 0.15

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// cpuTimes is a reading of the machine's CPU time.
type cpuTimes struct {
	at   time.Time
	busy time.Duration // non-idle: user+nice+system+irq+softirq+steal
	// other is the CPU time of every user-space process that is not the
	// harness or its child, with its reaped children, by pid.
	other map[int]time.Duration
}

// machineCPU reads the first line of /proc/stat (guest time is already part
// of user) and the CPU time of other processes.
func machineCPU() (cpuTimes, error) {
	c := cpuTimes{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return c, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [9]uint64
	for i := 1; i < 9; i++ {
		if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return c, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
	}
	// 1 user, 2 nice, 3 system, 4 idle, 5 iowait, 6 irq, 7 softirq, 8 steal
	c.busy = ticks(v[1] + v[2] + v[3] + v[6] + v[7] + v[8])
	c.other = otherProcesses()
	return c, nil
}

// otherCores returns how many cores other user-space processes used between
// a and b: the change in the sum of their times including reaped children.
// Summing rather than comparing pid by pid keeps a process that ended in
// between right: its time moves into its parent's cutime when it is reaped,
// and that parent's jump, less what the process had shown at a, is exactly
// what it used meanwhile. Kernel threads are left out: on the bench they
// mostly carry the harness's own network traffic.
func otherCores(a, b cpuTimes) float64 {
	var sum time.Duration
	for _, t := range b.other {
		sum += t
	}
	for _, t := range a.other {
		sum -= t
	}
	return max(0, sum.Seconds()) / b.at.Sub(a.at).Seconds()
}

// otherProcesses returns utime+stime+cutime+cstime (fields 14-17 of
// /proc/PID/stat) of every process except this one, its descendants
// (ovlsw, iperf3, whatever the testbed started) and kernel threads (pid 2,
// kthreadd, and its children).
func otherProcesses() map[int]time.Duration {
	type proc struct {
		ppid int
		cpu  time.Duration
	}
	procs := make(map[int]proc)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		procs[pid] = proc{ppid, parseTicks(f[11]) + parseTicks(f[12]) + parseTicks(f[13]) + parseTicks(f[14])}
	}
	// ours reports whether pid descends from this process or kthreadd;
	// known memoizes it.
	self := os.Getpid()
	known := map[int]bool{self: true, 2: true, 0: false, 1: false}
	var ours func(pid, depth int) bool
	ours = func(pid, depth int) bool {
		if v, ok := known[pid]; ok {
			return v
		}
		p, ok := procs[pid]
		v := ok && depth < 64 && ours(p.ppid, depth+1)
		known[pid] = v
		return v
	}
	out := make(map[int]time.Duration)
	for pid, p := range procs {
		if !ours(pid, 0) {
			out[pid] = p.cpu
		}
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name:
// f[0] is field 3 (state), f[1] field 4 (ppid), f[11] field 14 (utime).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

func parseTicks(s string) time.Duration {
	v, _ := strconv.ParseUint(s, 10, 64)
	return ticks(v)
}

// procCPU returns the user and system CPU time of process pid (all its
// threads).
func procCPU(pid int) (user, sys time.Duration, err error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ticks(u), ticks(s), nil
}

// idleSample is how long checkIdle watches the machine.
const idleSample = 500 * time.Millisecond

// checkIdle measures how much CPU other work uses while the harness does
// nothing, and records it.
func (h *harness) checkIdle(ctx context.Context, when string) {
	a, err := machineCPU()
	if err != nil {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(idleSample):
	}
	b, err := machineCPU()
	if err != nil {
		return
	}
	h.otherWork(when, otherCores(a, b))
}

// otherWork records how many cores other work used during when, and warns
// if that was enough to disturb the figures.
func (h *harness) otherWork(when string, cores float64) {
	h.rep.Background = append(h.rep.Background, background{When: when, OtherCores: cores})
	if cores > otherWorkLimit {
		h.rep.note(fmt.Sprintf("WARNING: other work used %.2f cores %s (loadavg now %s); "+
			"the figures assume an otherwise idle machine: treat those from then as unreliable and run again",
			cores, when, firstLine("/proc/loadavg", "?")))
		h.log.printf("WARNING: other work used %.2f cores %s", cores, when)
	}
}
