package main

import (
	"net/netip"
	"testing"
)

// FuzzConf feeds arbitrary network configurations and CNI_ARGS to the
// plugin's decoders, as a container runtime hands them over: each is
// accepted or refused with an error, never a panic, and what is accepted
// has a network and a socket to talk to.
func FuzzConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"web","type":"ovlsw-cni","network":"web"}`), "IP=10.0.9.5/24")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"web","type":"ovlsw-cni","runtimeConfig":{"ips":["10.0.9.5/24"]}}`), "")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"web","type":"ovlsw-cni","ipam":{"type":"host-local"}}`), "")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"web","type":"ovlsw-cni","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}}`), "IgnoreUnknown=1;IP=x")
	f.Add([]byte(`{`), "IP")
	f.Add([]byte(`{"cniVersion":"0.4.0","name":"web","type":"ovlsw-cni","runtimeConfig":{"mac":"02:00:00:00:00:01"}}`), "IgnoreUnknown=1;IP=10.0.9.6;MAC=02:42:0a:00:09:06")
	f.Fuzz(func(t *testing.T, data []byte, cniArgs string) {
		conf, err := parseConf(data)
		if err != nil {
			return
		}
		if conf.Network == "" || conf.Socket == "" {
			t.Fatalf("accepted %q without a network or socket", data)
		}
		subnet := func() (netip.Prefix, error) { return netip.MustParsePrefix("10.0.9.0/24"), nil }
		if p, err := requestedAddress(conf, cniArgs, subnet); err == nil && p.IsValid() && p.Bits() < 0 {
			t.Fatalf("accepted %q with no prefix length", cniArgs)
		}
		_, _ = requestedMAC(conf, cniArgs)
	})
}
