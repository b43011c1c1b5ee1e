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
