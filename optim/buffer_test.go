package optim

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/layers"
)

// TestDistLayout follows Megatron's param_and_grad_buffer rules by hand: parameters in
// reverse order, starts padded to 64, a bucket closing once it spans bucketSize, the shared
// embedding in a bucket of its own, bucket ends padded to lcm(DP, 128).
func TestDistLayout(t *testing.T) {
	p := func(n int, shared bool) *layers.Param {
		return &layers.Param{Shape: []int{n}, SharedEmbedding: shared}
	}
	// Registration order: embedding (shared), a, b, c. Buffer order: c, b, a, embedding.
	params := layers.Params{p(300, true), p(100, false), p(50, false), p(70, false)}
	l := NewDistLayout(params, 3, 150, true, nil, 0) // pad = lcm(3, 128) = 384
	// c: [0, 70); b: start 128, end 178 ≥ 150 → bucket [0, 178) padded to 384.
	// a: [384, 484); the embedding starts at 512 (64-aligned) and needs its own bucket: the
	// previous one closes there (its unpadded end is 512, as Megatron counts it), padded to
	// 768; embedding [768, 1068) → 1152.
	require.Equal(t, []int{768, 384, 128, 0}, l.Offsets)
	require.Equal(t, []Bucket{{Lo: 0, End: 178, Hi: 384}, {Lo: 384, End: 512, Hi: 768}, {Lo: 768, End: 1068, Hi: 1152}}, l.Buckets)
	require.Equal(t, 1152, l.Numel)
	// One bucket, no shared embedding: the layout NewLayout has always had.
	one := NewDistLayout(params[1:], 3, 0, true, nil, 0)
	require.Equal(t, NewLayout(params[1:], 3), one)
	require.Equal(t, []Bucket{{Lo: 0, End: 292, Hi: 384}}, one.Buckets) // c [0, 70), b [128, 178), a [192, 292)
	// Two model chunks: each its own buffer, the second after the first's padded end.
	two := NewDistLayout(params[1:], 3, 0, true, []int{1, 2}, 0)
	// Chunk 0: a [0, 100). Chunk 1 from 384: c [384, 454), b [512, 562), padded to 768.
	require.Equal(t, []int{0, 512, 384}, two.Offsets)
	require.Equal(t, []Bucket{{Lo: 0, End: 100, Hi: 384}, {Lo: 384, End: 562, Hi: 768}}, two.Buckets)
	require.Equal(t, [][2]int{{0, 1}, {1, 2}}, two.Chunks)
	// Expert weights (EP > 1, expert-DP 2) after the others, in a bucket of their own.
	params[2].Expert = true
	ex := NewDistLayout(params[1:], 3, 0, true, nil, 2)
	// c [0, 70), a [128, 228) → 384; the expert b from 384, to 434 → padded to lcm(2, 128).
	require.Equal(t, []int{128, 384, 0}, ex.Offsets)
	require.Equal(t, []Bucket{{Lo: 0, End: 228, Hi: 384}, {Lo: 384, End: 434, Hi: 512, Expert: true}}, ex.Buckets)
	require.Equal(t, 512, ex.Numel)
}
