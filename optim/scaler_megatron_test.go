package optim

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDynamicScalerMatchesMegatron: after every update of a seeded run of clean steps and
// overflow bursts, the scale and both trackers equal Megatron-Core's DynamicGradScaler's
// (testdata/megatron_scaler.json, written by testdata/megatron_scaler.py), with hysteresis 3
// and 1 and a minimum scale reached.
func TestDynamicScalerMatchesMegatron(t *testing.T) {
	raw, err := os.ReadFile("testdata/megatron_scaler.json")
	require.NoError(t, err)
	var cases []struct {
		Config struct {
			Initial    float64 `json:"initial_scale"`
			Min        float64 `json:"min_scale"`
			Growth     float64 `json:"growth_factor"`
			Backoff    float64 `json:"backoff_factor"`
			Interval   int     `json:"growth_interval"`
			Hysteresis int     `json:"hysteresis"`
		} `json:"config"`
		Rows [][4]any `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.Len(t, cases, 2)
	for ci, c := range cases {
		s := NewDynamicScaler(c.Config.Initial, c.Config.Min, c.Config.Interval, c.Config.Hysteresis)
		s.Growth, s.Backoff = c.Config.Growth, c.Config.Backoff
		for i, r := range c.Rows {
			s.Update(r[0].(bool))
			g, h := s.Trackers()
			require.Equal(t, r[1].(float64), s.Scale(), "case %d update %d: scale", ci, i)
			require.Equal(t, int(r[2].(float64)), g, "case %d update %d: growth tracker", ci, i)
			require.Equal(t, int(r[3].(float64)), h, "case %d update %d: hysteresis tracker", ci, i)
		}
	}
}
