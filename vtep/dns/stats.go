package dns

// This file holds the responder's counters and their snapshot.

import "sync/atomic"

// Stats is a snapshot of what the responder did, for `ovlsw status` and
// metrics. A query answered locally counts once by its outcome (Answered,
// NoData, NXDomain, Refused, FormErr, NotImp); a forwarded one counts as
// Forwarded and then as UpstreamAnswered or ServFail; Truncated and TCP
// count alongside.
type Stats struct {
	Answered         uint64    `json:"answered"`          // local names answered with records
	NoData           uint64    `json:"nodata"`            // local names asked for a type they lack
	NXDomain         uint64    `json:"nxdomain"`          // unknown names under a network's name, unknown reverse names in its subnets
	Forwarded        uint64    `json:"forwarded"`         // queries sent upstream
	UpstreamAnswered uint64    `json:"upstream_answered"` // upstream answers relayed to the client
	ServFail         uint64    `json:"servfail"`          // SERVFAIL answers: upstreams timed out, failed or answered garbage
	Refused          uint64    `json:"refused"`           // outside names with no upstream configured
	FormErr          uint64    `json:"formerr"`           // malformed queries answered FORMERR, and EDNS versions other than 0 answered BADVERS
	NotImp           uint64    `json:"notimp"`            // opcodes other than QUERY answered NOTIMP
	Truncated        uint64    `json:"truncated"`         // UDP answers sent with TC set
	TCP              uint64    `json:"tcp"`               // queries received over TCP
	Dropped          DropStats `json:"dropped"`
}

// DropStats counts frames to the resolver that were dropped, by reason.
type DropStats struct {
	Rate           uint64 `json:"rate"`            // over the port's rate limit
	Malformed      uint64 `json:"malformed"`       // headers that do not add up, no readable DNS header, DNS responses
	Fragment       uint64 `json:"fragment"`        // IP fragments
	NotUnicast     uint64 `json:"not_unicast"`     // from a multicast, broadcast or unspecified source
	InFlight       uint64 `json:"in_flight"`       // MaxInFlight queries already upstream
	TCPUnsupported uint64 `json:"tcp_unsupported"` // TCP the stateless responder does not handle: split or pipelined queries, simultaneous open
	TCPStale       uint64 `json:"tcp_stale"`       // TCP data whose ACK is not one of our SYN-ACKs (answered with RST)
	NoRoom         uint64 `json:"no_room"`         // a reply that does not fit the buffer
	Closed         uint64 `json:"closed"`          // queries to forward after Close
}

// counters are the atomic counters behind Stats.
type counters struct {
	answered, nodata, nxdomain, forwarded, upstreamAnswered, servfail, refused, formerr, notimp, truncated, tcp atomic.Uint64

	dropRate, dropMalformed, dropFragment, dropNotUnicast, dropInFlight, dropTCPUnsupported, dropTCPStale, dropNoRoom, dropClosed atomic.Uint64
}

// Stats returns a snapshot of the responder's counters. It is safe for
// concurrent use.
func (r *Responder) Stats() Stats {
	c := &r.c
	return Stats{
		Answered:         c.answered.Load(),
		NoData:           c.nodata.Load(),
		NXDomain:         c.nxdomain.Load(),
		Forwarded:        c.forwarded.Load(),
		UpstreamAnswered: c.upstreamAnswered.Load(),
		ServFail:         c.servfail.Load(),
		Refused:          c.refused.Load(),
		FormErr:          c.formerr.Load(),
		NotImp:           c.notimp.Load(),
		Truncated:        c.truncated.Load(),
		TCP:              c.tcp.Load(),
		Dropped: DropStats{
			Rate:           c.dropRate.Load(),
			Malformed:      c.dropMalformed.Load(),
			Fragment:       c.dropFragment.Load(),
			NotUnicast:     c.dropNotUnicast.Load(),
			InFlight:       c.dropInFlight.Load(),
			TCPUnsupported: c.dropTCPUnsupported.Load(),
			TCPStale:       c.dropTCPStale.Load(),
			NoRoom:         c.dropNoRoom.Load(),
			Closed:         c.dropClosed.Load(),
		},
	}
}
