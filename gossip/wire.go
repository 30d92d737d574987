// The wire formats: binding messages (broadcast), state (push/pull) and node
// metadata. All are hand-written big-endian binary, versioned by their first
// byte, and decoded strictly: every length is checked against the buffer and
// against a fixed bound, unknown flags and trailing bytes are errors, and a
// decoded value re-encodes to exactly the bytes it came from.
//
// Binding record (inside a message or a state):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       VNI (< 2^24)                            |
//	+---------------------------------------------------------------+
//	|                       MAC (6 bytes)           |    Flags      |
//	+---------------------------------------------------------------+
//	|                       Seq (8 bytes)                           |
//	+---------------------------------------------------------------+
//	|                       Gen (8 bytes)                           |
//	+---------------------------------------------------------------+
//	| VTEP: family (0, 4 or 6), 0/4/16 address bytes, port (2)      |
//	+---------------------------------------------------------------+
//	| nIPs  | nIPs x (family (4 or 6), 4/16 address bytes)          |
//	+---------------------------------------------------------------+
//	| names, present when flags bit 1 is set:                       |
//	| name (1..255 bytes) | service (0..255) | nAliases (0..8) |    |
//	| nAliases x alias (1..255); each string a length byte first    |
//	+---------------------------------------------------------------+
//
// Flags bit 0 marks a withdrawal (tombstone): its VTEP is the zero value
// and it has no IPs and no names. A live record has a valid VTEP. Flags
// bit 1 says the endpoint has DNS names (fdb.Names); a node older than
// names rejects such records, so every node is upgraded before endpoints
// get names.
//
// Message: version (1) | type (1 = binding) | owner | record.
// Leave:   version (1) | type (3 = leave) | owner | gen (8): the owner is
// leaving the cluster on purpose (so members list it as left, not dead).
// State:   version (1) | type (2 = state) | sections (2) | sections x section,
// Section: owner | gen (8) | count (4) | count x record (live only).
// A section lists what the sender holds of one owner's bindings; gen is the
// owner generation up to which that list is complete (0: no guarantee). The
// sender's own section comes first, complete at its current generation.
// Owners do not repeat.
// Meta:    version (1) | VTEP | epoch (8) | count (2) | count x VNI (3 bytes, strictly increasing)
//          [| data key (32)].
// The data key, this node's X25519 public key for encrypted networks
// (vtep/seal), is there only while the node publishes one (SetDataKey: the
// daemon does while the cluster has an encrypted network), so the metadata
// of a cluster without encrypted networks stays what nodes that predate
// them read; they read metadata with a key as malformed.
// An owner is a length byte (1..255) and that many bytes of node name.
// Network messages (type 4) and states that carry network records (type 5)
// are described in netwire.go.

package gossip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"

	"github.com/ovlsw/ovlsw/fdb"
)

const (
	wireVersion = 1

	typeBinding = 1
	typeState   = 2
	typeLeave   = 3

	flagWithdrawn = 1 << 0
	flagNames     = 1 << 1

	// MaxVNI is the largest VXLAN network identifier (24 bits), as the
	// forwarding table defines it.
	MaxVNI = fdb.MaxVNI
	// MaxIPs bounds the addresses one binding carries: a host with an IPv4
	// address, link-local and a few global IPv6 addresses fits with room.
	MaxIPs = 16
	// MaxNameLen bounds an endpoint name, alias or service name: a DNS
	// name's 253 characters fit.
	MaxNameLen = 255
	// MaxAliases bounds the aliases one endpoint carries.
	MaxAliases = 8
	// MaxNamesBytes bounds an endpoint's names together, so that a
	// binding message (at most 319 bytes without names) stays well inside
	// one gossip packet (memberlist's UDPBufferSize, 1400).
	MaxNamesBytes = 512
	// MaxStateBindings bounds the bindings one node may own. No single
	// host carries that many MACs.
	MaxStateBindings = 1 << 17
	// MaxStateRecords bounds the records of one push/pull state, all owners
	// together. A live record is at most 4+6+1+8+8+19+1+16*17 = 319 bytes
	// and typically 47 to 70, so 1<<18 of them stay under memberlist's
	// 20 MB push/pull limit.
	MaxStateRecords = 1 << 18
	// MaxSections bounds the owners in one state: the cluster size.
	MaxSections = 1 << 14
	// MaxVNIs is how many VNIs fit in the 512-byte node metadata:
	// (512 - 1 version - 19 VTEP - 8 epoch - 2 count) / 3 bytes = 160.
	MaxVNIs = 160
	// maxMeta is memberlist's MetaMaxSize.
	maxMeta = 512
	// minRecord is the smallest record: a tombstone with a zero VTEP.
	minRecord = 4 + 6 + 1 + 8 + 8 + 3 + 1
)

var (
	errMalformed = errors.New("gossip: malformed payload")
	errVersion   = errors.New("gossip: unknown payload version")
	errTooLarge  = errors.New("gossip: payload exceeds bounds")
)

// record is one binding as it travels: a live claim or a tombstone.
type record struct {
	Key       fdb.Key
	Withdrawn bool
	Seq       uint64
	Gen       uint64
	VTEP      netip.AddrPort
	IPs       []netip.Addr
	Names     *fdb.Names
}

// message is one broadcast: a record and its owner, or (Leave) the owner's
// announcement that it is leaving, at generation Rec.Gen.
type message struct {
	Owner string
	Leave bool
	Rec   record
}

// section is what a state says about one owner's bindings.
type section struct {
	Owner string
	Gen   uint64 // the list is complete up to this owner generation
	Recs  []record
}

// state is one node's push/pull payload: its own section first, then what
// it holds of other live owners; and every network record it holds.
type state struct {
	Sections []section
	Nets     []netRecord // encoded as type 5 when not empty
}

// meta is a node's memberlist metadata.
type meta struct {
	VTEP    netip.AddrPort
	Epoch   uint64 // first generation of this process; older ones are stale
	VNIs    []uint32
	DataKey []byte // DataKeyLen bytes, or nil
}

// DataKeyLen is the length of a data key in the node metadata: an X25519
// public key.
const DataKeyLen = 32

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		b = append(b, 4)
		a4 := a.As4()
		return append(b, a4[:]...)
	case a.Is6():
		b = append(b, 6)
		a16 := a.As16()
		return append(b, a16[:]...)
	}
	return append(b, 0)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	return binary.BigEndian.AppendUint16(appendAddr(b, ap.Addr()), ap.Port())
}

func appendOwner(b []byte, owner string) []byte {
	return append(append(b, byte(len(owner))), owner...)
}

func appendRecord(b []byte, r *record) []byte {
	b = binary.BigEndian.AppendUint32(b, r.Key.VNI)
	b = append(b, r.Key.MAC[:]...)
	var flags byte
	if r.Withdrawn {
		flags |= flagWithdrawn
	}
	if r.Names != nil {
		flags |= flagNames
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, r.Gen)
	b = appendAddrPort(b, r.VTEP)
	b = append(b, byte(len(r.IPs)))
	for _, ip := range r.IPs {
		b = appendAddr(b, ip)
	}
	if n := r.Names; n != nil {
		b = appendOwner(b, n.Name)
		b = append(append(b, byte(len(n.Service))), n.Service...)
		b = append(b, byte(len(n.Aliases)))
		for _, al := range n.Aliases {
			b = appendOwner(b, al)
		}
	}
	return b
}

// namesFit reports whether n fits the wire's bounds.
func namesFit(n *fdb.Names) bool {
	if len(n.Name) == 0 || len(n.Name) > MaxNameLen || len(n.Service) > MaxNameLen || len(n.Aliases) > MaxAliases {
		return false
	}
	total := len(n.Name) + len(n.Service)
	for _, al := range n.Aliases {
		if len(al) == 0 || len(al) > MaxNameLen {
			return false
		}
		total += len(al)
	}
	return total <= MaxNamesBytes
}

// encodeMessage encodes m. The caller has checked m against the bounds.
func encodeMessage(m *message) []byte {
	b := make([]byte, 0, 2+1+len(m.Owner)+minRecord+16+len(m.Rec.IPs)*17)
	if m.Leave {
		b = append(b, wireVersion, typeLeave)
		b = appendOwner(b, m.Owner)
		return binary.BigEndian.AppendUint64(b, m.Rec.Gen)
	}
	b = append(b, wireVersion, typeBinding)
	b = appendOwner(b, m.Owner)
	return appendRecord(b, &m.Rec)
}

// encodeState encodes s. The caller has checked s against the bounds.
func encodeState(s *state) []byte {
	size := 4
	for i := range s.Sections {
		size += 1 + len(s.Sections[i].Owner) + 12 + len(s.Sections[i].Recs)*64
	}
	for i := range s.Nets {
		size += 64 + len(s.Nets[i].Net.Name) + len(s.Nets[i].Writer) + len(s.Nets[i].Net.Flood)
	}
	typ := byte(typeState)
	if len(s.Nets) > 0 {
		typ = typeStateNets
	}
	b := make([]byte, 0, size)
	b = append(b, wireVersion, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Sections)))
	for i := range s.Sections {
		sec := &s.Sections[i]
		b = appendOwner(b, sec.Owner)
		b = binary.BigEndian.AppendUint64(b, sec.Gen)
		b = binary.BigEndian.AppendUint32(b, uint32(len(sec.Recs)))
		for j := range sec.Recs {
			b = appendRecord(b, &sec.Recs[j])
		}
	}
	if len(s.Nets) == 0 {
		return b
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Nets)))
	for i := range s.Nets {
		b = appendNetRecord(b, &s.Nets[i])
	}
	return b
}

// encodeMeta encodes m; the VNIs must be sorted, unique and at most MaxVNIs.
func encodeMeta(m *meta) []byte {
	b := make([]byte, 0, 1+19+8+2+3*len(m.VNIs))
	b = append(b, wireVersion)
	b = appendAddrPort(b, m.VTEP)
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.VNIs)))
	for _, v := range m.VNIs {
		b = append(b, byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, m.DataKey...)
}

// reader decodes big-endian fields; the first short read sets err and every
// later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		if r.err == nil {
			r.err = errMalformed
		}
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// addr reads a family byte and the address; family 0 is the zero Addr.
func (r *reader) addr() netip.Addr {
	switch r.u8() {
	case 0:
		return netip.Addr{}
	case 4:
		if v := r.take(4); v != nil {
			return netip.AddrFrom4([4]byte(v))
		}
	case 6:
		if v := r.take(16); v != nil {
			return netip.AddrFrom16([16]byte(v))
		}
	default:
		r.fail(errMalformed)
	}
	return netip.Addr{}
}

func (r *reader) addrPort() netip.AddrPort {
	a := r.addr()
	return netip.AddrPortFrom(a, r.u16())
}

func (r *reader) owner() string {
	n := int(r.u8())
	if r.err == nil && n == 0 {
		r.fail(errMalformed)
	}
	return string(r.take(n))
}

// header checks the version byte and returns the type byte if withType.
func (r *reader) header(withType bool) byte {
	if v := r.u8(); r.err == nil && v != wireVersion {
		r.fail(errVersion)
	}
	if !withType {
		return 0
	}
	return r.u8()
}

func (r *reader) record() record {
	var rec record
	rec.Key.VNI = r.u32()
	copy(rec.Key.MAC[:], r.take(6))
	flags := r.u8()
	rec.Withdrawn = flags&flagWithdrawn != 0
	rec.Seq = r.u64()
	rec.Gen = r.u64()
	rec.VTEP = r.addrPort()
	n := int(r.u8())
	if r.err != nil {
		return rec
	}
	switch {
	case rec.Key.VNI > MaxVNI || flags&^(flagWithdrawn|flagNames) != 0:
		r.fail(errMalformed)
	case rec.Withdrawn && flags&flagNames != 0:
		r.fail(errMalformed)
	case n > MaxIPs:
		r.fail(errTooLarge)
	case rec.Withdrawn && (rec.VTEP != netip.AddrPort{} || n != 0):
		r.fail(errMalformed)
	case !rec.Withdrawn && !rec.VTEP.Addr().IsValid():
		r.fail(errMalformed)
	}
	if r.err != nil {
		return rec
	}
	if n > 0 {
		rec.IPs = make([]netip.Addr, 0, n)
	}
	for range n {
		ip := r.addr()
		if r.err == nil && !ip.IsValid() {
			r.fail(errMalformed)
		}
		rec.IPs = append(rec.IPs, ip)
	}
	if flags&flagNames != 0 {
		rec.Names = r.names()
	}
	return rec
}

// names reads a record's names (flagNames).
func (r *reader) names() *fdb.Names {
	n := &fdb.Names{Name: r.owner()}
	n.Service = string(r.take(int(r.u8())))
	count := int(r.u8())
	if r.err == nil && count > MaxAliases {
		r.fail(errTooLarge)
	}
	if r.err != nil {
		return nil
	}
	if count > 0 {
		n.Aliases = make([]string, 0, count)
	}
	for range count {
		n.Aliases = append(n.Aliases, r.owner())
	}
	if r.err != nil {
		return nil
	}
	return n
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = errMalformed
	}
	return r.err
}

// decodeMessage decodes a broadcast binding message.
func decodeMessage(b []byte) (message, error) {
	r := reader{b: b}
	switch typ := r.header(true); {
	case r.err != nil:
	case typ == typeBinding:
		m := message{Owner: r.owner()}
		m.Rec = r.record()
		return m, r.end()
	case typ == typeLeave:
		m := message{Owner: r.owner(), Leave: true}
		m.Rec.Gen = r.u64()
		return m, r.end()
	default:
		r.fail(errMalformed)
	}
	return message{}, r.err
}

// decodeState decodes a push/pull state. Only live binding records may
// appear; network records may be tombstones.
func decodeState(b []byte) (state, error) {
	r := reader{b: b}
	typ := r.header(true)
	if typ != typeState && typ != typeStateNets {
		r.fail(errMalformed)
	}
	nsec := int(r.u16())
	if r.err != nil {
		return state{}, r.err
	}
	if nsec > MaxSections {
		return state{}, errTooLarge
	}
	var s state
	seen := make(map[string]struct{}, min(nsec, 64))
	total := 0
	for range nsec {
		sec := section{Owner: r.owner(), Gen: r.u64()}
		n := int(r.u32())
		if r.err != nil {
			return state{}, r.err
		}
		if _, dup := seen[sec.Owner]; dup {
			return state{}, errMalformed
		}
		seen[sec.Owner] = struct{}{}
		if total += n; n > MaxStateBindings || total > MaxStateRecords {
			return state{}, errTooLarge
		}
		if n > len(r.b)/minRecord {
			return state{}, errMalformed
		}
		sec.Recs = make([]record, 0, n)
		for range n {
			rec := r.record()
			if r.err == nil && rec.Withdrawn {
				r.fail(errMalformed)
			}
			if r.err != nil {
				return state{}, r.err
			}
			sec.Recs = append(sec.Recs, rec)
		}
		s.Sections = append(s.Sections, sec)
	}
	if typ == typeStateNets {
		if s.Nets = r.netRecords(); r.err != nil {
			return state{}, r.err
		}
	}
	return s, r.end()
}

// decodeMeta decodes node metadata.
func decodeMeta(b []byte) (meta, error) {
	if len(b) > maxMeta {
		return meta{}, errTooLarge
	}
	r := reader{b: b}
	r.header(false)
	m := meta{VTEP: r.addrPort(), Epoch: r.u64()}
	n := int(r.u16())
	if r.err != nil {
		return m, r.err
	}
	if n > MaxVNIs {
		return m, errTooLarge
	}
	for range n {
		v := r.take(3)
		if v == nil {
			return m, r.err
		}
		vni := uint32(v[0])<<16 | uint32(v[1])<<8 | uint32(v[2])
		if len(m.VNIs) > 0 && vni <= m.VNIs[len(m.VNIs)-1] {
			return m, errMalformed
		}
		m.VNIs = append(m.VNIs, vni)
	}
	if r.err == nil && len(r.b) == DataKeyLen {
		m.DataKey = slices.Clone(r.take(DataKeyLen))
	}
	if r.err == nil && !m.VTEP.Addr().IsValid() {
		r.fail(errMalformed)
	}
	return m, r.end()
}

// sortedVNIs returns vnis sorted and without duplicates.
func sortedVNIs(vnis []uint32) []uint32 {
	out := slices.Clone(vnis)
	slices.Sort(out)
	return slices.Compact(out)
}
