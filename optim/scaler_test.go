package optim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The sequence follows grad_scaler.py's update rule step by step.
func TestDynamicScaler(t *testing.T) {
	d := NewDynamicScaler(1<<32, 1, 3, 2)
	steps := []struct {
		inf  bool
		want float64
	}{
		{true, 1 << 32},                                      // first overflow uses up one unit of hysteresis
		{true, 1 << 31},                                      // second one backs off
		{true, 1 << 30},                                      // hysteresis stays exhausted: every overflow backs off
		{false, 1 << 30}, {false, 1 << 30}, {false, 1 << 31}, // 3 clean steps grow
		{true, 1 << 31}, // hysteresis refilled to 2 on growth
		{true, 1 << 30},
	}
	for i, s := range steps {
		d.Update(s.inf)
		require.Equal(t, s.want, d.Scale(), "step %d", i)
	}
	m := NewDynamicScaler(2, 1, 1000, 1)
	m.Update(true)
	m.Update(true)
	require.Equal(t, 1.0, m.Scale(), "never below the minimum")
	require.Equal(t, 8.0, ConstantScaler(8).Scale())
}
