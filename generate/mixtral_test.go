package generate

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
)

// nextLogits prefills the prompts (one chunk, equal lengths) and returns the next-token
// logits, [B·V] for the stored vocabulary V.
func nextLogits(m *layers.GPTModel, ps [][]int64) ([]float32, error) {
	kc := m.NewKVCache(len(ps), len(ps[0]))
	lg, err := m.Decode(kc, ps, 0)
	if err != nil {
		return nil, err
	}
	return append([]float32(nil), lg.F32()...), nil
}

// TestMixtralHFTensorParallel loads a synthetic Hugging Face Mixtral (4 experts, top-2,
// GQA, sliding window 5) as `golaunch generate --load` does, at TP 1 and sharded over
// TP 2 (attention by query group, each expert's fc1/fc2 as the dense MLP, the router
// replicated): the next-token logits agree within float32 rounding, both TP ranks hold
// the same gathered logits, and greedy generation gives the same tokens. The TP 1 logits
// are also the training Forward's last position.
func TestMixtralHFTensorParallel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mixtral")
	require.NoError(t, hftest.Write(dir, hftest.TinyMixtral, 0.1))
	// Longer than the window, so the sliding window and the cache both matter.
	ps := [][]int64{{1, 17, 42, 199, 3, 3, 88, 120, 7}, {2, 5, 190, 33, 61, 61, 0, 14, 100}}

	m1, src, err := Load(cpu.New(), dir, layers.Parallel{})
	require.NoError(t, err)
	require.Equal(t, "hf", src.Kind)
	require.Equal(t, "mixtral", src.Family)
	require.Equal(t, 4, src.Config.NumExperts)
	require.NotNil(t, m1.Layers[1].MoE, "the loaded model has MoE layers")
	want, err := nextLogits(m1, ps)
	require.NoError(t, err)
	v := m1.Cfg.PaddedVocabSize
	require.Len(t, want, 2*v)

	// The cache path against the training Forward of the whole prompt.
	for b, p := range ps {
		st := m1.NewStash(len(p), 1)
		_, _, err := m1.Forward(st, layers.Batch{Tokens: p, Labels: make([]int64, len(p)), LossMask: make([]float32, len(p))}, 0, 0)
		require.NoError(t, err)
		last := st.Logits.F32()[(len(p)-1)*v : len(p)*v]
		for k := range v {
			require.InDelta(t, last[k], want[b*v+k], 1e-4, "row %d logit %d: decode vs forward", b, k)
		}
	}

	o := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 6, EOS: -1}
	greedy, err := Generate(m1, ps, o, nil)
	require.NoError(t, err)

	type result struct {
		logits []float32
		tokens [][]int64
		cfg    layers.Config
	}
	got := runTP(t, 2, func(c comm.Comm) (result, error) {
		m, src, err := Load(cpu.New(), dir, layers.Parallel{TP: c})
		if err != nil {
			return result{}, err
		}
		lg, err := nextLogits(m, ps)
		if err != nil {
			return result{}, err
		}
		toks, err := Generate(m, ps, o, nil)
		return result{lg, toks, src.Config}, err
	})
	for r, g := range got {
		require.Equal(t, src.Config.NumExperts, g.cfg.NumExperts)
		require.Len(t, g.logits, len(want), "rank %d", r)
		var worst float64
		for k := range want {
			worst = max(worst, float64(want[k]-g.logits[k]), float64(g.logits[k]-want[k]))
		}
		t.Logf("rank %d: max |Δlogit| TP 2 vs TP 1 = %.2g", r, worst)
		require.Less(t, worst, 1e-4, "rank %d: TP 2 next-token logits vs TP 1", r)
		require.Equal(t, got[0].logits, g.logits, "rank %d holds the same gathered logits as rank 0", r)
		require.Equal(t, greedy, g.tokens, "rank %d: greedy tokens at TP 2", r)
	}
}
