// Package dns is the switch's DNS responder. It answers, in the data path,
// the DNS queries a container sends to its network's DNS address, the way
// the switch answers ARP: a port reader hands a frame to
// Responder.Handle, which either builds the reply in place in the frame's
// buffer or forwards the query upstream and delivers the answer later.
//
// Stages, by file:
//
//   - frame.go: the cheap check every frame goes through (EtherType,
//     protocol, port 53, then the network's DNS address), the hand-written
//     parse of Ethernet, IPv4, IPv6, UDP and TCP headers, and the headers
//     and checksums of replies.
//   - ratelimit.go: a token bucket per port; over it, queries are dropped.
//   - answer.go: parsing the query and building answers with
//     golang.org/x/net/dns/dnsmessage, EDNS0 and truncation.
//   - names.go, table.go: the names of every network (Table) and the
//     resolution of a question against one network.
//   - tcp.go: the stateless TCP responder.
//   - forward.go: forwarding to upstream resolvers, off the data path.
//   - stats.go: counters.
//
// What the responder answers itself, authoritatively, and never forwards:
// A and AAAA for NAME, NAME.NETWORK and aliases, tasks.SERVICE and SERVICE
// (the latter in a fresh random order each time); PTR for every endpoint
// address; NODATA for those names asked for a type they lack; NXDOMAIN for
// unknown names under NETWORK and unknown reverse names within the
// network's subnets. Names of other networks are not visible. Everything
// else goes to Config.Upstreams, or is answered REFUSED when there are
// none; upstream failure is answered SERVFAIL within Config.Timeout.
//
// Design notes.
//
// Why dnsmessage: it parses without allocating (a Parser over the caller's
// bytes, Questions with fixed-array Names) and builds into the caller's
// buffer, which lets the answered path run with zero allocations; it lives
// in the Go x/ tree and was already in the module graph. miekg/dns (also
// in the graph) allocates a Msg and its records per message.
//
// Why stateless TCP: clients fall back to TCP only after a truncated UDP
// answer, for one query per connection. A SYN-cookie style responder
// (tcp.go) answers that without a connection table, so no goroutine, timer
// or memory per connection, nothing a SYN flood can fill, and it answers
// in place in the data path like UDP. Queries split over segments and
// pipelined queries are not supported (dropped and counted).
//
// Why TTL 0 by default: container names come and go with the containers;
// a cached answer would outlive the endpoint it names.
package dns
