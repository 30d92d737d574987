package dns

// This file holds name resolution against one network: from a question's
// name to an endpoint's or service's addresses, a PTR target, an
// authoritative "no such name", or "not ours, forward it".

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// resKind is what a name is to a network.
type resKind uint8

const (
	resForward  resKind = iota // not the network's: ask the upstreams
	resAddrs                   // an endpoint, alias, tasks.SERVICE or SERVICE
	resPTR                     // the reverse name of an endpoint's address
	resNXDomain                // under the network's name, or a reverse name in its subnets, unknown
	resApex                    // the network's name itself: exists, holds no records
)

// resolution is the outcome of resolve.
type resolution struct {
	kind resKind
	t    target           // resAddrs
	ptr  *dnsmessage.Name // resPTR: "name.network."
}

// Reverse-lookup zones.
const (
	inAddrArpa = ".in-addr.arpa"
	ip6Arpa    = ".ip6.arpa"
)

// resolve says what name is to n. Names compare case-insensitively, with or
// without the trailing dot; a name is tried as it stands first (an endpoint
// name may itself contain dots), then relative to the network's name. It
// does not allocate.
func (n *network) resolve(name *dnsmessage.Name) resolution {
	var lb [255]byte
	l := int(name.Length)
	for i := 0; i < l; i++ {
		c := name.Data[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lb[i] = c
	}
	if l > 0 && lb[l-1] == '.' {
		l--
	}
	s := lb[:l]
	if l == 0 {
		return resolution{} // the root
	}
	if t, ok := n.names[string(s)]; ok {
		return resolution{kind: resAddrs, t: t}
	}
	if nl := len(n.name); nl > 0 {
		if l == nl && string(s) == n.name {
			return resolution{kind: resApex}
		}
		if l > nl+1 && s[l-nl-1] == '.' && string(s[l-nl:]) == n.name {
			if t, ok := n.names[string(s[:l-nl-1])]; ok {
				return resolution{kind: resAddrs, t: t}
			}
			return resolution{kind: resNXDomain}
		}
	}
	if ip, ok := parseReverse(s); ok {
		if ptr, ok := n.ptr[ip]; ok {
			return resolution{kind: resPTR, ptr: ptr}
		}
		for _, p := range n.subnets {
			if p.Contains(ip) {
				return resolution{kind: resNXDomain}
			}
		}
	}
	return resolution{}
}

// parseReverse parses a complete reverse name, lower case without the
// trailing dot: "d.c.b.a.in-addr.arpa" or the 32 nibbles of an address
// followed by "ip6.arpa". It does not allocate.
func parseReverse(s []byte) (netip.Addr, bool) {
	switch {
	case hasSuffix(s, inAddrArpa):
		s = s[:len(s)-len(inAddrArpa)]
		var a [4]byte
		for i := 3; i >= 0; i-- {
			v, digits := 0, 0
			for len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
				v = v*10 + int(s[0]-'0')
				digits++
				s = s[1:]
				if digits > 3 || v > 255 {
					return netip.Addr{}, false
				}
			}
			if digits == 0 {
				return netip.Addr{}, false
			}
			a[i] = byte(v)
			if i > 0 {
				if len(s) == 0 || s[0] != '.' {
					return netip.Addr{}, false
				}
				s = s[1:]
			}
		}
		if len(s) != 0 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(a), true
	case hasSuffix(s, ip6Arpa):
		s = s[:len(s)-len(ip6Arpa)]
		if len(s) != 63 { // 32 nibbles and 31 dots
			return netip.Addr{}, false
		}
		var a [16]byte
		for i := 0; i < 32; i++ {
			c := s[2*i]
			if i < 31 && s[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// nibble i is the i-th least significant of the address
			b := 15 - i/2
			if i%2 == 0 {
				a[b] |= v
			} else {
				a[b] |= v << 4
			}
		}
		ip := netip.AddrFrom16(a)
		if ip.Is4In6() {
			return netip.Addr{}, false // an IPv4 address is reversed under in-addr.arpa
		}
		return ip, true
	}
	return netip.Addr{}, false
}

func hasSuffix(s []byte, suffix string) bool {
	return len(s) >= len(suffix) && string(s[len(s)-len(suffix):]) == suffix
}
