package cpu

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExpf checks expf against float64 math.Exp over float32's range: at most 2 ulp.
func TestExpf(t *testing.T) {
	var worst float64
	for x := float32(-87.3); x < 88.7; x += 0.00173 {
		want := math.Exp(float64(x))
		got := float64(expf(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(got-want)/ulp)
	}
	require.LessOrEqual(t, worst, 2.0, "worst error in ulp")
	require.Equal(t, float32(1), expf(0))
	require.Equal(t, float32(0), expf(float32(math.Inf(-1))))
	require.Equal(t, float32(0), expf(-200))
	require.True(t, math.IsInf(float64(expf(100)), 1))
	require.True(t, math.IsNaN(float64(expf(float32(math.NaN())))))
}

// TestExpNeg checks the inlinable x ≤ 0 variant the same way.
func TestExpNeg(t *testing.T) {
	var worst float64
	for x := float32(-87.3); x <= 0; x += 0.000731 {
		want := math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(float64(expNeg(x))-want)/ulp)
	}
	require.LessOrEqual(t, worst, 2.0, "worst error in ulp")
	require.Equal(t, float32(1), expNeg(0))
	require.Equal(t, float32(0), expNeg(float32(math.Inf(-1))))
	require.True(t, math.IsNaN(float64(expNeg(float32(math.NaN())))))
}

func BenchmarkExp(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) * 0.01
	}
	var sink float32
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += float32(math.Exp(float64(v)))
			}
		}
	})
	b.Run("expf", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += expf(v)
			}
		}
	})
	b.Run("expNeg", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				sink += expNeg(v)
			}
		}
	})
	_ = sink
}
