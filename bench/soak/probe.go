package main

// This file holds the UDP probes: an echo server for datagrams in every
// long-lived container, and beside every TCP flow a probe that sends a
// small datagram each flowTick and records each echo. UDP neither
// retransmits nor backs off, so a probe's gaps are within a tick or two of
// the data path's own outage.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

const (
	// probeSize is a probe's datagram; probeWait is how long a probe waits
	// for its echo (a round trip takes well under a millisecond; a loaded
	// two-core machine may take tens).
	probeSize = 64
	probeWait = 100 * time.Millisecond
)

// serveUDPEcho answers every datagram to echoPort in c's namespace with
// itself.
func (s *soak) serveUDPEcho(c *container) error {
	var pc net.PacketConn
	err := c.ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", echoPort))
		return err
	})
	if err != nil {
		return fmt.Errorf("UDP echo server in %s: %w", c.name, err)
	}
	if !s.traffic.closers.add(pc) {
		return nil
	}
	s.traffic.wg.Add(1)
	go func() {
		defer s.traffic.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				_, _ = pc.WriteTo(buf[:n], from) // a lost echo is what the probe measures
			}
		}
	}()
	return nil
}

// dialUDP opens the probe's UDP socket in the flow's source namespace.
func (f *flow) dialUDP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := f.from.ns.Do(func() (err error) {
		conn, err = net.Dial("udp", ap.String())
		return err
	})
	return conn, err
}

// probe sends a datagram every flowTick and records each echo of the
// current one, until sending fails (no route, an ICMP error), the target's
// address changes or ctx is done.
func (f *flow) probe(ctx context.Context, conn net.Conn, to netip.Addr, out, in []byte) error {
	t := time.NewTicker(flowTick)
	defer t.Stop()
	for seq := uint64(0); ; seq++ {
		if f.to.addr() != to {
			return nil
		}
		fillChunk(out, f.id, seq)
		if _, err := conn.Write(out); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(probeWait))
		for {
			n, err := conn.Read(in)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // lost: the next probe goes out on the next tick
			}
			if err != nil {
				return fmt.Errorf("receive: %w", err)
			}
			if n == len(out) && bytes.Equal(in[:n], out) {
				f.progress(time.Now(), n)
				break
			}
			// an echo of an earlier probe, late: keep waiting for this one
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
