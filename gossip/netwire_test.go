package gossip

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func sampleNetRecords() map[string]netRecord {
	long6 := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe")
	return map[string]netRecord{
		"v4": {Net: Network{
			Name: "red", VNI: 100, Subnet: netip.MustParsePrefix("10.10.0.0/16"),
			Gateway: netip.MustParseAddr("10.10.0.1"), MTU: 1450, Flood: "arp=drop,unicast=flood,broadcast=flood",
		}, Version: 1<<60 + 5, Time: 1_700_000_000_000_000_000, Writer: "node01", Created: 1 << 60},
		"v6": {Net: Network{
			Name: "blue", VNI: MaxVNI, Subnet: netip.MustParsePrefix("2001:db8:1::/64"),
			Gateway: netip.MustParseAddr("2001:db8:1::1"),
		}, Version: 7, Time: -1, Writer: "n", Created: 7},
		"4in6": {Net: Network{
			Name: "mapped", VNI: 3, Subnet: netip.MustParsePrefix("::ffff:10.0.0.0/104"),
		}, Version: 8, Writer: "n", Created: 2},
		"bare": {Net: Network{Name: "x"}, Version: 1, Writer: "w", Created: 1},
		"group4": {Net: Network{
			Name: "g4", VNI: 4094, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Group: netip.MustParseAddr("239.1.1.2"),
		}, Version: 3, Writer: "n", Created: 3},
		"group6": {Net: Network{
			Name: "g6", VNI: 7, Group: netip.MustParseAddr("ff0e::1:1"),
		}, Version: 4, Writer: "n", Created: 4},
		"dns4": {Net: Network{
			Name: "d4", VNI: 4095, Subnet: netip.MustParsePrefix("10.30.0.0/24"), Gateway: netip.MustParseAddr("10.30.0.1"),
			DNS: netip.MustParseAddr("10.30.0.53"),
		}, Version: 5, Writer: "n", Created: 5},
		"dns6-group": {Net: Network{
			Name: "d6", VNI: 8, Subnet: netip.MustParsePrefix("fd00:53::/64"), DNS: netip.MustParseAddr("fd00:53::53"),
			Group: netip.MustParseAddr("239.1.1.3"),
		}, Version: 6, Writer: "n", Created: 6},
		"subnets": {Net: Network{
			Name: "prod", VNI: 4097, Subnet: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1"),
			Group: netip.MustParseAddr("239.1.1.3"),
			More: [MaxSubnets - 1]NetSubnet{
				{netip.MustParsePrefix("11.1.1.0/24"), netip.MustParseAddr("11.1.1.1")},
				{netip.MustParsePrefix("fd01::/64"), netip.MustParseAddr("fd01::1")},
				{netip.MustParsePrefix("fd02::/64"), netip.Addr{}},
			},
		}, Version: 10, Writer: "n", Created: 10},
		"encrypted": {Net: Network{
			Name: "sealed", VNI: 9, Subnet: netip.MustParsePrefix("10.40.0.0/24"), Encrypted: true,
		}, Version: 10, Writer: "n", Created: 10},
		"tombstone": {Net: Network{Name: "red"}, Deleted: true, Version: 9, Time: 5, Writer: "node02"},
		"max": {Net: Network{
			Name: strings.Repeat("n", 255), VNI: 1, Subnet: netip.PrefixFrom(long6, 127), Gateway: long6,
			MTU: 65535, Flood: strings.Repeat("f", maxFlood), Group: netip.MustParseAddr("ff05::ffff:ffff:ffff:ffff"),
			DNS:  long6.Next(),
			More: maxMore(long6),
		}, Version: maxNetVersion, Time: math.MaxInt64, Writer: strings.Repeat("w", 255), Created: 1},
	}
}

// maxMore is the longest More: every entry an IPv6 /128 with a gateway,
// below first.
func maxMore(first netip.Addr) (more [MaxSubnets - 1]NetSubnet) {
	a := first
	for i := range more {
		a = a.Prev()
		more[i] = NetSubnet{netip.PrefixFrom(a, 128), a}
	}
	return more
}

func TestNetWireRoundTrip(t *testing.T) {
	for name, r := range sampleNetRecords() {
		t.Run(name, func(t *testing.T) {
			b := encodeNetMessage(&r)
			got, err := decodeNetMessage(b)
			if err != nil || !reflect.DeepEqual(got, r) {
				t.Fatalf("decode = %+v, %v\nwant %+v", got, err, r)
			}
			if len(b) > 1400-100 {
				t.Errorf("%d bytes do not fit a gossip packet", len(b))
			}
			if name == "max" && len(b) != 2+maxNetRecord {
				t.Errorf("largest record is %d bytes, maxNetRecord says %d", len(b)-2, maxNetRecord)
			}
			// Its own payload to NotifyMsg, never a binding message.
			if _, err := decodeMessage(b); err == nil {
				t.Error("decodeMessage accepted a network message")
			}
		})
	}
}

func TestNetDecodeRejects(t *testing.T) {
	recs := sampleNetRecords()
	v4 := recs["v4"]
	live := encodeNetMessage(&v4)
	tomb := encodeNetMessage(ptr(recs["tombstone"]))
	flagsOff := 2 + 1 + len("red")
	versionOff := flagsOff + 1
	createdOff := versionOff + 8 + 8 + 1 + len("node01")
	vniOff := createdOff + 8
	subnetOff := vniOff + 4
	bitsOff := subnetOff + 5
	gatewayOff := bitsOff + 1
	with := func(mod func(r *netRecord)) []byte {
		r := v4
		mod(&r)
		return encodeNetMessage(&r)
	}
	st := encodeState(&state{Nets: []netRecord{v4, recs["v6"]}})
	stNetsOff := 2 + 2 // no sections
	noNets := patch(encodeState(&state{}), 1, typeStateNets)
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		b      []byte
		want   error
	}{
		{"message/empty", decNet, nil, errMalformed},
		{"message/version", decNet, patch(live, 0, 2), errVersion},
		{"message/type", decNet, patch(live, 1, typeBinding), errMalformed},
		{"message/trailing", decNet, append(bytes.Clone(live), 0), errMalformed},
		{"message/empty name", decNet, with(func(r *netRecord) { r.Net.Name = "" }), errMalformed},
		{"message/empty writer", decNet, with(func(r *netRecord) { r.Writer = "" }), errMalformed},
		{"message/flags", decNet, patch(live, flagsOff, 8), errMalformed},
		{"message/group flag without group", decNet, append(patch(live, flagsOff, flagGroup), 0), errMalformed},
		{"message/group flag at end", decNet, patch(live, flagsOff, flagGroup), errMalformed},
		{"message/group not multicast", decNet, append(patch(live, flagsOff, flagGroup), 4, 10, 0, 0, 1), errMalformed},
		{"message/group family", decNet, append(patch(live, flagsOff, flagGroup), 5, 239, 1, 1, 1), errMalformed},
		{"message/group mapped", decNet, with(func(r *netRecord) { r.Net.Group = netip.MustParseAddr("::ffff:239.1.1.1") }), errMalformed},
		{"message/tombstone with group flag", decNet, patch(tomb, flagsOff, flagDeleted|flagGroup), errMalformed},
		{"message/dns flag without dns", decNet, append(patch(live, flagsOff, flagDNS), 0), errMalformed},
		{"message/dns outside subnet", decNet, append(patch(live, flagsOff, flagDNS), 4, 192, 0, 2, 1), errMalformed},
		{"message/tombstone with dns flag", decNet, patch(tomb, flagsOff, flagDeleted|flagDNS), errMalformed},
		{"message/version zero", decNet, with(func(r *netRecord) { r.Version = 0 }), errMalformed},
		{"message/version bound", decNet, with(func(r *netRecord) { r.Version = maxNetVersion + 1 }), errTooLarge},
		{"message/created zero", decNet, with(func(r *netRecord) { r.Created = 0 }), errMalformed},
		{"message/created after version", decNet, with(func(r *netRecord) { r.Created = r.Version + 1 }), errMalformed},
		{"message/vni", decNet, patch(live, vniOff, 1, 0, 0, 0), errMalformed},
		{"message/subnet family", decNet, patch(live, subnetOff, 5), errMalformed},
		{"message/subnet bits", decNet, patch(live, bitsOff, 33), errMalformed},
		{"message/host bits", decNet, patch(live, bitsOff, 8), errMalformed},
		{"message/gateway outside", decNet, patch(live, gatewayOff+1, 11), errMalformed},
		{"message/gateway without subnet", decNet, with(func(r *netRecord) { r.Net.Subnet = netip.Prefix{} }), errMalformed},
		{"message/subnets flag at end", decNet, patch(live, flagsOff, flagSubnets), errMalformed},
		{"message/subnets count zero", decNet, append(patch(live, flagsOff, flagSubnets), 0), errMalformed},
		{"message/subnets count bound", decNet, append(patch(live, flagsOff, flagSubnets), MaxSubnets, 4, 11, 0, 0, 0, 8, 0), errMalformed},
		{"message/subnets family 0", decNet, append(patch(live, flagsOff, flagSubnets), 1, 0, 0), errMalformed},
		{"message/subnets overlap", decNet, with(func(r *netRecord) { r.Net.More[0].Prefix = netip.MustParsePrefix("10.10.5.0/24") }), errMalformed},
		{"message/subnets gateway outside", decNet, with(func(r *netRecord) {
			r.Net.More[0] = NetSubnet{netip.MustParsePrefix("11.0.0.0/24"), netip.MustParseAddr("12.0.0.1")}
		}), errMalformed},
		{"message/subnets host bits", decNet, with(func(r *netRecord) {
			r.Net.More[0] = NetSubnet{Prefix: netip.MustParsePrefix("11.0.0.1/24")}
		}), errMalformed},
		{"message/tombstone with subnets flag", decNet, patch(tomb, flagsOff, flagDeleted|flagSubnets), errMalformed},
		{"message/tombstone with fields", decNet, append(bytes.Clone(tomb), live[createdOff:]...), errMalformed},
		{"state/type 5 without networks", decState, append(noNets, 0, 0), errMalformed},
		{"state/networks bound", decState, patch(st, stNetsOff, 0x10, 1), errTooLarge},
		{"state/networks count", decState, patch(st, stNetsOff, 0, 3), errMalformed},
		{"state/duplicate network", decState, encodeState(&state{Nets: []netRecord{v4, v4}}), errMalformed},
		{"state/type 2 with networks", decState, patch(st, 1, typeState), errMalformed},
		{"state/bad network", decState, encodeState(&state{Nets: []netRecord{{Net: Network{Name: "n"}, Writer: "w"}}}), errMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("decode = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNetWireNoGroupUnchanged: a network without a group sets no new flag
// and adds no field, so nodes that predate groups read it.
func TestNetWireNoGroupUnchanged(t *testing.T) {
	r := sampleNetRecords()["v4"]
	without := encodeNetMessage(&r)
	if flags := without[2+1+len(r.Net.Name)]; flags != 0 {
		t.Errorf("flags = %#x without a group, want 0", flags)
	}
	r.Net.Group = netip.MustParseAddr("239.1.1.2")
	with := encodeNetMessage(&r)
	if want := append(bytes.Clone(without), 4, 239, 1, 1, 2); len(with) != len(want) || !bytes.Equal(with[len(without):], want[len(without):]) {
		t.Errorf("group record = %x, want the record and then the group %x", with, want[len(without):])
	}
}

// TestNetWireOneSubnetUnchanged: a network with one subnet sets no new
// flag and adds no field, so nodes that predate several subnets read it;
// more subnets follow every other field.
func TestNetWireOneSubnetUnchanged(t *testing.T) {
	r := sampleNetRecords()["v4"]
	without := encodeNetMessage(&r)
	r.Net.More[0] = NetSubnet{netip.MustParsePrefix("11.1.1.0/24"), netip.MustParseAddr("11.1.1.1")}
	with := encodeNetMessage(&r)
	if with[2+1+len(r.Net.Name)] != flagSubnets {
		t.Errorf("flags = %#x, want %#x", with[2+1+len(r.Net.Name)], flagSubnets)
	}
	with[2+1+len(r.Net.Name)] = 0
	tail := []byte{1, 4, 11, 1, 1, 0, 24, 4, 11, 1, 1, 1}
	if !bytes.Equal(with, append(bytes.Clone(without), tail...)) {
		t.Errorf("record with a second subnet = %x, want the record and then %x", with, tail)
	}
}

func TestNetDecodeTruncated(t *testing.T) {
	for name, r := range sampleNetRecords() {
		b := encodeNetMessage(&r)
		for n := range len(b) {
			if err := decNet(b[:n]); err == nil {
				t.Errorf("%s: %d-byte prefix of %d decoded", name, n, len(b))
			}
		}
	}
}

func decNet(b []byte) error { _, err := decodeNetMessage(b); return err }

// checkNetRecord checks the bounds a decoded network record must respect.
func checkNetRecord(t *testing.T, r *netRecord) {
	bad := r.Version == 0 || r.Version > maxNetVersion || r.Writer == ""
	if r.Deleted {
		bad = bad || r.Net != (Network{Name: r.Net.Name}) || r.Created != 0
	} else {
		bad = bad || checkNetwork(&r.Net) != nil || r.Created == 0 || r.Created > r.Version
	}
	if bad {
		t.Fatalf("decoded network record out of bounds: %+v", r)
	}
}

// FuzzDecodeNetwork: any input either fails or decodes to a bounded network
// record that re-encodes to exactly the input.
func FuzzDecodeNetwork(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeNetMessage(b)
		if err != nil {
			return
		}
		checkNetRecord(t, &r)
		if re := encodeNetMessage(&r); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", re, b)
		}
	})
}
