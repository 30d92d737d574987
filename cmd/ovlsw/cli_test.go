package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUpFlagErrors checks that bad command lines are refused before
// anything is created, with one line that says what to fix.
func TestUpFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"missing bind", []string{"up", "--vni", "42"}, "--bind is required"},
		{"address without vni", []string{"up", "--bind", "10.0.0.1", "--address", "10.91.0.1/24"}, "give its --vni too"},
		{"subnet with host bits", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--subnet", "10.0.9.1/24"}, "did you mean 10.0.9.0/24"},
		{"gateway outside subnet", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--subnet", "10.0.9.0/24", "--gateway", "10.0.8.1"}, "not in --subnet"},
		{"attach without netns", []string{"attach", "--network", "web"}, `"netns" not set`},
		{"network create without vni", []string{"network", "create", "web", "--subnet", "10.0.9.0/24"}, `"vni" not set`},
		{"network create bad subnet", []string{"network", "create", "web", "--vni", "9", "--subnet", "10.0.9.0"}, "--subnet"},
		{"vni zero", []string{"up", "--vni", "0", "--bind", "10.0.0.1"}, "--vni 0 out of range"},
		{"vni too large", []string{"up", "--vni", "16777216", "--bind", "10.0.0.1"}, "--vni 16777216 out of range"},
		{"vni not a number", []string{"up", "--vni", "forty", "--bind", "10.0.0.1"}, `invalid argument "forty"`},
		{"bind not an IP", []string{"up", "--vni", "42", "--bind", "host1"}, `--bind "host1" is not an IP address`},
		{"bad peer", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--peer", "10.0.0.2:x"}, `--peer "10.0.0.2:x"`},
		{"bad address", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--address", "10.91.0.1"}, "--address \"10.91.0.1\": want ADDRESS/PREFIX"},
		{"peer is self", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--peer", "10.0.0.1"}, "own --bind address"},
		{"tap name too long", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--tap", "a-very-long-tap-name"}, "at most 15 characters"},
		{"bad log level", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--log-level", "loud"}, "--log-level"},
		{"ageing too short", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--ageing", "1ms"}, "--ageing 1ms is too short"},
		{"extra argument", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "now"}, `unknown command "now"`},
		{"bad flood policy", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--flood", "arp=sometimes"}, "--flood"},
		{"negative MAC limit", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--max-macs-per-port", "-1"}, "must be 0 (no limit) or more"},
		{"negative flood rate", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--flood-rate", "-5"}, "--flood-rate must be 0"},
		{"bad DNS upstream", []string{"up", "--bind", "10.0.0.1", "--dns-upstream", "dns.example"}, `--dns-upstream "dns.example": want an IP address`},
		{"DNS upstream none and more", []string{"up", "--bind", "10.0.0.1", "--dns-upstream", "none", "--dns-upstream", "192.0.2.53"}, "--dns-upstream none: give it alone"},
		{"DNS upstream unspecified", []string{"up", "--bind", "10.0.0.1", "--dns-upstream", "0.0.0.0"}, "--dns-upstream 0.0.0.0:53: give a unicast resolver address"},
		{"negative DNS rate", []string{"up", "--bind", "10.0.0.1", "--dns-rate", "-1"}, "--dns-rate -1: give 0 (no limit) or more"},
		{"network create DNS outside subnet", []string{"network", "create", "web", "--vni", "9", "--subnet", "10.0.9.0/24", "--dns-address", "10.0.8.53"}, "--dns-address: DNS address 10.0.8.53 is not in subnet 10.0.9.0/24"},
		{"data address not an IP", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--data-addr", "eth1"}, `--data-addr "eth1" is not an IP address`},
		{"data address unspecified", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--data-addr", "::"}, "--data-addr ::: give a unicast address"},
		{"peer is own data address", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--data-addr", "10.1.0.1", "--peer", "10.1.0.1"}, "own --data-addr address"},
		{"peer family differs from data address", []string{"up", "--vni", "42", "--bind", "10.0.0.1", "--data-addr", "2001:db8::1", "--peer", "10.0.0.2"}, "peer 10.0.0.2:4789 and --data-addr 2001:db8::1 are of different IP families"},
		{"IPv6 MTU too large", []string{"up", "--vni", "42", "--bind", "2001:db8::1", "--mtu", "65480"}, "--mtu 65480 out of range 576..65465"},
		{"advertise address bad", []string{"up", "--bind", "10.0.0.1", "--advertise-addr", "nat.example"}, `--advertise-addr "nat.example": want IP or IP:PORT`},
		{"advertise address port zero", []string{"up", "--bind", "10.0.0.1", "--advertise-addr", "192.0.2.1:0"}, "--advertise-addr \"192.0.2.1:0\""},
		{"advertise address unspecified", []string{"up", "--bind", "10.0.0.1", "--advertise-addr", "0.0.0.0"}, "--advertise-addr 0.0.0.0: give the unicast address"},
		{"advertise address other family", []string{"up", "--bind", "10.0.0.1", "--advertise-addr", "[2001:db8::1]:7946"}, "--advertise-addr [2001:db8::1]:7946 and --bind 10.0.0.1 are of different IP families"},
		{"status bad flag", []string{"status", "--jsn"}, "unknown flag: --jsn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			err := root.Execute()
			if err == nil {
				t.Fatalf("ovlsw %v succeeded", tt.args)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not mention %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
}

func TestClientWithoutDaemon(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	for _, cmd := range []string{"status", "fdb"} {
		root := newRoot()
		root.SetArgs([]string{cmd, "--socket", sock})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "no ovlsw is running at "+sock) {
			t.Errorf("ovlsw %s without a daemon: %v", cmd, err)
		}
	}
}
