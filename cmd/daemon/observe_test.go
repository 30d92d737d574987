package daemon

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckMetricsAddr(t *testing.T) {
	for _, tc := range []struct {
		name, addr, err string
	}{
		{"off", "", ""},
		{"loopback", "127.0.0.1:9464", ""},
		{"all", ":9464", ""},
		{"ipv6", "[::1]:9464", ""},
		{"no port", "127.0.0.1", "want HOST:PORT"},
		{"port 0", "127.0.0.1:0", "port from 1"},
		{"bad port", "127.0.0.1:http", "port from 1"},
		{"big port", "127.0.0.1:70000", "port from 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkMetricsAddr(tc.addr)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("%q: %v", tc.addr, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("%q: error %v, want one containing %q", tc.addr, err, tc.err)
			case err != nil && !errors.As(err, new(*ConfigError)):
				t.Fatalf("%q: %T is not a ConfigError", tc.addr, err)
			}
		})
	}
}
