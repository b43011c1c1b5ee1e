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

// TestExpNegRow checks the row exp (vector body and scalar tail) against math.Exp: at most
// 2 ulp, −Inf and underflow to 0, NaN kept, aliasing allowed.
func TestExpNegRow(t *testing.T) {
	t.Run("dispatch", testExpNegRow)
	t.Run("scalar", func(t *testing.T) {
		defer func(v bool) { haveExpAVX2 = v }(haveExpAVX2)
		haveExpAVX2 = false
		testExpNegRow(t)
	})
}

func testExpNegRow(t *testing.T) {
	src := make([]float32, 0, 300000)
	for x := float32(-90); x <= 0.01; x += 0.0003 {
		src = append(src, x)
	}
	src = append(src, float32(math.Inf(-1)), -1000, float32(math.NaN()), 0, -1e-30)
	const sub = 0.25
	dst := make([]float32, len(src))
	expNegRow(dst, src, sub)
	var worst float64
	for i, s := range src {
		x := s - sub
		switch {
		case math.IsNaN(float64(x)):
			require.Truef(t, math.IsNaN(float64(dst[i])), "exp(NaN) at %d", i)
			continue
		case x < -87.33654:
			require.Zerof(t, dst[i], "exp(%v)", x)
			continue
		}
		want := math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(float64(dst[i])-want)/ulp)
	}
	require.LessOrEqual(t, worst, 2.0, "worst error in ulp")
	for _, n := range []int{0, 1, 7, 8, 9, 17} {
		a := make([]float32, n)
		copy(a, src[1000:1000+n])
		expNegRow(a, a, sub)
		require.Equal(t, dst[1000:1000+n], a, "aliased, n=%d", n)
	}
}
