package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/ovlsw/ovlsw/fdb"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

var (
	v4VTEP = netip.MustParseAddrPort("192.0.2.1:4789")
	v6VTEP = netip.MustParseAddrPort("[2001:db8::1]:4789")
	mac1   = fdb.MAC{2, 0, 0, 0, 0, 1}
)

func sampleMessages() map[string]message {
	return map[string]message{
		"live-v4": {Owner: "node01", Rec: record{
			Key: fdb.Key{VNI: 42, MAC: mac1}, Seq: 3, Gen: 1 << 60, VTEP: v4VTEP,
			IPs: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fe80::1")},
		}},
		"live-v6": {Owner: "n", Rec: record{Key: fdb.Key{VNI: MaxVNI, MAC: mac1}, VTEP: v6VTEP}},
		"live-4in6": {Owner: "n", Rec: record{
			Key: fdb.Key{VNI: 1, MAC: mac1}, VTEP: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"),
			IPs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")},
		}},
		"names": {Owner: "node01", Rec: record{
			Key: fdb.Key{VNI: 42, MAC: mac1}, Seq: 1, Gen: 2, VTEP: v4VTEP,
			IPs:   []netip.Addr{netip.MustParseAddr("10.1.0.1")},
			Names: &fdb.Names{Name: "nginx_web_2", Service: "web", Aliases: []string{"www", "front.end"}},
		}},
		"names-bare": {Owner: "n", Rec: record{Key: fdb.Key{VNI: 1, MAC: mac1}, VTEP: v6VTEP, Names: &fdb.Names{Name: "c1"}}},
		"withdrawn":  {Owner: "node02", Rec: record{Key: fdb.Key{VNI: 7, MAC: mac1}, Withdrawn: true, Seq: 9, Gen: 12}},
		"leave":      {Owner: "node03", Leave: true, Rec: record{Gen: 77}},
		"max-ips": {Owner: string(bytes.Repeat([]byte{'x'}, 255)), Rec: record{
			Key: fdb.Key{VNI: 1, MAC: mac1}, VTEP: v6VTEP,
			IPs: slices.Repeat([]netip.Addr{netip.MustParseAddr("2001:db8::2")}, MaxIPs),
		}},
	}
}

func sampleStates() map[string]state {
	recs := []record{}
	for i := range 5 {
		recs = append(recs, record{
			Key: fdb.Key{VNI: uint32(i), MAC: fdb.MAC{2, 0, 0, 0, 0, byte(i)}}, Seq: uint64(i), Gen: 100 + uint64(i),
			VTEP: v4VTEP, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})},
		})
	}
	nets := sampleNetRecords()
	return map[string]state{
		"none":      {},
		"empty":     {Sections: []section{{Owner: "node01", Gen: 5, Recs: []record{}}}},
		"nets-only": {Nets: []netRecord{nets["tombstone"]}},
		"nets": {
			Sections: []section{{Owner: "node01", Gen: 200, Recs: recs[:2]}},
			Nets:     []netRecord{nets["bare"], nets["v6"], nets["max"], nets["v4"], nets["4in6"]},
		},
		"two": {Sections: []section{
			{Owner: "node01", Gen: 200, Recs: recs[:3]},
			{Owner: "node02", Gen: 0, Recs: recs[3:]},
			{Owner: "node03", Gen: 9, Recs: []record{}},
		}},
	}
}

func sampleMetas() map[string]meta {
	many := []uint32{}
	for v := range uint32(MaxVNIs) {
		many = append(many, v*1000)
	}
	return map[string]meta{
		"none":         {VTEP: v4VTEP, Epoch: 1},
		"two":          {VTEP: v6VTEP, Epoch: 1 << 62, VNIs: []uint32{100, 200}},
		"max":          {VTEP: v6VTEP, Epoch: 3, VNIs: many},
		"key":          {VTEP: v4VTEP, Epoch: 4, VNIs: []uint32{5}, DataKey: bytes.Repeat([]byte{0xab}, DataKeyLen)},
		"max with key": {VTEP: v6VTEP, Epoch: 3, VNIs: many[:MaxVNIsWithKey], DataKey: bytes.Repeat([]byte{1}, DataKeyLen)},
	}
}

func TestWireRoundTrip(t *testing.T) {
	for name, m := range sampleMessages() {
		t.Run("message/"+name, func(t *testing.T) {
			b := encodeMessage(&m)
			got, err := decodeMessage(b)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("decode = %+v, %v\nwant %+v", got, err, m)
			}
			if len(b) > 1400-100 {
				t.Errorf("%d bytes do not fit a gossip packet", len(b))
			}
		})
	}
	for name, s := range sampleStates() {
		t.Run("state/"+name, func(t *testing.T) {
			got, err := decodeState(encodeState(&s))
			if err != nil || !reflect.DeepEqual(got, s) {
				t.Fatalf("decode = %+v, %v\nwant %+v", got, err, s)
			}
		})
	}
	for name, m := range sampleMetas() {
		t.Run("meta/"+name, func(t *testing.T) {
			b := encodeMeta(&m)
			got, err := decodeMeta(b)
			if err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("decode = %+v, %v\nwant %+v", got, err, m)
			}
			if len(b) > maxMeta {
				t.Fatalf("%d bytes exceed memberlist's meta limit", len(b))
			}
		})
	}
}

// patch returns b with the bytes at off replaced.
func patch(b []byte, off int, with ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], with)
	return b
}

func TestDecodeRejects(t *testing.T) {
	msgs, states, metas := sampleMessages(), sampleStates(), sampleMetas()
	live := encodeMessage(ptr(msgs["live-v4"]))
	recOff := 2 + 1 + len("node01") // version, type, owner
	tomb := encodeMessage(ptr(msgs["withdrawn"]))
	st := encodeState(ptr(states["two"]))
	stRecOff := 2 + 2 + 1 + len("node01") + 8 + 4
	oneSection := func(sec section) []byte { return encodeState(&state{Sections: []section{sec}}) }
	md := encodeMeta(ptr(metas["two"]))
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		b      []byte
		want   error
	}{
		{"message/empty", decMsg, nil, errMalformed},
		{"message/version", decMsg, patch(live, 0, 2), errVersion},
		{"message/type", decMsg, patch(live, 1, 9), errMalformed},
		{"message/empty owner", decMsg, []byte{1, 1, 0}, errMalformed},
		{"message/trailing", decMsg, append(bytes.Clone(live), 0), errMalformed},
		{"message/vni", decMsg, patch(live, recOff, 1, 0, 0, 0), errMalformed},
		{"message/flags", decMsg, patch(live, recOff+10, 2), errMalformed},
		{"message/family", decMsg, patch(live, recOff+27, 5), errMalformed},
		{"message/zero vtep", decMsg, encodeMessage(&message{Owner: "n", Rec: record{Key: fdb.Key{MAC: mac1}}}), errMalformed},
		{"message/tomb with vtep", decMsg, encodeMessage(&message{Owner: "n", Rec: record{Withdrawn: true, VTEP: v4VTEP}}), errMalformed},
		{"message/tomb with ips", decMsg, append(bytes.Clone(tomb[:len(tomb)-1]), 1, 4, 1, 2, 3, 4), errMalformed},
		{"message/too many ips", decMsg, patch(live, recOff+27+7, MaxIPs+1), errTooLarge},
		{"message/tomb with names", decMsg, append(patch(tomb, recOff+10, flagWithdrawn|flagNames), 1, 'a', 0, 0), errMalformed},
		{"message/empty name", decMsg, append(patch(live, recOff+10, flagNames), 0, 0, 0), errMalformed},
		{"message/empty alias", decMsg, append(patch(live, recOff+10, flagNames), 1, 'a', 0, 1, 0), errMalformed},
		{"message/too many aliases", decMsg, append(patch(live, recOff+10, flagNames), 1, 'a', 0, MaxAliases+1), errTooLarge},
		{"message/zero ip", decMsg, encodeMessage(&message{Owner: "n", Rec: record{VTEP: v4VTEP, IPs: []netip.Addr{{}}}}), errMalformed},
		{"state/withdrawn", decState, oneSection(section{Owner: "n", Recs: []record{{Withdrawn: true, Gen: 1}}}), errMalformed},
		{"state/count", decState, patch(st, stRecOff-4, 0, 0, 0, 6), errMalformed},
		{"state/duplicate owner", decState, encodeState(&state{Sections: []section{{Owner: "n"}, {Owner: "n"}}}), errMalformed},
		{"state/sections bound", decState, patch(st, 2, 0xff, 0xff), errTooLarge},
		{"state/empty owner", decState, oneSection(section{}), errMalformed},
		{"state/count bound", decState, patch(st, stRecOff-4, 0, 2, 0, 1), errTooLarge},
		{"state/type", decState, live, errMalformed},
		{"meta/order", decMeta, patch(md, len(md)-3, 0, 0, 1), errMalformed},
		{"meta/count bound", decMeta, patch(md, len(md)-8, 0, MaxVNIs+1), errTooLarge},
		{"meta/size", decMeta, make([]byte, maxMeta+1), errTooLarge},
		{"meta/version", decMeta, patch(md, 0, 0), errVersion},
		{"meta/zero vtep", decMeta, encodeMeta(&meta{}), errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("decode = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestDecodeTruncated checks every strict prefix of every sample fails.
func TestDecodeTruncated(t *testing.T) {
	check := func(name string, b []byte, decode func([]byte) error) {
		for n := range len(b) {
			if err := decode(b[:n]); err == nil {
				t.Errorf("%s: %d-byte prefix of %d decoded", name, n, len(b))
			}
		}
	}
	for name, m := range sampleMessages() {
		check("message/"+name, encodeMessage(&m), decMsg)
	}
	for name, s := range sampleStates() {
		check("state/"+name, encodeState(&s), decState)
	}
	for name, m := range sampleMetas() {
		b := encodeMeta(&m)
		if m.DataKey == nil {
			check("meta/"+name, b, decMeta)
			continue
		}
		// The data key is an optional tail: cut off whole, what is left
		// is metadata without one. Every other cut fails.
		whole := len(b) - DataKeyLen
		for n := range len(b) {
			if err := decMeta(b[:n]); err == nil && n != whole {
				t.Errorf("meta/%s: %d-byte prefix of %d decoded", name, n, len(b))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

func decMsg(b []byte) error   { _, err := decodeMessage(b); return err }
func decState(b []byte) error { _, err := decodeState(b); return err }
func decMeta(b []byte) error  { _, err := decodeMeta(b); return err }

// checkRecord checks the bounds a decoded record must respect.
func checkRecord(t *testing.T, r *record) {
	if r.Key.VNI > MaxVNI || len(r.IPs) > MaxIPs || (!r.Withdrawn && !r.VTEP.Addr().IsValid()) {
		t.Fatalf("decoded record out of bounds: %+v", r)
	}
}

// FuzzDecodeMessage: any input either fails or decodes to a bounded
// message that re-encodes to exactly the input.
func FuzzDecodeMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		if !m.Leave {
			checkRecord(t, &m.Rec)
		}
		if re := encodeMessage(&m); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", re, b)
		}
	})
}

// FuzzDecodeState: as FuzzDecodeMessage, for push/pull states.
func FuzzDecodeState(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		total := 0
		for _, sec := range s.Sections {
			total += len(sec.Recs)
			for i := range sec.Recs {
				checkRecord(t, &sec.Recs[i])
			}
		}
		if total > MaxStateRecords || len(s.Sections) > MaxSections || len(s.Nets) > MaxNetworks {
			t.Fatalf("%d records in %d sections, %d networks", total, len(s.Sections), len(s.Nets))
		}
		for i := range s.Nets {
			checkNetRecord(t, &s.Nets[i])
		}
		if re := encodeState(&s); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", re, b)
		}
	})
}

// FuzzDecodeMeta: as FuzzDecodeMessage, for node metadata.
func FuzzDecodeMeta(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if len(m.VNIs) > MaxVNIs || !slices.IsSorted(m.VNIs) || !m.VTEP.Addr().IsValid() {
			t.Fatalf("decoded meta out of bounds: %+v", m)
		}
		if re := encodeMeta(&m); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", re, b)
		}
	})
}

// TestUpdateCorpus writes the seed corpus under testdata/fuzz with
// -update-corpus: the samples and a few invalid inputs.
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	seeds := map[string][][]byte{}
	for _, m := range sortedValues(sampleMessages()) {
		seeds["FuzzDecodeMessage"] = append(seeds["FuzzDecodeMessage"], encodeMessage(&m))
	}
	seeds["FuzzDecodeMessage"] = append(seeds["FuzzDecodeMessage"], []byte{1, 1, 0}, []byte{2})
	for _, s := range sortedValues(sampleStates()) {
		seeds["FuzzDecodeState"] = append(seeds["FuzzDecodeState"], encodeState(&s))
	}
	huge := encodeState(&state{Sections: []section{{Owner: "n"}}})
	binary.BigEndian.PutUint32(huge[len(huge)-4:], 1<<31)
	hugeNets := encodeState(&state{Nets: []netRecord{sampleNetRecords()["bare"]}})
	binary.BigEndian.PutUint16(hugeNets[4:], MaxNetworks+1)
	seeds["FuzzDecodeState"] = append(seeds["FuzzDecodeState"], huge, hugeNets)
	for _, r := range sortedValues(sampleNetRecords()) {
		seeds["FuzzDecodeNetwork"] = append(seeds["FuzzDecodeNetwork"], encodeNetMessage(&r))
	}
	seeds["FuzzDecodeNetwork"] = append(seeds["FuzzDecodeNetwork"],
		[]byte{wireVersion, typeNetwork, 0}, []byte{wireVersion, typeNetwork})
	for _, m := range sortedValues(sampleMetas()) {
		seeds["FuzzDecodeMeta"] = append(seeds["FuzzDecodeMeta"], encodeMeta(&m))
	}
	seeds["FuzzDecodeMeta"] = append(seeds["FuzzDecodeMeta"], nil)
	for fz, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", fz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sortedValues[T any](m map[string]T) []T {
	var out []T
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}
