package tap

import "testing"

func TestOffloadsString(t *testing.T) {
	tests := []struct {
		name string
		o    Offloads
		want string
	}{
		{name: "none", o: Offloads{}, want: "off"},
		{name: "header only", o: Offloads{VnetHdr: true}, want: "vnet_hdr"},
		{name: "checksum", o: Offloads{VnetHdr: true, CSUM: true}, want: "vnet_hdr,csum"},
		{name: "all", o: Offloads{VnetHdr: true, CSUM: true, TSO4: true, TSO6: true}, want: "vnet_hdr,csum,tso4,tso6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.String(); got != tt.want {
				t.Errorf("%+v.String() = %q, want %q", tt.o, got, tt.want)
			}
		})
	}
}
