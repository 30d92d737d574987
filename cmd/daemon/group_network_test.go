package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ovlsw/ovlsw/gossip"
)

func TestCheckNetworkGroup(t *testing.T) {
	for _, tc := range []struct {
		name, group, want string
	}{
		{"none", "", ""},
		{"v4", "239.1.1.2", ""},
		{"v6", "ff0e::1:1", ""},
		{"unicast", "10.0.0.1", "network n: multicast group 10.0.0.1 is not a multicast address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := gossip.Network{Name: "n", VNI: 7}
			if tc.group != "" {
				n.Group = netip.MustParseAddr(tc.group)
			}
			err := checkNetwork(&n, 1450, "flood")
			if got := errString(err); !strings.HasPrefix(got, tc.want) || (tc.want == "") != (err == nil) {
				t.Errorf("checkNetwork = %q, want prefix %q", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
