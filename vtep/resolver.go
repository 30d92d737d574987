package vtep

// This file holds the hook of the name service into the TAP -> wire path:
// a frame a port sends to its network's DNS address on port 53 is handed
// to the resolver (vtep/dns), which answers it in place, the way the proxy
// answers ARP, or forwards it upstream and later writes the answer to the
// port through WriteToPort. Every other frame costs the resolver a few
// header compares.

import (
	"github.com/ovlsw/ovlsw/vtep/dns"
	"github.com/ovlsw/ovlsw/vtep/offload"
)

// Resolver answers the DNS queries ports send: *dns.Responder. Handle is
// called from the port readers, concurrently; it must not block.
type Resolver interface {
	Handle(port int, vni uint32, buf []byte, off, size int) (dns.Verdict, int)
	// ForgetPort drops what the resolver keeps of a removed port.
	ForgetPort(port int)
}

var _ Resolver = (*dns.Responder)(nil)

type resolverBox struct{ r Resolver }

// SetResolver makes r answer the DNS queries of every port from now on;
// nil stops it. Set it before traffic flows: queries in a batch being read
// may still see the old one.
func (s *Switch) SetResolver(r Resolver) {
	if r == nil {
		s.resolver.Store(nil)
		return
	}
	s.resolver.Store(&resolverBox{r})
}

// resolve hands the IP frame buf[off:off+size] from port p to the
// resolver. It reports whether the resolver took the frame, and the length
// of the answer it wrote in place (0: nothing to write back now).
func (s *Switch) resolve(rb *resolverBox, p *port, buf []byte, off, size int) (taken bool, n int) {
	switch v, n := rb.r.Handle(p.id, p.vni, buf, off, size); v {
	case dns.Answered:
		return true, n
	case dns.Forwarded, dns.Dropped:
		return true, 0
	}
	return false, 0
}

// WriteToPort writes one Ethernet frame to port id, as if the switch had
// forwarded it there: the resolver's answers that come later than the
// query's batch (forwarded upstream, extra TCP segments). It copies frame
// and may be called from any goroutine. It reports whether the port took
// the frame.
func (s *Switch) WriteToPort(id int, frame []byte) bool {
	ports := s.ports.Load()
	p := ports.byID[id]
	if p == nil || len(frame) > maxFrameLen(p.mtu) {
		return false
	}
	// Room for either layout's header in front: a zero virtio-net header
	// asks nothing of the kernel.
	const off = offload.VirtioNetHdrLen
	buf := make([]byte, off+len(frame))
	copy(buf[off:], frame)
	w, _ := p.dev.Write([][]byte{buf[off-ports.lay.frameOff:]}, ports.lay.ioOff)
	if w != 1 {
		s.drops.add(dropWriteError, 1)
		return false
	}
	p.traffic.tx(1, len(frame))
	return true
}
