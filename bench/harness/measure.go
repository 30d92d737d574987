package main

// This file holds the measurements, each over a pair of endpoints: iperf3
// TCP throughput and 64-byte UDP packet rate, ping latency, a TCP
// request/response loop, and the ovlsw processes' CPU and memory. cpu.go
// reads the machine's CPU time.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

const (
	// udpPayload is the UDP payload of the packet-rate test: small enough
	// that per-packet cost, not bytes, sets the rate.
	udpPayload = 64

	// pingInterval spaces the latency pings: 5 ms is far above any RTT on
	// the bench, so echoes never queue behind each other, and 200 of them
	// take a second.
	pingInterval = "0.005"

	// iperfSlack is how long an iperf3 client may take beyond its test
	// time (connecting, exchanging results) before it is killed.
	iperfSlack = 30 * time.Second
)

// iperfSeconds rounds d up to the whole seconds iperf3's -t takes.
func iperfSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// iperfSum is one of the summaries of iperf3's JSON output.
type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         float64 `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
}

// iperfResult is the part of `iperf3 -J` the harness reads. sum_sent and
// sum_received hold what the sender sent and the receiver got, for TCP
// and (since iperf3 3.x) UDP.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
	} `json:"end"`
}

// runIperf runs an iperf3 client from p.src to p.dst's server for secs
// seconds with extra arguments and returns its parsed JSON.
func runIperf(ctx context.Context, p pair, secs int, extra ...string) (iperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+iperfSlack)
	defer cancel()
	argv := []string{"iperf3", "-c", p.dst.addr.String(), "-p", strconv.Itoa(p.port),
		"-t", strconv.Itoa(secs), "-J", "--connect-timeout", "5000"}
	argv = append(argv, extra...)
	out, runErr := p.src.ns.Run(ctx, argv...)
	var r iperfResult
	jsonErr := json.Unmarshal([]byte(out), &r)
	switch {
	case jsonErr == nil && r.Error != "":
		return r, fmt.Errorf("%s: iperf3: %s", strings.Join(argv, " "), r.Error)
	case runErr != nil:
		return r, runErr
	case jsonErr != nil:
		return r, fmt.Errorf("%s: output is not iperf3 JSON: %w", strings.Join(argv, " "), jsonErr)
	case r.End.SumReceived.Seconds <= 0:
		return r, fmt.Errorf("%s: no receiver summary in the output", strings.Join(argv, " "))
	}
	return r, nil
}

// tput is one throughput run over one or more pairs at once.
type tput struct {
	bytes   float64       // delivered at the receivers, all pairs
	bps     float64       // delivered bits per second, summed over pairs
	busy    time.Duration // non-idle CPU time of the whole machine during the run
	ovlsw   time.Duration // CPU time of the topology's ovlsw processes during the run
	elapsed time.Duration
}

// cpuPerGB is the machine's CPU seconds per 10^9 bytes delivered.
func (r tput) cpuPerGB() float64 { return r.busy.Seconds() / (r.bytes / 1e9) }

// ovlswCores is the ovlsw processes' CPU use in cores.
func (r tput) ovlswCores() float64 { return r.ovlsw.Seconds() / r.elapsed.Seconds() }

// throughput runs TCP iperf3 clients with streams streams over every pair at
// once and reads the CPU used meanwhile.
func (h *harness) throughput(ctx context.Context, t *topo, pairs []pair, streams int) (tput, error) {
	secs := iperfSeconds(h.opts.Duration)
	cpu0, err := machineCPU()
	if err != nil {
		return tput{}, err
	}
	ov0 := t.ovlswCPU()
	start := time.Now()

	results := make([]iperfResult, len(pairs))
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() { results[i], errs[i] = runIperf(ctx, p, secs, "-P", strconv.Itoa(streams)) })
	}
	wg.Wait()

	r := tput{elapsed: time.Since(start), ovlsw: t.ovlswCPU() - ov0}
	cpu1, err := machineCPU()
	if err != nil {
		return tput{}, err
	}
	r.busy = cpu1.busy - cpu0.busy
	if err := errors.Join(errs...); err != nil {
		return tput{}, err
	}
	for _, res := range results {
		r.bytes += res.End.SumReceived.Bytes
		r.bps += res.End.SumReceived.BitsPerSecond
	}
	if r.bytes <= 0 {
		return tput{}, errors.New("iperf3 delivered nothing")
	}
	return r, nil
}

// udpRate sends 64-byte UDP payloads as fast as iperf3 can over p and
// returns the packets per second delivered at the receiver and the
// percentage lost.
func (h *harness) udpRate(ctx context.Context, p pair) (pps, lossPct float64, err error) {
	r, err := runIperf(ctx, p, iperfSeconds(h.opts.Duration),
		"-u", "-b", "0", "-l", strconv.Itoa(udpPayload))
	if err != nil {
		return 0, 0, err
	}
	// Packets from bytes: both summaries count payload bytes, and every
	// datagram carries exactly udpPayload of them.
	sent := r.End.SumSent.Bytes / udpPayload
	got := r.End.SumReceived.Bytes / udpPayload
	if sent <= 0 || got <= 0 {
		return 0, 0, fmt.Errorf("iperf3 UDP: sent %.0f packets, %.0f delivered", sent, got)
	}
	return got / r.End.SumReceived.Seconds, 100 * max(0, sent-got) / sent, nil
}

// pingTime matches the round-trip time in iputils' per-reply line.
var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingLatency sends count echo requests pingInterval apart over p and
// returns the p50 and p99 round-trip times, by nearest rank.
func (h *harness) pingLatency(ctx context.Context, p pair, count int) (p50, p99 time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(count)*10*time.Millisecond+30*time.Second)
	defer cancel()
	out, err := p.src.ns.Run(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-i", pingInterval, "-W", "1", p.dst.addr.String())
	if err != nil {
		return 0, 0, err
	}
	var rtts []time.Duration
	for _, m := range pingTime.FindAllStringSubmatch(out, -1) {
		ms, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("ping: bad time %q", m[1])
		}
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	if len(rtts) < count*9/10 {
		return 0, 0, fmt.Errorf("ping %v: %d of %d echoes answered:\n%s", p.dst.addr, len(rtts), count, out)
	}
	slices.Sort(rtts)
	return percentile(rtts, 50), percentile(rtts, 99), nil
}

// percentile returns the nearest-rank pth percentile of sorted s.
func percentile(s []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// requestResponse runs one TCP connection over p for the configured
// duration: the client writes one byte, the server echoes it, the client
// reads it, and so on. It returns round trips per second.
func (h *harness) requestResponse(ctx context.Context, p pair) (float64, error) {
	var ln net.Listener
	err := p.dst.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.dst.addr, 0).String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("request/response: listen in %s: %w", p.dst.ns.Name, err)
	}
	defer ln.Close()

	srvDone := make(chan struct{})
	var srvConn net.Conn
	var srvMu sync.Mutex
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		srvMu.Lock()
		srvConn = c
		srvMu.Unlock()
		defer c.Close()
		var b [1]byte
		for {
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				return
			}
		}
	}()
	// Whatever happens, the server goroutine is gone on return.
	defer func() {
		ln.Close()
		srvMu.Lock()
		if srvConn != nil {
			srvConn.Close()
		}
		srvMu.Unlock()
		<-srvDone
	}()

	var c net.Conn
	err = p.src.ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("request/response: dial %v: %w", ln.Addr(), err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	start := time.Now()
	end := start.Add(h.opts.Duration)
	_ = c.SetDeadline(end.Add(5 * time.Second))
	var b [1]byte
	n := 0
	for time.Now().Before(end) {
		b[0] = byte(n)
		if _, err := c.Write(b[:]); err != nil {
			return 0, fmt.Errorf("request/response: write after %d round trips: %w", n, err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, fmt.Errorf("request/response: read after %d round trips: %w", n, err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// ovlswCPU returns the CPU time the topology's ovlsw processes have used
// (zero for the other builds, or for a process that cannot be read).
func (t *topo) ovlswCPU() time.Duration {
	var sum time.Duration
	for _, n := range t.nodes {
		if u, s, err := procCPU(n.pid); err == nil {
			sum += u + s
		}
	}
	return sum
}

// peakRSS returns the largest VmHWM (peak resident set size) of the
// topology's ovlsw processes, in bytes.
func (t *topo) peakRSS() (float64, error) {
	var peak float64
	for _, n := range t.nodes {
		v, err := n.peakRSS()
		if err != nil {
			return 0, err
		}
		peak = max(peak, v)
	}
	return peak, nil
}

// peakRSS returns the node's VmHWM from /proc/PID/status, in bytes.
func (n *node) peakRSS() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.pid))
	if err != nil {
		return 0, fmt.Errorf("ovlsw %s: %w", n.name, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil || kb <= 0 {
				return 0, fmt.Errorf("ovlsw %s: VmHWM %q: %v", n.name, v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("ovlsw %s: no VmHWM in /proc/%d/status", n.name, n.pid)
}

// waitListen waits until the server process proc listens on TCP port,
// reading its own /proc/PID/net/tcp{,6}, which show the namespace it runs
// in. Dialing the port instead would use up a one-off server.
func waitListen(ctx context.Context, proc *testbed.Proc, port int) error {
	want := fmt.Sprintf(":%04X", port)
	deadline := time.Now().Add(readyTimeout)
	for {
		for _, f := range []string{"tcp", "tcp6"} {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", proc.Pid(), f))
			for line := range strings.Lines(string(b)) {
				fs := strings.Fields(line)
				// sl local_address rem_address st ...; st 0A is LISTEN.
				if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
					return nil
				}
			}
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("iperf3 server on port %d exited: %s", port, proc.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server not listening on port %d after %v: %s", port, readyTimeout, proc.Output())
		}
	}
}
