//go:build !linux

package vtep

// This file holds the stand-in for systems without a UDP endpoint yet:
// Listen fails.

import (
	"errors"
	"fmt"
)

// Listen is not implemented on this system; it always fails with an error
// that errors.Is errors.ErrUnsupported.
func Listen(cfg ConnConfig) (Conn, error) {
	return nil, fmt.Errorf("vtep: listen udp %v: batched UDP is implemented only on Linux: %w", cfg.Addr, errors.ErrUnsupported)
}
