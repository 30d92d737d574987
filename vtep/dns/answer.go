package dns

// This file holds the DNS messages: parsing a query and building the
// answers the responder gives itself (records, NODATA, NXDOMAIN, REFUSED,
// SERVFAIL, FORMERR, NOTIMP, truncated answers), all with
// golang.org/x/net/dns/dnsmessage into the caller's buffer.
//
// Design notes: the Builder runs without name compression, because
// compression keeps a map (an allocation per message). Without it every
// name's wire length is known in advance, so answerLen computes an answer's
// exact size before anything is written: an answer that does not fit is
// answered truncated instead, and the Builder never grows its buffer.

import (
	"encoding/binary"
	"math/rand/v2"

	"golang.org/x/net/dns/dnsmessage"
)

// rcodeBadVers is the extended RCODE BADVERS (RFC 6891 section 9): an EDNS
// version the responder does not implement.
const rcodeBadVers dnsmessage.RCode = 16

// DNS sizes.
const (
	dnsHeaderLen = 12
	// minUDPSize is the payload size every client accepts (RFC 1035), and
	// the limit for a query without an OPT record.
	minUDPSize = 512
	// optLen is an OPT record without options: root name (1), type, class
	// (2+2), TTL (4), rdlength (2).
	optLen = 11
	// rrFixedLen is a resource record's bytes after its name: type, class,
	// TTL, rdlength.
	rrFixedLen = 10
	// maxTCPMessage is the largest message a 16-bit length prefix allows.
	maxTCPMessage = 65535
)

// query is what the responder keeps of a parsed query.
type query struct {
	hdr     dnsmessage.Header
	q       dnsmessage.Question
	opt     bool // the query had an OPT record (EDNS0)
	udpSize int  // the payload size the client accepts over UDP
	badVers bool // the OPT record has an EDNS version other than 0
}

// parseResult says what parseQuery found.
type parseResult uint8

const (
	parsedOK      parseResult = iota
	parsedFormErr             // header readable, rest not: answer FORMERR
	parsedNotImp              // an opcode other than QUERY: answer NOTIMP
	parsedDrop                // not even a query header, or a response: drop
)

// parseQuery parses msg into q. It does not allocate for a well-formed
// query.
func parseQuery(msg []byte, q *query) parseResult {
	if len(msg) < dnsHeaderLen {
		return parsedDrop
	}
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return parsedDrop
	}
	q.hdr = h
	q.opt, q.udpSize, q.badVers = false, minUDPSize, false
	if h.OpCode != 0 {
		return parsedNotImp
	}
	if binary.BigEndian.Uint16(msg[4:6]) != 1 {
		return parsedFormErr
	}
	if q.q, err = p.Question(); err != nil {
		return parsedFormErr
	}
	if p.SkipAllQuestions() != nil || p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return parsedFormErr
	}
	for {
		rh, err := p.AdditionalHeader()
		if err == dnsmessage.ErrSectionDone {
			return parsedOK
		}
		if err != nil {
			return parsedFormErr
		}
		if rh.Type == dnsmessage.TypeOPT {
			if q.opt {
				return parsedFormErr // RFC 6891 section 6.1.1: at most one
			}
			q.opt = true
			q.udpSize = max(int(rh.Class), minUDPSize)
			q.badVers = rh.TTL>>16&0xff != 0 // RFC 6891 section 6.1.3
		}
		if p.SkipAdditional() != nil {
			return parsedFormErr
		}
	}
}

// nameLen is the wire length of the canonical (dot-terminated) name n,
// uncompressed.
func nameLen(n *dnsmessage.Name) int {
	if n.Length <= 1 {
		return 1 // the root
	}
	return int(n.Length) + 1
}

// answer describes a message the responder builds.
type answer struct {
	rcode dnsmessage.RCode
	auth  bool
	set   *addrSet         // A and AAAA records from set, as q asks
	ptr   *dnsmessage.Name // a PTR record
	// shuffle answers the records of set in a fresh random order.
	shuffle bool
	// noQuestion leaves the question out (FORMERR on an unreadable one).
	noQuestion bool
	// tc sets TC: the answer exists but is too big for the client.
	tc bool
}

// wants reports which of set's families q asks for.
func wants(q *query) (a, aaaa bool) {
	if q.q.Class != dnsmessage.ClassINET && q.q.Class != dnsmessage.ClassANY {
		return false, false
	}
	switch q.q.Type {
	case dnsmessage.TypeA:
		return true, false
	case dnsmessage.TypeAAAA:
		return false, true
	case dnsmessage.TypeALL:
		return true, true
	}
	return false, false
}

// records returns the number of A and AAAA records a answers q with, and
// whether it has a PTR record.
func (a *answer) records(q *query) (n4, n6 int, ptr bool) {
	if a.set != nil {
		w4, w6 := wants(q)
		if w4 {
			n4 = len(a.set.v4)
		}
		if w6 {
			n6 = len(a.set.v6)
		}
	}
	ptr = a.ptr != nil && (q.q.Type == dnsmessage.TypePTR || q.q.Type == dnsmessage.TypeALL) &&
		(q.q.Class == dnsmessage.ClassINET || q.q.Class == dnsmessage.ClassANY)
	return n4, n6, ptr
}

// answerLen returns the exact length of a's message answering q.
func answerLen(q *query, a *answer) int {
	n := dnsHeaderLen
	if q.opt {
		n += optLen
	}
	if a.noQuestion {
		return n
	}
	qn := nameLen(&q.q.Name)
	n += qn + 4
	n4, n6, ptr := a.records(q)
	n += n4*(qn+rrFixedLen+4) + n6*(qn+rrFixedLen+16)
	if ptr {
		n += qn + rrFixedLen + nameLen(a.ptr)
	}
	return n
}

// buildAnswer writes a's message answering q into dst[:0] and returns it.
// If it is longer than cap(dst), it writes instead the truncated answer:
// the header with TC set, the question and the OPT record, no records, and
// reports truncated. ttl is the records' TTL, ednsSize the payload size
// the OPT record advertises. It returns nil only when not even the
// truncated answer fits. It does not allocate.
func buildAnswer(dst []byte, q *query, a *answer, ttl uint32, ednsSize int) (msg []byte, truncated bool) {
	h := dnsmessage.Header{
		ID:                 q.hdr.ID,
		Response:           true,
		OpCode:             q.hdr.OpCode,
		Authoritative:      a.auth,
		RecursionDesired:   q.hdr.RecursionDesired,
		RecursionAvailable: true,
		CheckingDisabled:   q.hdr.CheckingDisabled,
		RCode:              a.rcode & 0xf, // the upper bits go in the OPT record
		Truncated:          a.tc,
	}
	full := *a
	if answerLen(q, a) > cap(dst) {
		h.Truncated, truncated = true, true
		full.set, full.ptr = nil, nil
		if answerLen(q, &full) > cap(dst) {
			return nil, true
		}
	}
	a = &full
	b := dnsmessage.NewBuilder(dst[:0], h)
	if !a.noQuestion {
		if b.StartQuestions() != nil || b.Question(q.q) != nil {
			return nil, truncated
		}
	}
	n4, n6, ptr := a.records(q)
	if n4+n6 > 0 || ptr {
		if b.StartAnswers() != nil {
			return nil, truncated
		}
		rh := dnsmessage.ResourceHeader{Name: q.q.Name, Class: dnsmessage.ClassINET, TTL: ttl}
		for i := 0; i < n4; i++ {
			rh.Type = dnsmessage.TypeA
			if b.AResource(rh, dnsmessage.AResource{A: a.set.v4[i]}) != nil {
				return nil, truncated
			}
		}
		for i := 0; i < n6; i++ {
			rh.Type = dnsmessage.TypeAAAA
			if b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.set.v6[i]}) != nil {
				return nil, truncated
			}
		}
		if ptr {
			rh.Type = dnsmessage.TypePTR
			if b.PTRResource(rh, dnsmessage.PTRResource{PTR: *a.ptr}) != nil {
				return nil, truncated
			}
		}
	}
	if q.opt {
		var rh dnsmessage.ResourceHeader
		if rh.SetEDNS0(ednsSize, a.rcode, false) != nil ||
			b.StartAdditionals() != nil || b.OPTResource(rh, dnsmessage.OPTResource{}) != nil {
			return nil, truncated
		}
	}
	msg, err := b.Finish()
	if err != nil || len(msg) > cap(dst) || len(msg) > 0 && &msg[0] != &dst[:1][0] {
		return nil, truncated // cannot happen: answerLen was exact
	}
	if a.shuffle {
		qn := nameLen(&q.q.Name)
		off := dnsHeaderLen + qn + 4
		shuffleRecords(msg[off:off+n4*(qn+rrFixedLen+4)], qn+rrFixedLen+4)
		off += n4 * (qn + rrFixedLen + 4)
		shuffleRecords(msg[off:off+n6*(qn+rrFixedLen+16)], qn+rrFixedLen+16)
	}
	return msg, truncated
}

// shuffleRecords puts the records of size bytes each in b in a random
// order (Fisher-Yates), swapping them in place.
func shuffleRecords(b []byte, size int) {
	for i := len(b)/size - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		if j == i {
			continue
		}
		x, y := b[i*size:(i+1)*size], b[j*size:(j+1)*size]
		for k := range x {
			x[k], y[k] = y[k], x[k]
		}
	}
}
