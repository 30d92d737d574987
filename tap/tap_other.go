//go:build !linux

package tap

import "fmt"

// Create returns an error wrapping ErrUnsupported: TAP devices are only
// implemented on Linux.
func Create(cfg Config) (Device, error) {
	return nil, fmt.Errorf("%w (asked for %q)", ErrUnsupported, cfg.Name)
}

// Adopt returns an error wrapping ErrUnsupported: TAP devices are only
// implemented on Linux.
func Adopt(cfg Config) (Device, error) {
	return nil, fmt.Errorf("%w (asked for %q)", ErrUnsupported, cfg.Name)
}
