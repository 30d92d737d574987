package main

// This file fills forwarding tables for the fdb scenario: Ethernet frames
// with distinct source MACs are written from an AF_PACKET socket on the
// sending endpoint's interface. Their destination is a unicast MAC nobody
// has, so every switch on the way floods them: the local one (ovlsw, or the
// kernel bridge) learns each source on the sending port, and the remote one
// learns it behind the sending VTEP (ovlsw) or on its vxlan port (the
// kernel bridge). Neither build has a control API for static entries, so
// this data-plane route is the only one that fills both the same way.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

const (
	// fillRate paces the frames. ovlsw floods each one to the peer and to
	// its other local ports, a few times the work of a forwarded frame, and
	// a TAP queue (500 frames) overruns silently: 50,000 frames a second,
	// in bursts of fillBurst, loses few, and the next round resends those.
	fillRate  = 50_000
	fillBurst = 32

	// fillRounds bounds the rounds of resending what is still missing.
	fillRounds = 8

	// fillEtherType is the IEEE local experimental EtherType: no stack
	// on the bench handles it.
	fillEtherType = 0x88b5
)

// fillDst is the destination of the fill frames: locally administered
// unicast, on no interface. Fill frame i has source 02:fe:<i, 32 bits>.
var (
	fillDst = [6]byte{0x02, 0xfd, 0xff, 0xff, 0xff, 0xff}
	fillOUI = [2]byte{0x02, 0xfe}
)

// fillFDB sends n frames with distinct source MACs from the first pair's
// source endpoint, then resends those some host has not learned, until
// both hosts' forwarding tables hold all n. It returns the smaller table's
// size.
func (h *harness) fillFDB(ctx context.Context, t *topo, n int) (int, error) {
	missing := make([]uint32, n)
	for i := range missing {
		missing[i] = uint32(i)
	}
	ep := t.pairs[0].src
	var tabs []fdbTable
	for round := 0; round < fillRounds && len(missing) > 0; round++ {
		start := time.Now()
		if err := sendFillFrames(ctx, ep, missing); err != nil {
			return 0, err
		}
		sent := time.Since(start)
		// Wait for the flood to be through before reading the tables.
		if err := t.settle(ctx); err != nil {
			return 0, err
		}
		if round == 0 && (t.build == buildOvlsw || t.build == buildOvlswEncrypted) {
			// Peak RSS now holds the learned table but not yet the
			// garbage of answering a 100,000-row /v1/fdb listing.
			rss, err := t.peakRSS()
			if err != nil {
				return 0, err
			}
			h.fillRSS = rss
			for _, nd := range t.nodes {
				if v, err := nd.peakRSS(); err == nil {
					h.log.printf("%-8s fdb fill: ovlsw %s peak RSS %.1f MiB", t.build, nd.name, v/(1<<20))
				}
			}
		}
		var err error
		if tabs, err = t.fdbTables(ctx, n); err != nil {
			return 0, err
		}
		h.log.printf("%-8s fdb fill round %d: %d frames sent in %v, tables read after %v: fill MACs learned per host %v",
			t.build, round+1, len(missing), sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), fillCounts(tabs))
		missing = missing[:0]
		for i := range n {
			for _, tab := range tabs {
				if !tab.fill[i] {
					missing = append(missing, uint32(i))
					break
				}
			}
		}
	}
	if len(missing) > 0 {
		return 0, fmt.Errorf("after %d rounds %d of %d source MACs are still missing from some table (learned per host: %v)",
			fillRounds, len(missing), n, fillCounts(tabs))
	}
	sizes := make([]int, len(tabs))
	for i, tab := range tabs {
		sizes[i] = tab.size
	}
	return slices.Min(sizes), nil
}

// sendFillFrames writes a minimum-size frame with fill source MAC i for
// each i in idx out of ep's interface, paced at fillRate.
func sendFillFrames(ctx context.Context, ep endpoint, idx []uint32) error {
	return ep.ns.Do(func() error {
		ifc, err := net.InterfaceByName(ep.ifname)
		if err != nil {
			return fmt.Errorf("fdb fill: %w", err)
		}
		// Protocol 0: the socket sends and never receives.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("fdb fill: AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: htons(fillEtherType), Halen: 6}
		copy(sa.Addr[:], fillDst[:])

		frame := make([]byte, 60) // the Ethernet minimum without the FCS
		copy(frame[0:6], fillDst[:])
		copy(frame[6:8], fillOUI[:])
		binary.BigEndian.PutUint16(frame[12:14], fillEtherType)
		start := time.Now()
		for k, i := range idx {
			binary.BigEndian.PutUint32(frame[8:12], i)
			for {
				err := unix.Sendto(fd, frame, 0, sa)
				if err == nil {
					break
				}
				if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
					return fmt.Errorf("fdb fill: send on %s: %w", ep.ifname, err)
				}
				time.Sleep(time.Millisecond) // the queue is full: let it drain
			}
			if k%fillBurst == fillBurst-1 {
				if err := ctx.Err(); err != nil {
					return err
				}
				if ahead := time.Duration(k+1)*time.Second/fillRate - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// settle waits until traffic through the topology stops: its packet
// counters (ovlsw's /v1/status, the kernel hosts' link statistics) read the
// same twice in a row, 200 ms apart.
func (t *topo) settle(ctx context.Context) error {
	var last uint64
	for i := 0; ; i++ {
		var now uint64
		switch t.build {
		case buildOvlsw, buildOvlswEncrypted:
			for _, n := range t.nodes {
				a, err := n.activity(ctx)
				if err != nil {
					return err
				}
				now += a
			}
		default:
			for _, host := range t.hosts {
				a, err := linkActivity(ctx, host)
				if err != nil {
					return err
				}
				now += a
			}
		}
		if i > 0 && now == last {
			return nil
		}
		last = now
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// linkActivity returns the sum of the packet and drop counters of every
// link in ns (`ip -s -j link show`).
func linkActivity(ctx context.Context, ns *testbed.Netns) (uint64, error) {
	out, err := ns.Run(ctx, "ip", "-s", "-j", "link", "show")
	if err != nil {
		return 0, err
	}
	type counters struct {
		Packets uint64 `json:"packets"`
		Dropped uint64 `json:"dropped"`
	}
	var links []struct {
		Stats struct {
			Rx counters `json:"rx"`
			Tx counters `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return 0, fmt.Errorf("ip -s -j link show in %s: %w", ns.Name, err)
	}
	var sum uint64
	for _, l := range links {
		s := l.Stats
		sum += s.Rx.Packets + s.Rx.Dropped + s.Tx.Packets + s.Tx.Dropped
	}
	return sum, nil
}

// fdbTable is one host's forwarding table as far as the fill cares.
type fdbTable struct {
	size int    // all entries
	fill []bool // fill[i]: fill source MAC i is in the table
}

func fillCounts(tabs []fdbTable) []int {
	c := make([]int, len(tabs))
	for i, tab := range tabs {
		for _, ok := range tab.fill {
			if ok {
				c[i]++
			}
		}
	}
	return c
}

// fdbTables reads each host's forwarding table: the daemon's /v1/fdb for
// ovlsw, `bridge fdb show br br-vx42` for the kernel (the vxlan device itself
// is static: nolearning). n is the number of fill MACs to look for.
func (t *topo) fdbTables(ctx context.Context, n int) ([]fdbTable, error) {
	// The hosts are read in parallel: a 100,000-entry dump takes the
	// kernel most of a second.
	var read []func() ([]string, error)
	switch t.build {
	case buildOvlsw, buildOvlswEncrypted:
		for _, nd := range t.nodes {
			read = append(read, func() ([]string, error) { return nd.fdbMACs(ctx) })
		}
	case buildKernel:
		for _, host := range t.hosts {
			read = append(read, func() ([]string, error) {
				out, err := host.Run(ctx, "bridge", "fdb", "show", "br", "br-"+vxName)
				if err != nil {
					return nil, err
				}
				var macs []string
				for line := range strings.Lines(out) {
					mac, _, _ := strings.Cut(line, " ")
					macs = append(macs, mac)
				}
				return macs, nil
			})
		}
	default:
		return nil, fmt.Errorf("%s has no forwarding table", t.build)
	}
	macLists := make([][]string, len(read))
	errs := make([]error, len(read))
	var wg sync.WaitGroup
	for i, f := range read {
		wg.Go(func() { macLists[i], errs[i] = f() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tabs := make([]fdbTable, len(macLists))
	for h, macs := range macLists {
		tabs[h] = fdbTable{size: len(macs), fill: make([]bool, n)}
		for _, s := range macs {
			if i, ok := fillIndex(s); ok && int(i) < n {
				tabs[h].fill[i] = true
			}
		}
	}
	return tabs, nil
}

// fillIndex returns i if s is fill MAC i, 02:fe:xx:xx:xx:xx in lower or
// upper case. It is a hand-written parser because the harness runs under
// the race detector in CI, where net.ParseMAC on 200,000 strings per poll
// adds up.
func fillIndex(s string) (uint32, bool) {
	if len(s) != 17 || !strings.EqualFold(s[:6], "02:fe:") {
		return 0, false
	}
	var i uint32
	for k := 6; k < 17; k += 3 {
		b, err := strconv.ParseUint(s[k:k+2], 16, 8)
		if err != nil || (k < 15 && s[k+2] != ':') {
			return 0, false
		}
		i = i<<8 | uint32(b)
	}
	return i, true
}
