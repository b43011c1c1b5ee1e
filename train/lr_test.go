package train

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Values worked out from Megatron's get_lr formulas by hand.
func TestLRSchedule(t *testing.T) {
	lin := LRSchedule{MaxLR: 1e-3, MinLR: 1e-4, WarmupSteps: 100, DecaySteps: 1100, Style: "linear"}
	require.NoError(t, lin.Validate())
	cases := []struct {
		s    LRSchedule
		n    int64
		want float64
	}{
		{lin, 0, 0}, {lin, 50, 5e-4}, {lin, 100, 1e-3}, // warm-up is inclusive
		{lin, 600, 1e-4 + 0.5*9e-4}, {lin, 1100, 1e-4}, {lin, 5000, 1e-4},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, DecaySteps: 1000, Style: "cosine"}, 500, 5e-4},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, DecaySteps: 1000, Style: "cosine"}, 250, 0.5 * (math.Cos(math.Pi/4) + 1) * 1e-3},
		{LRSchedule{MaxLR: 2e-3, MinLR: 1e-4, WarmupSteps: 10, DecaySteps: 1000, Style: "constant"}, 500, 2e-3},
		{LRSchedule{MaxLR: 1e-3, MinLR: 1e-5, WarmupSteps: 100, DecaySteps: 10000, Style: "inverse-square-root"}, 400, 1e-3 * 10 / 20},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, InitLR: 1e-4, WarmupSteps: 10, DecaySteps: 100, Style: "linear"}, 5, 1e-4 + 0.5*9e-4},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, DecaySteps: 1000, Style: "WSD", WSDDecaySteps: 200, WSDStyle: "linear"}, 700, 1e-3},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, DecaySteps: 1000, Style: "WSD", WSDDecaySteps: 200, WSDStyle: "linear"}, 900, 5e-4},
		{LRSchedule{MaxLR: 1e-3, MinLR: 0, DecaySteps: 1000, Style: "WSD", WSDDecaySteps: 200, WSDStyle: "minus_sqrt"}, 850, (1 - math.Sqrt(0.25)) * 1e-3},
	}
	for i, c := range cases {
		require.InDelta(t, c.want, c.s.At(c.n), 1e-15, "case %d", i)
	}
	require.Error(t, LRSchedule{MaxLR: 1, Style: "step"}.Validate())
	require.Error(t, LRSchedule{MaxLR: 1, MinLR: 2, DecaySteps: 10, Style: "linear"}.Validate())
}

// TestWeightDecaySchedule: Megatron's get_wd from --start-weight-decay 0.01 to
// --end-weight-decay 0.1 over 100 samples (values worked by hand), the end value past them,
// and --weight-decay-incr-style constant at the end value throughout.
func TestWeightDecaySchedule(t *testing.T) {
	s := LRSchedule{MaxLR: 1, Style: "constant", StartWD: 0.01, EndWD: 0.1, WDIncrSteps: 100}
	for _, c := range []struct {
		style string
		n     int64
		want  float64
	}{
		{"linear", 0, 0.01}, {"linear", 50, 0.055}, {"linear", 100, 0.1}, {"linear", 101, 0.1},
		{"cosine", 0, 0.01}, {"cosine", 25, 0.01 + 0.5*(1-math.Sqrt(0.5))*0.09}, {"cosine", 50, 0.055}, {"cosine", 200, 0.1},
	} {
		s.WDIncrStyle = c.style
		require.InDelta(t, c.want, s.WD(c.n), 1e-15, "%s at %d", c.style, c.n)
	}
	s.WDIncrStyle = "constant"
	require.ErrorContains(t, s.Validate(), "--weight-decay-incr-style constant with --start-weight-decay 0.01 ≠ --end-weight-decay 0.1")
	s.StartWD = 0.1
	require.Equal(t, 0.1, s.WD(3))
	s.WDIncrStyle, s.StartWD, s.EndWD = "linear", 0.2, 0.1
	require.ErrorContains(t, s.Validate(), "0 ≤ --start-weight-decay ≤ --end-weight-decay")
}
