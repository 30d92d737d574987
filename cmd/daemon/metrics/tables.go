package metrics

// This file holds the counter tables of the name service (vtep/dns) and
// of routing (vtep's RouteStats): one line a counter.

import (
	"github.com/ovlsw/ovlsw/vtep"
	"github.com/ovlsw/ovlsw/vtep/dns"
)

// DNSCounters is the table of the name service's counters.
func DNSCounters(stats func() dns.Stats) Table {
	c := func(name, help string, f func(*dns.Stats) uint64) Counter {
		return Counter{Name: Namespace + "_dns_" + name, Help: help, Get: func(s any) uint64 { st := s.(dns.Stats); return f(&st) }}
	}
	return Table{
		Snapshot: func() any { return stats() },
		Counters: []Counter{
			c("answered_total", "Queries for local names answered with records.", func(s *dns.Stats) uint64 { return s.Answered }),
			c("nodata_total", "Queries for local names of a type they lack.", func(s *dns.Stats) uint64 { return s.NoData }),
			c("nxdomain_total", "Queries for unknown names under a network's name or in its subnets.", func(s *dns.Stats) uint64 { return s.NXDomain }),
			c("forwarded_total", "Queries sent upstream.", func(s *dns.Stats) uint64 { return s.Forwarded }),
			c("upstream_answered_total", "Upstream answers relayed to the client.", func(s *dns.Stats) uint64 { return s.UpstreamAnswered }),
			c("servfail_total", "SERVFAIL answers: upstreams timed out, failed or answered garbage.", func(s *dns.Stats) uint64 { return s.ServFail }),
			c("refused_total", "Outside names refused: no upstream configured.", func(s *dns.Stats) uint64 { return s.Refused }),
			c("formerr_total", "Malformed queries answered FORMERR or BADVERS.", func(s *dns.Stats) uint64 { return s.FormErr }),
			c("notimp_total", "Opcodes other than QUERY answered NOTIMP.", func(s *dns.Stats) uint64 { return s.NotImp }),
			c("truncated_total", "UDP answers sent truncated.", func(s *dns.Stats) uint64 { return s.Truncated }),
			c("tcp_queries_total", "Queries received over TCP.", func(s *dns.Stats) uint64 { return s.TCP }),
			c("dropped_rate_total", "Queries dropped over a port's DNS rate limit.", func(s *dns.Stats) uint64 { return s.Dropped.Rate }),
			c("dropped_malformed_total", "Frames to the name service dropped as malformed.", func(s *dns.Stats) uint64 { return s.Dropped.Malformed }),
			c("dropped_other_total", "Frames to the name service dropped otherwise: fragments, non-unicast sources, too many upstream, TCP it does not handle, no room, closing.",
				func(s *dns.Stats) uint64 {
					d := &s.Dropped
					return d.Fragment + d.NotUnicast + d.InFlight + d.TCPUnsupported + d.TCPStale + d.NoRoom + d.Closed
				}),
		},
	}
}

// RouteCounters is the table of routing's counters.
func RouteCounters(stats func() vtep.RouteStats) Table {
	c := func(name, help string, f func(*vtep.RouteStats) uint64) Counter {
		return Counter{Name: Namespace + "_route_" + name, Help: help, Get: func(s any) uint64 { st := s.(vtep.RouteStats); return f(&st) }}
	}
	return Table{
		Snapshot: func() any { return stats() },
		Counters: []Counter{
			c("routed_frames_total", "Frames routed between subnets: rewritten and switched on.", func(s *vtep.RouteStats) uint64 { return s.Routed }),
			c("echo_replies_total", "Pings to a gateway address answered.", func(s *vtep.RouteStats) uint64 { return s.EchoReplies }),
			c("time_exceeded_total", "ICMP time exceeded errors sent.", func(s *vtep.RouteStats) uint64 { return s.TimeExceeded }),
			c("unreachable_total", "ICMP destination unreachable errors sent.", func(s *vtep.RouteStats) uint64 { return s.Unreachable }),
			c("too_big_total", "ICMP fragmentation needed and packet too big errors sent.", func(s *vtep.RouteStats) uint64 { return s.TooBig }),
			c("errors_limited_total", "ICMP errors not sent: the port's rate limit.", func(s *vtep.RouteStats) uint64 { return s.Limited }),
		},
	}
}
