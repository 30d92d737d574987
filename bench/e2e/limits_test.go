package e2e

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovlsw/ovlsw/bench/testbed"
)

// TestE2EMACFlood: a host port (no port security) sending from 500 random
// source MACs fills its learning limit and no more; the table keeps every
// other entry and traffic between the nodes goes on.
func TestE2EMACFlood(t *testing.T) {
	_, h1, h2 := twoHosts(t)
	n1 := startNode(t, h1, "f1", "--vni", "42", "--bind", ul1.Addr().String(), "--address", ov1.String(), "--max-macs-per-port", "50")
	startNode(t, h2, "f2", "--vni", "42", "--bind", ul2.Addr().String(), "--join", ul1.Addr().String(), "--address", ov2.String())
	ctx := testCtx(t, time.Minute)
	if err := h1.WaitPing(ctx, ov2.Addr(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before := len(n1.fdb())

	fd, to := rawSocket(t, h1, n1.tap)
	frame := make([]byte, 60)
	copy(frame[0:6], []byte{0x02, 0xee, 0xee, 0xee, 0xee, 0xee}) // unknown unicast
	binary.BigEndian.PutUint16(frame[12:14], 0x88b5)             // local experimental EtherType
	for i := range 500 {
		copy(frame[6:12], []byte{0x02, 0xf1, 0, 0, byte(i >> 8), byte(i)})
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	var refused uint64
	if !poll(10*time.Second, func() bool { refused = n1.status().FDB.Refused; return refused >= 450 }) {
		t.Fatalf("refused %d of 500 at a limit of 50:\n%s", refused, jsonString(n1.status()))
	}
	if got := len(n1.fdb()); got > before+50 {
		t.Errorf("%d entries after the flood, want at most %d", got, before+50)
	}
	// n2's entries survived and the nodes still talk.
	if err := h1.Ping(ctx, ov2.Addr(), 2); err != nil {
		t.Errorf("after the flood: %v", err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rawSocket opens an AF_PACKET socket in ns for sending whole Ethernet
// frames out of ifname, closed when the test ends.
func rawSocket(t *testing.T, ns *testbed.Netns, ifname string) (int, *unix.SockaddrLinklayer) {
	t.Helper()
	var fd, index int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		index = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, &unix.SockaddrLinklayer{Ifindex: index, Halen: 6}
}

// TestE2EQueueDrops: frames a container sends while ovlsw cannot read them
// (here: ovlsw stopped with SIGSTOP) overflow the TAP's queue; ovlsw status
// shows them as the port's queue_drops, as the kernel counts them.
func TestE2EQueueDrops(t *testing.T) {
	bed, h1, _ := twoHosts(t)
	n1 := startNode(t, h1, "q1", "--vni", "42", "--subnet", "10.98.0.0/24", "--bind", ul1.Addr().String())
	c := mustNetns(t, bed, "qc")
	ep := n1.attach(c)
	fd, to := rawSocket(t, c, "eth0")
	mac, _ := net.ParseMAC(ep.MAC)
	frame := make([]byte, 60)
	copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:12], mac)
	binary.BigEndian.PutUint16(frame[12:14], 0x88b5)

	if err := n1.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		unix.Sendto(fd, frame, 0, to) // past the queue, the kernel drops and counts
	}
	if err := n1.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var got uint64
	for _, p := range n1.status().Ports {
		if p.Name == ep.Name {
			got = p.QueueDrops
		}
	}
	if got == 0 {
		t.Fatalf("queue_drops 0 after 3000 frames sent to a stopped ovlsw:\n%s", n1.cli("status"))
	}
	out, err := c.Run(testCtx(t, 10*time.Second), "cat", "/sys/class/net/eth0/statistics/tx_dropped")
	if err != nil || strings.TrimSpace(out) != strconv.FormatUint(got, 10) {
		t.Errorf("queue_drops %d, the kernel's tx_dropped %q (%v)", got, out, err)
	}
}
