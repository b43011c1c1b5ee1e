package train

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScheduleMatchesMegatron: learning rates and weight decays equal Megatron-Core's own
// OptimizerParamScheduler (testdata/megatron_schedules.json, written by
// testdata/megatron_schedules.py with Megatron-LM's June 2025 tree) for every decay style,
// WSD's four decay styles, warm-up from an initial lr or none, and the three weight-decay
// increment styles, at every sample count of a grid through each phase's boundaries.
func TestScheduleMatchesMegatron(t *testing.T) {
	raw, err := os.ReadFile("testdata/megatron_schedules.json")
	require.NoError(t, err)
	var cases []struct {
		LR struct {
			Name          string
			Style         string  `json:"lr_decay_style"`
			WSDStyle      string  `json:"lr_wsd_decay_style"`
			WSDDecaySteps int64   `json:"wsd_decay_steps"`
			Init          float64 `json:"init_lr"`
			Max           float64 `json:"max_lr"`
			Min           float64 `json:"min_lr"`
			WarmupSteps   int64   `json:"lr_warmup_steps"`
			DecaySteps    int64   `json:"lr_decay_steps"`
		} `json:"lr"`
		WD struct {
			Name      string
			Start     float64 `json:"start_wd"`
			End       float64 `json:"end_wd"`
			IncrSteps int64   `json:"wd_incr_steps"`
			IncrStyle string  `json:"wd_incr_style"`
		} `json:"wd"`
		Rows [][3]float64 `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.Len(t, cases, 27)
	for _, c := range cases {
		s := LRSchedule{MaxLR: c.LR.Max, MinLR: c.LR.Min, InitLR: c.LR.Init, WarmupSteps: c.LR.WarmupSteps,
			DecaySteps: c.LR.DecaySteps, Style: c.LR.Style, WSDDecaySteps: c.LR.WSDDecaySteps, WSDStyle: c.LR.WSDStyle,
			StartWD: c.WD.Start, EndWD: c.WD.End, WDIncrSteps: c.WD.IncrSteps, WDIncrStyle: c.WD.IncrStyle}
		require.NoError(t, s.Validate(), c.LR.Name)
		for _, r := range c.Rows {
			n := int64(r[0])
			require.InDelta(t, r[1], s.At(n), 1e-12*math.Max(r[1], 1e-12), "%s/%s: lr at %d samples", c.LR.Name, c.WD.Name, n)
			require.InDelta(t, r[2], s.WD(n), 1e-12*math.Max(r[2], 1e-12), "%s/%s: weight decay at %d samples", c.LR.Name, c.WD.Name, n)
		}
	}
}
