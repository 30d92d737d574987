package route

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ovlsw/ovlsw/vtep/offload"
)

// The seed corpus is committed under testdata/fuzz/FuzzRoute/.

// FuzzRoute feeds any frame to Parse; for what it accepts, Forward must
// keep a valid IPv4 header checksum valid and change only the MACs and the
// TTL, and BuildError, given room or not, must either refuse and leave the
// buffer alone or build an error whose checksums verify and whose quote is
// the packet's first bytes.
func FuzzRoute(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte, room uint16, kind uint8) {
		if len(frame) < 14 {
			return
		}
		et := binary.BigEndian.Uint16(frame[12:14])
		var p Packet
		if !Parse(frame, 14, et, &p) {
			return
		}
		orig := bytes.Clone(frame)
		v4ok := !p.V6 && offload.Checksum(frame[14:14+p.HdrLen], 0) == 0xffff
		q := p
		if Forward(frame, &q, routerMAC, otherMAC) {
			if v4ok && offload.Checksum(frame[14:14+p.HdrLen], 0) != 0xffff {
				t.Fatal("Forward broke a valid IPv4 header checksum")
			}
			ttl := 14 + 8
			if p.V6 {
				ttl = 14 + 7
			}
			if frame[ttl] != orig[ttl]-1 || !bytes.Equal(frame[12:ttl], orig[12:ttl]) || !bytes.Equal(frame[ttl+1:], orig[ttl+1:]) && p.V6 {
				t.Fatal("Forward changed more than the MACs and the TTL")
			}
		} else if !bytes.Equal(frame, orig) {
			t.Fatal("a refused Forward changed the frame")
		}
		copy(frame, orig)
		if q := p; EchoReply(frame, &q, routerMAC) {
			l4 := frame[14+p.HdrLen : 14+p.Len]
			if v4ok && (offload.Checksum(frame[14:14+p.HdrLen], 0) != 0xffff || offload.Checksum(orig[14+p.HdrLen:14+p.Len], 0) == 0xffff && offload.Checksum(l4, 0) != 0xffff) {
				t.Fatal("EchoReply broke a valid checksum")
			}
		}
		copy(frame, orig)
		from := gw4
		if p.V6 {
			from = gw6
		}
		b := append(bytes.Clone(frame), make([]byte, int(room)%1600)...)
		_ = MayError(b[:len(frame)], &p)
		n := BuildError(b, len(frame), &p, Kind(kind%4+1), from, routerMAC, 1450)
		if n == 0 {
			if !bytes.Equal(b[:len(frame)], orig) {
				t.Fatal("a refused BuildError changed the frame")
			}
			return
		}
		var e Packet
		if !Parse(b[:n], 14, et, &e) || e.Len != n-14 || e.Src != from || e.Dst != p.Src {
			t.Fatalf("error frame parses as %+v (%d bytes)", e, n)
		}
		l4 := b[14+e.HdrLen : n]
		if e.V6 {
			if offload.Checksum(l4, offload.PseudoHeaderSum6(e.Src, e.Dst, uint32(len(l4)), protoICMPv6)) != 0xffff {
				t.Fatal("ICMPv6 checksum")
			}
		} else if offload.Checksum(b[14:34], 0) != 0xffff || offload.Checksum(l4, 0) != 0xffff || n-14 > maxErrorIPv4 {
			t.Fatal("IPv4 error checksum or length")
		}
		if e.V6 && n-14 > maxErrorIPv6 {
			t.Fatal("IPv6 error too long")
		}
		if quote := l4[icmpHeaderLen:]; !bytes.Equal(quote, orig[14:14+len(quote)]) {
			t.Fatal("quote is not the packet's first bytes")
		}
	})
}
