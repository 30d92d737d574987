package testbed

import (
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	odd := []float64{3, 1, 2}
	if got := Median(odd); got != 2 {
		t.Errorf("median = %v, want 2", got)
	}
	if !slices.Equal(odd, []float64{3, 1, 2}) {
		t.Errorf("Median sorted its argument: %v", odd)
	}
	if got := Median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("median of none = %v, want 0", got)
	}
}
