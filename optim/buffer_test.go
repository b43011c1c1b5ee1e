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
	l := NewDistLayout(params, 3, 150, true, nil) // pad = lcm(3, 128) = 384
	// c: [0, 70); b: start 128, end 178 ≥ 150 → bucket [0, 178) padded to 384.
	// a: [384, 484); the embedding starts at 512 (64-aligned) and needs its own bucket: the
	// previous one closes there (its unpadded end is 512, as Megatron counts it), padded to
	// 768; embedding [768, 1068) → 1152.
	require.Equal(t, []int{768, 384, 128, 0}, l.Offsets)
	require.Equal(t, []Bucket{{0, 178, 384}, {384, 512, 768}, {768, 1068, 1152}}, l.Buckets)
	require.Equal(t, 1152, l.Numel)
	// One bucket, no shared embedding: the layout NewLayout has always had.
	one := NewDistLayout(params[1:], 3, 0, true, nil)
	require.Equal(t, NewLayout(params[1:], 3), one)
	require.Equal(t, []Bucket{{0, 292, 384}}, one.Buckets) // c [0, 70), b [128, 178), a [192, 292)
	// Two model chunks: each its own buffer, the second after the first's padded end.
	two := NewDistLayout(params[1:], 3, 0, true, []int{1, 2})
	// Chunk 0: a [0, 100). Chunk 1 from 384: c [384, 454), b [512, 562), padded to 768.
	require.Equal(t, []int{0, 512, 384}, two.Offsets)
	require.Equal(t, []Bucket{{0, 100, 384}, {384, 562, 768}}, two.Buckets)
	require.Equal(t, [][2]int{{0, 1}, {1, 2}}, two.Chunks)
}
