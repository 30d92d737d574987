package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// Main is the main function of a bench program called name (the harness,
// the soak), given the error from parsing its flags. It exits 0 for
// -help (flag.ErrHelp) and 2 for any other flag error, and 1 if prereq
// fails. Otherwise it calls run with a context that SIGINT and SIGTERM
// cancel, and exits 130 if they did (the Bed has removed what it made by
// then). run returns how to print its report, nil if there is none, and
// its error: Main prints the report on stdout and exits 1 if printing or
// run failed.
func Main(name string, flagErr error, prereq func() error, run func(ctx context.Context) (print func(io.Writer) error, err error)) {
	if errors.Is(flagErr, flag.ErrHelp) {
		os.Exit(0)
	}
	if flagErr != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, flagErr)
		os.Exit(2)
	}
	if err := prereq(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	print, runErr := run(ctx)
	interrupted := ctx.Err() != nil
	stop() // which cancels ctx too
	if interrupted {
		fmt.Fprintf(os.Stderr, "%s: interrupted; every namespace and process it made has been removed\n", name)
		os.Exit(130)
	}
	if print != nil {
		if err := print(os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, runErr)
		os.Exit(1)
	}
}

// Median returns the median of v (the mean of the middle two for an even
// count), 0 for none. v is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteJSON writes v as indented JSON: a bench program's --json report.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
