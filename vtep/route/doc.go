// Package route holds the pure functions of the switch's routing stage: the
// distributed anycast gateway every node runs for the subnets of a network.
// Parse reads what routing needs of an IP packet in an Ethernet frame,
// Forward rewrites a frame for one routed hop (TTL or hop limit, the IPv4
// header checksum updated incrementally as RFC 1624 says, the MACs),
// BuildError turns a frame into the ICMP or ICMPv6 error the gateway sends
// back about it (time exceeded, destination unreachable, fragmentation
// needed or packet too big), in place, and Limiter bounds how many errors a
// port gets. Nothing here takes a lock it holds for long, makes a syscall or
// allocates; the switch (vtep/routing.go) decides what to call.
//
// Files: packet.go (Parse, Forward), icmp.go (MayError, BuildError),
// echo.go (EchoReply: the gateway answers ping),
// limit.go (Limiter).
package route
