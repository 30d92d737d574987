package dns_test

import (
	"net/netip"

	"github.com/ovlsw/ovlsw/fdb"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

// The switch keeps one Table for every network and one Responder, and
// hands every frame a port reads to Handle before forwarding it.
func ExampleResponder_Handle() {
	table := dns.NewTable()
	table.SetNetwork(100, "mynet", []netip.Addr{netip.MustParseAddr("10.0.0.1")},
		[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")})
	table.Set(100, fdb.MAC{0x02, 0, 0, 0, 0, 0x10}, dns.Record{
		Name: "web", Service: "websvc", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")},
	})

	writeToPort := func(port int, frame []byte) { /* the switch's TAP write */ }
	cfg := dns.DefaultConfig()
	cfg.Table = table
	cfg.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}
	cfg.Deliver = writeToPort
	r, err := dns.New(cfg)
	if err != nil {
		panic(err)
	}
	defer r.Close()

	// In a port reader: buf holds a frame of size bytes at off.
	const off = 64
	buf := make([]byte, off+1514)
	port, vni, size := 3, uint32(100), 0 // size: what the TAP read returned
	switch v, n := r.Handle(port, vni, buf, off, size); v {
	case dns.Answered:
		writeToPort(port, buf[off:off+n]) // the reply, back to the asker
	case dns.Forwarded, dns.Dropped:
		// nothing more to do
	case dns.NotDNS:
		// forward the frame as usual
	}
}
