//go:build !linux

package tap

import "fmt"

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
