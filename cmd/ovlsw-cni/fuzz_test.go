package main

import (
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
	f.Fuzz(func(t *testing.T, data []byte, cniArgs string) {
		conf, err := parseConf(data)
		if err != nil {
			return
		}
		if conf.Network == "" || conf.Socket == "" {
			t.Fatalf("accepted %q without a network or socket", data)
		}
		_, _ = requestedAddress(conf, cniArgs)
	})
}
