// The wire format of network records: the network broadcast, and the
// network part of a push/pull state (framing in wire.go). Decoded as
// strictly as the binding formats: a record that breaks a bound or an
// invariant fails its whole payload, which is dropped and counted in
// Stats.Malformed.
//
// Network record:
//
//	name:    length (1..255) | that many bytes
//	flags (1): bit 0 marks a deletion (tombstone); bit 1 a live record
//	           with a multicast group; bit 2 a live record with a DNS
//	           address; bit 4 an encrypted network (no field: every
//	           datagram of it is sealed, docs/encryption.md); other bits
//	           must be 0
//	version (8): the write's Lamport version, 1..maxNetVersion
//	time (8): the writer's wall clock at the write, Unix nanoseconds (signed)
//	writer:  length (1..255) | that many bytes of node name
//	and for a live record only (a tombstone ends here):
//	created (8): the version that created the network, 1..version
//	VNI (4, < 2^24)
//	subnet:  family (0, 4 or 6) | 0/4/16 address bytes | prefix length
//	         (absent for family 0); host bits zero
//	gateway: family (0, 4 or 6) | 0/4/16 address bytes; inside subnet if set
//	MTU (2)
//	flood:   length (0..255) | that many bytes
//	group:   only with flag bit 1: family (4 or 6) | 4/16 address bytes,
//	         a multicast address (CheckGroup)
//	dns:     only with flag bit 2: family (4 or 6) | 4/16 address bytes,
//	         the address the switch answers DNS on (CheckDNS)
//	subnets: only with flag bit 3 (after the DNS address): the
//	         subnets after the first, count (1..MaxSubnets-1) | count x
//	         (subnet | gateway) as above; none overlapping another of the
//	         network's (Network.More)
//
// Each optional field comes after every field whose flag bit is lower.
// A network with one subnet leaves bit 3 clear and has no subnets field,
// so it stays byte-identical to what nodes that predate several subnets
// write and read; those nodes reject a record with more as malformed.
//
// A network without a group leaves bit 1 clear and has no group field, so
// it stays byte-identical to what nodes that predate groups write and
// read; those nodes reject a record with a group as malformed. The same
// holds for bit 2 and the DNS address, and for bit 4: a node that predates
// encrypted networks rejects the record of one rather than serving it in
// plaintext.
//
// Network message: version (1) | type (4 = network) | record.
// State with networks: type 5 instead of 2, and after the sections
// count (2, 1..MaxNetworks) | count x record, names not repeated. A node
// holding no network records sends type 2, so a cluster that defines no
// networks stays readable by nodes that predate them (which count types 4
// and 5 as malformed and otherwise keep working).

package gossip

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	typeNetwork   = 4
	typeStateNets = 5

	flagDeleted   = 1 << 0
	flagGroup     = 1 << 1
	flagDNS       = 1 << 2
	flagSubnets   = 1 << 3
	flagEncrypted = 1 << 4

	// MaxNetworks bounds the network records, live and deleted, one node
	// keeps and one state carries. Networks are few (one per tenant or
	// application); the bound keeps a state's network part under
	// 4096 x maxNetRecord = 3.4 MB at worst, about 400 KB at a typical
	// 100 bytes. At the bound the oldest tombstone makes room for a new
	// name; without one, PutNetwork refuses a new network
	// (ErrTooManyNetworks) and one received is dropped and counted
	// (Stats.NetworksDropped).
	MaxNetworks = 4096
	// maxNetRecord is the largest record: 256 name + 1 flags + 8 version +
	// 8 time + 256 writer + 8 created + 4 VNI + 18 subnet + 17 gateway +
	// 2 MTU + 256 flood + 17 group + 17 DNS + 1 + 7 x 35 more subnets. A
	// network message (2 more) fits one gossip packet.
	maxNetRecord = 256 + 1 + 8 + 8 + 256 + 8 + 4 + 18 + 17 + 2 + 256 + 17 + 17 + 1 + (MaxSubnets-1)*(18+17)
	// minNetRecord is the smallest: a tombstone with one-byte names.
	minNetRecord = 2 + 1 + 8 + 8 + 2
	// maxNetVersion bounds versions to half their space, leaving room to
	// outbid any record: a clock seeded from Unix nanoseconds reaches it in
	// the year 2262.
	maxNetVersion = 1<<63 - 1
	// maxFlood bounds Network.Flood: a length byte.
	maxFlood = 255
)

// netRecord is one network write as it travels and as it is kept: a live
// network or a tombstone.
type netRecord struct {
	Net     Network // Name always; the other fields zero in a tombstone
	Deleted bool
	Version uint64 // Lamport version of the write
	Time    int64  // writer's wall clock, Unix ns: tombstones expire by it
	Writer  string // node that wrote it; the lower name wins a tie
	Created uint64 // version that created the network (live only)
}

// checkNetwork checks the bounds and local invariants of a network
// definition (not the cluster-wide ones: unique VNI, disjoint subnets).
// The subnet and gateway get the users' checks (spec.go); name, VNI, MTU
// and flood get the wire format's bounds, wider than what the daemon
// accepts from users, so that a node whose rules are stricter still
// carries networks written under looser ones.
func checkNetwork(n *Network) error {
	switch {
	case n.Name == "" || len(n.Name) > 255:
		return fmt.Errorf("gossip: network name %q must be 1 to 255 bytes", n.Name)
	case n.VNI > MaxVNI:
		return fmt.Errorf("gossip: network %s: VNI %d exceeds 24 bits", n.Name, n.VNI)
	}
	if err := CheckSubnet(n.Subnet); err != nil {
		return fmt.Errorf("gossip: network %s: %w", n.Name, err)
	}
	if err := CheckGateway(n.Gateway, n.Subnet); err != nil {
		return fmt.Errorf("gossip: network %s: %w", n.Name, err)
	}
	switch {
	case n.MTU < 0 || n.MTU > 65535:
		return fmt.Errorf("gossip: network %s: MTU %d out of range 0..65535", n.Name, n.MTU)
	case len(n.Flood) > maxFlood:
		return fmt.Errorf("gossip: network %s: flood policy of %d bytes, at most %d", n.Name, len(n.Flood), maxFlood)
	}
	if err := CheckGroup(n.Group); err != nil {
		return fmt.Errorf("gossip: network %s: %w", n.Name, err)
	}
	if err := checkSubnets(n); err != nil {
		return fmt.Errorf("gossip: network %s: %w", n.Name, err)
	}
	if err := checkDNSOf(n); err != nil {
		return fmt.Errorf("gossip: network %s: %w", n.Name, err)
	}
	return nil
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() {
		return append(b, 0)
	}
	return append(appendAddr(b, p.Addr()), byte(p.Bits()))
}

func appendNetRecord(b []byte, r *netRecord) []byte {
	b = appendOwner(b, r.Net.Name)
	var flags byte
	if r.Deleted {
		flags |= flagDeleted
	} else {
		if r.Net.Group.IsValid() {
			flags |= flagGroup
		}
		if r.Net.DNS.IsValid() {
			flags |= flagDNS
		}
		if r.Net.numMore() > 0 {
			flags |= flagSubnets
		}
		if r.Net.Encrypted {
			flags |= flagEncrypted
		}
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = appendOwner(b, r.Writer)
	if r.Deleted {
		return b
	}
	n := &r.Net
	b = binary.BigEndian.AppendUint64(b, r.Created)
	b = binary.BigEndian.AppendUint32(b, n.VNI)
	b = appendPrefix(b, n.Subnet)
	b = appendAddr(b, n.Gateway)
	b = binary.BigEndian.AppendUint16(b, uint16(n.MTU))
	b = append(b, byte(len(n.Flood)))
	b = append(b, n.Flood...)
	if n.Group.IsValid() {
		b = appendAddr(b, n.Group)
	}
	if n.DNS.IsValid() {
		b = appendAddr(b, n.DNS)
	}
	if k := n.numMore(); k > 0 {
		b = append(b, byte(k))
		for _, s := range n.More[:k] {
			b = appendPrefix(b, s.Prefix)
			b = appendAddr(b, s.Gateway)
		}
	}
	return b
}

// encodeNetMessage encodes the broadcast of r, which has been checked.
func encodeNetMessage(r *netRecord) []byte {
	b := make([]byte, 0, 2+64+17+len(r.Net.Name)+len(r.Writer)+len(r.Net.Flood)+35*r.Net.numMore())
	b = append(b, wireVersion, typeNetwork)
	return appendNetRecord(b, r)
}

// prefix reads a subnet: family 0 is the zero Prefix.
func (r *reader) prefix() netip.Prefix {
	a := r.addr()
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := int(r.u8())
	if r.err != nil {
		return netip.Prefix{}
	}
	if bits > a.BitLen() {
		r.fail(errMalformed)
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, bits)
}

func (r *reader) netRecord() netRecord {
	var rec netRecord
	rec.Net.Name = r.owner()
	flags := r.u8()
	rec.Deleted = flags&flagDeleted != 0
	rec.Version = r.u64()
	rec.Time = int64(r.u64())
	rec.Writer = r.owner()
	if r.err != nil {
		return rec
	}
	switch {
	case flags&^(flagDeleted|flagGroup|flagDNS|flagSubnets|flagEncrypted) != 0 || flags&flagDeleted != 0 && flags != flagDeleted || rec.Version == 0:
		r.fail(errMalformed)
	case rec.Version > maxNetVersion:
		r.fail(errTooLarge)
	}
	if r.err != nil || rec.Deleted {
		return rec
	}
	n := &rec.Net
	rec.Created = r.u64()
	n.VNI = r.u32()
	n.Subnet = r.prefix()
	n.Gateway = r.addr()
	n.MTU = int(r.u16())
	n.Flood = string(r.take(int(r.u8())))
	n.Encrypted = flags&flagEncrypted != 0
	if flags&flagGroup != 0 {
		if n.Group = r.addr(); r.err == nil && !n.Group.IsValid() {
			r.fail(errMalformed) // family 0: the flag promised a group
		}
	}
	if flags&flagDNS != 0 {
		if n.DNS = r.addr(); r.err == nil && !n.DNS.IsValid() {
			r.fail(errMalformed)
		}
	}
	if flags&flagSubnets != 0 {
		k := int(r.u8())
		if r.err == nil && (k == 0 || k > len(n.More)) {
			r.fail(errMalformed) // the flag promised at least one; at most the array
		}
		for i := 0; i < k && r.err == nil; i++ {
			n.More[i].Prefix = r.prefix()
			n.More[i].Gateway = r.addr()
			if r.err == nil && !n.More[i].Prefix.IsValid() {
				r.fail(errMalformed) // family 0 would end the list early
			}
		}
	}
	if r.err != nil {
		return rec
	}
	if rec.Created == 0 || rec.Created > rec.Version || checkNetwork(n) != nil {
		r.fail(errMalformed)
	}
	return rec
}

// decodeNetMessage decodes a network broadcast.
func decodeNetMessage(b []byte) (netRecord, error) {
	r := reader{b: b}
	if typ := r.header(true); r.err == nil && typ != typeNetwork {
		r.fail(errMalformed)
	}
	if r.err != nil {
		return netRecord{}, r.err
	}
	rec := r.netRecord()
	if err := r.end(); err != nil {
		return netRecord{}, err
	}
	return rec, nil
}

// netRecords reads the network part of a state.
func (r *reader) netRecords() []netRecord {
	n := int(r.u16())
	switch {
	case r.err != nil:
		return nil
	case n > MaxNetworks:
		r.fail(errTooLarge)
	case n == 0 || n > len(r.b)/minNetRecord:
		r.fail(errMalformed) // type 5 has at least one record
	}
	if r.err != nil {
		return nil
	}
	out := make([]netRecord, 0, n)
	seen := make(map[string]struct{}, n)
	for range n {
		rec := r.netRecord()
		if r.err != nil {
			return nil
		}
		if _, dup := seen[rec.Net.Name]; dup {
			r.fail(errMalformed)
			return nil
		}
		seen[rec.Net.Name] = struct{}{}
		out = append(out, rec)
	}
	return out
}
