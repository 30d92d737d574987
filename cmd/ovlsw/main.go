// Command ovlsw is a userspace VXLAN overlay switch. This package only turns
// command lines into configurations and calls into the daemon and the
// control API; the work is done elsewhere.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "ovlsw: %v\n", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "ovlsw",
		Short:         "A userspace VXLAN overlay switch",
		Long:          "ovlsw carries Ethernet frames between TAP ports and remote VTEPs in VXLAN (RFC 7348).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see `%s --help`)", c.CommandPath(), err, c.CommandPath())
	})
	root.AddCommand(newUp(), newStatus(), newFDB(), newPeers(), newKeys(), newToken(), newAttach(), newDetach(), newNetwork(), newNames(), newRoutes(),
		newCapture(), newTrace(), newEvents())
	return root
}
