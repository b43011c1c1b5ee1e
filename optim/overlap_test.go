package optim

import (
	"testing"

	"github.com/stretchr/testify/require"

	"context"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"sync"
	"time"
)

// TestOverlapBuckets checks Megatron's bucketing: parameters in buffer order (reverse
// registration), a bucket closing once it spans the bucket size, late parameters alone.
func TestOverlapBuckets(t *testing.T) {
	c, err := layers.Preset("tiny-llama")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms, err := tcp.LocalWorld(ctx, 2, tcp.Options{Timeout: 30 * time.Second})
	require.NoError(t, err)
	var wg sync.WaitGroup
	buckets := make([][][2]int, 2)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			be := cpu.New()
			m, err := layers.NewGPTModel(be, c, 1)
			require.NoError(t, err)
			a := NewAdam(be, m.Params, DefaultAdam(), false, Groups{DP: comms[r]})
			late := func(p *layers.Param) bool { return p.Name == "embedding.word_embeddings.weight" }
			require.NoError(t, a.EnableOverlap(m.Params, 20000, late))
			buckets[r] = a.Buckets()
			// Every parameter lies in exactly one bucket; non-late buckets reach the size
			// unless they are the last one; the late parameter is alone at the end.
			lay := a.Buffers().Layout
			for i, p := range m.Params {
				lo, hi := lay.Offsets[i], lay.Offsets[i]+p.Numel()
				n := 0
				for _, b := range buckets[r] {
					if lo >= b[0] && hi <= b[1] {
						n++
					}
				}
				require.Equal(t, 1, n, "%s in %d buckets", p.Name, n)
			}
			bs := buckets[r]
			emb := bs[len(bs)-1]
			require.Equal(t, lay.Offsets[0], emb[0], "the late embedding is its own last bucket")
			for i, b := range bs[:len(bs)-2] {
				require.GreaterOrEqual(t, b[1]-b[0], 20000, "bucket %d closes at the size", i)
			}
		}(r)
	}
	wg.Wait()
	require.Greater(t, len(buckets[0]), 2)
	require.Equal(t, buckets[0], buckets[1])
}
