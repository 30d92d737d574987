package fdb

import "fmt"

// MaxVNI is the largest VXLAN network identifier: the VNI field of the
// VXLAN header (RFC 7348 section 5) is 24 bits wide, so 2^24 - 1.
const MaxVNI = 1<<24 - 1

// CheckVNI returns nil if vni is a valid VXLAN network identifier, 1 to
// MaxVNI (0 is not used: it is what an unset VNI reads as), and otherwise
// an error naming the value. It is the one VNI range check: every package
// validating a VNI calls it, and callers add their own context.
func CheckVNI(vni uint32) error {
	if vni == 0 || vni > MaxVNI {
		return fmt.Errorf("VNI %d out of range 1..%d", vni, MaxVNI)
	}
	return nil
}
