//go:build !linux

package tap

import (
	"fmt"
	"net/netip"
)

// Place returns an error wrapping ErrUnsupported: network namespaces are
// Linux's.
func Place(link string, p Placement) error {
	return fmt.Errorf("%w (place %q)", ErrUnsupported, link)
}

// InNetns returns an error wrapping ErrUnsupported, without running fn:
// network namespaces are Linux's.
func InNetns(path string, fn func() error) error {
	return fmt.Errorf("%w (network namespace %s)", ErrUnsupported, path)
}

// NetnsIDOf returns an error wrapping ErrUnsupported: network namespaces
// are Linux's.
func NetnsIDOf(path string) (NetnsID, error) {
	return NetnsID{}, fmt.Errorf("%w (network namespace %s)", ErrUnsupported, path)
}

// TxDropped returns an error wrapping ErrUnsupported.
func TxDropped(path, ifname string) (uint64, error) {
	return 0, fmt.Errorf("%w (TX drops of %q)", ErrUnsupported, ifname)
}

// Resolving returns an error wrapping ErrUnsupported.
func Resolving(path, ifname string) ([]netip.Addr, error) {
	return nil, fmt.Errorf("%w (neighbours of %q)", ErrUnsupported, ifname)
}
