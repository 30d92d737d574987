// Reachability: Ping (all echoes must come back) and WaitPing (poll until
// one does, for paths that take a moment to converge).

package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

// pingStats matches iputils' summary line, "3 packets transmitted, 3
// received, ..." (busybox says "3 packets received").
var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// Ping sends count echo requests to addr from inside the namespace
// (`ping -4|-6 -c count -W 1 -i 0.2 addr`) and returns an error, with
// ping's output, unless every one of them is answered: on a testbed a lost
// packet is a bug.
func (n *Netns) Ping(ctx context.Context, addr netip.Addr, count int) error {
	if count < 1 {
		return fmt.Errorf("testbed: Ping: count %d < 1", count)
	}
	family := "-4"
	if addr.Is6() && !addr.Is4In6() {
		family = "-6"
	}
	argv := []string{"ping", family, "-n", "-c", strconv.Itoa(count), "-W", "1", "-i", "0.2", addr.Unmap().String()}
	out, err := n.Run(ctx, argv...)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	m := pingStats.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("testbed: ping %v from %s: no summary in output:\n%s", addr, n.Name, out)
	}
	if m[1] != m[2] {
		return fmt.Errorf("testbed: ping %v from %s: %s of %s answered:\n%s", addr, n.Name, m[2], m[1], out)
	}
	return nil
}

// WaitPing pings addr once at a time until a reply arrives, ctx is done or
// timeout has passed, for paths that need a moment (ARP, an overlay
// converging). It returns the last ping's error on failure.
func (n *Netns) WaitPing(ctx context.Context, addr netip.Addr, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if last = n.Ping(ctx, addr, 1); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: no ping reply from %v in %s within %v: %w", addr, n.Name, timeout, last)
		case <-t.C:
		}
	}
}
