package fdb

import "testing"

func TestCheckVNI(t *testing.T) {
	tests := []struct {
		name    string
		vni     uint32
		wantErr string // "" means valid
	}{
		{"zero", 0, "VNI 0 out of range 1..16777215"},
		{"one", 1, ""},
		{"typical", 42, ""},
		{"max", MaxVNI, ""},
		{"max plus one", MaxVNI + 1, "VNI 16777216 out of range 1..16777215"},
		{"largest uint32", 1<<32 - 1, "VNI 4294967295 out of range 1..16777215"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckVNI(tt.vni)
			var got string
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("CheckVNI(%d) = %q, want %q", tt.vni, got, tt.wantErr)
			}
		})
	}
}
