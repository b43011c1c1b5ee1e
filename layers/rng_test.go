package layers

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// sequentialNormals is the reference generator: SplitMix64 stepped one call at a time, a
// Box–Muller pair per two calls, the cosine first.
func sequentialNormals(seed uint64, n int, std float64) []float32 {
	s := seed
	next := func() float64 {
		s += splitMixGamma
		z := s
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		return (float64((z^z>>31)>>11) + 0.5) / (1 << 53)
	}
	out := make([]float32, n)
	for i := 0; i < n; i += 2 {
		u, w := next(), next()
		r := math.Sqrt(-2 * math.Log(u))
		out[i] = float32(r * math.Cos(2*math.Pi*w) * std)
		if i+1 < n {
			out[i+1] = float32(r * math.Sin(2*math.Pi*w) * std)
		}
	}
	return out
}

// TestFillNormalMatchesSequential: the parallel, counter-based fill gives the sequential
// stream bit for bit, for odd and even lengths and lengths that split over workers.
func TestFillNormalMatchesSequential(t *testing.T) {
	for _, n := range []int{1, 2, 7, 1000, 1<<18 + 3} {
		got := make([]float32, n)
		fillNormal(got, 42^fnv64("decoder.layers.0.mlp.linear_fc1.weight"), 0.02)
		require.Equal(t, sequentialNormals(42^fnv64("decoder.layers.0.mlp.linear_fc1.weight"), n, 0.02), got, "n=%d", n)
	}
}
