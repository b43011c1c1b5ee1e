package layers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
)

const hfFixtures = "../testdata/hf"

// forwardLogits runs the training Forward on tokens [b][s] and returns the logits
// [s·b, Vpad] in [s, b] order (Stash.Logits).
func forwardLogits(t *testing.T, m *layers.GPTModel, tokens [][]int64) []float32 {
	t.Helper()
	b, s := len(tokens), len(tokens[0])
	bt := layers.Batch{Tokens: make([]int64, b*s), Labels: make([]int64, b*s), LossMask: make([]float32, b*s)}
	for i, row := range tokens {
		copy(bt.Tokens[i*s:], row)
	}
	st := m.NewStash(s, b)
	_, _, err := m.Forward(st, bt, 0, 0)
	require.NoError(t, err)
	return append([]float32(nil), st.Logits.F32()...)
}

// decodeAll prefills k tokens and then decodes one token at a time, returning the logits
// of positions k−1 … s−1, each [b, Vpad].
func decodeAll(t *testing.T, m *layers.GPTModel, tokens [][]int64, k int) [][]float32 {
	t.Helper()
	b, s := len(tokens), len(tokens[0])
	kc := m.NewKVCache(b, s)
	chunk := func(lo, hi int) [][]int64 {
		out := make([][]int64, b)
		for i := range out {
			out[i] = tokens[i][lo:hi]
		}
		return out
	}
	var out [][]float32
	lg, err := m.Decode(kc, chunk(0, k), 0)
	require.NoError(t, err)
	out = append(out, lg.F32())
	for p := k; p < s; p++ {
		lg, err := m.Decode(kc, chunk(p, p+1), p)
		require.NoError(t, err)
		require.Equal(t, p+1, kc.Len)
		out = append(out, lg.F32())
	}
	return out
}

// requireLogitsMatch compares decoded logits (positions k−1 …) with Forward's [s, b] rows.
func requireLogitsMatch(t *testing.T, name string, fwd []float32, dec [][]float32, b, v, k int, tol float64) {
	t.Helper()
	for i, lg := range dec {
		p := k - 1 + i
		require.Len(t, lg, b*v)
		var worst float64
		for bi := 0; bi < b; bi++ {
			want := fwd[(p*b+bi)*v : (p*b+bi+1)*v]
			for j, w := range want {
				worst = math.Max(worst, math.Abs(float64(lg[bi*v+j]-w)))
			}
		}
		require.LessOrEqual(t, worst, tol, "%s: prefill %d, position %d: max |decode − forward|", name, k, p)
	}
}

func fixtureTokens(t *testing.T, dir string) [][]int64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
	require.NoError(t, err)
	var in struct {
		InputIDs [][]int64 `json:"input_ids"`
	}
	require.NoError(t, json.Unmarshal(raw, &in))
	return in.InputIDs
}

// TestDecodeMatchesForwardHF checks, on every Hugging Face fixture model, that incremental
// decoding with the KV cache (prefill k tokens, then one at a time) gives the training
// Forward's logits at every position, and that those agree with Hugging Face's logits.
func TestDecodeMatchesForwardHF(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(hfFixtures, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, dirs, "fixtures under %s", hfFixtures)
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			be := cpu.New()
			_, m, err := hf.Load(be, dir)
			require.NoError(t, err)
			tokens := fixtureTokens(t, dir)
			b, s, v := len(tokens), len(tokens[0]), m.Cfg.PaddedVocabSize
			fwd := forwardLogits(t, m, tokens)

			f, err := safetensors.Open(filepath.Join(dir, "outputs.safetensors"))
			require.NoError(t, err)
			ref, err := f.Tensor("logits") // [b, s, V]
			require.NoError(t, err)
			refv := ref.ToF32()
			f.Close()
			for _, k := range []int{1, 5, s} {
				dec := decodeAll(t, m, tokens, k)
				requireLogitsMatch(t, name, fwd, dec, b, v, k, 1e-5)
				for i, lg := range dec {
					p := k - 1 + i
					for bi := 0; bi < b; bi++ {
						for j := 0; j < v; j++ {
							require.InDelta(t, refv[(bi*s+p)*v+j], lg[bi*v+j], 1e-4, "%s: HF logits at [%d, %d, %d]", name, bi, p, j)
						}
					}
				}
			}
		})
	}
}

// familyConfigs are layer variants beyond the fixtures, with weights large enough (std
// 0.3) that attention is far from uniform, so masking and position bugs show.
func familyConfigs() map[string]layers.Config {
	mods := map[string]func(*layers.Config){
		"llama-gqa": func(c *layers.Config) {},
		"llama-mqa": func(c *layers.Config) { c.NumQueryGroups = 1 },
		"mistral-window": func(c *layers.Config) {
			c.SlidingWindow = 4
		},
		"gpt2": func(c *layers.Config) { *c = mustPreset("tiny-gpt2") },
		"bloom": func(c *layers.Config) {
			*c = mustPreset("tiny-gpt2")
			c.PositionEmbeddingType, c.EmbeddingLayerNorm = "alibi", true
		},
		"falcon-alibi-before-scale": func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention = "LayerNorm", false, true
			c.PositionEmbeddingType, c.ALiBiBeforeScale, c.FFNHiddenSize = "alibi", true, 256
		},
		"falcon-rope-mqa": func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention, c.NumQueryGroups = "LayerNorm", false, true, 1
			c.FFNHiddenSize = 256
		},
		"post-ln-qkv-bias-partial-rope": func(c *layers.Config) {
			c.ApplyResidualConnectionPostLayernorm, c.AddQKVBias, c.RotaryPercent = true, true, 0.5
		},
		"mixtral-moe": func(c *layers.Config) {
			c.NumExperts, c.MoERouterTopK, c.SlidingWindow = 4, 2, 6
		},
		"qwen3-qk-layernorm": func(c *layers.Config) { c.QKLayernorm = true },
		"falcon-40b": func(c *layers.Config) {
			c.Normalization, c.SwiGLU, c.ParallelAttention, c.ParallelMLPNorm, c.FFNHiddenSize = "LayerNorm", false, true, true, 256
		},
		"qwen3-moe": func(c *layers.Config) { c.QKLayernorm, c.NumExperts, c.MoERouterTopK = true, 4, 2 },
		"moe-layer-freq": func(c *layers.Config) { // an MoE layer, then a dense one with its own FFN
			c.NumExperts, c.MoERouterTopK, c.MoELayerFreq, c.MoEFFNHiddenSize = 4, 2, "2", 48
		},
		"glm-interleaved-half-rope": func(c *layers.Config) { c.RotaryInterleaved, c.RotaryPercent, c.AddQKVBias = true, 0.5, true },
		"deepseek-v2-mla":           mlaVariant(16, true, "yarn", 6),
		"deepseek-v2-lite-mla":      mlaVariant(0, false, "rope", 12),
		"qwen2-moe-shared": func(c *layers.Config) {
			c.NumExperts, c.MoERouterTopK, c.MoERouterPreSoftmax, c.AddQKVBias = 4, 2, true, true
			c.MoESharedExpertIntermediateSize, c.MoESharedExpertGate = 48, true
		},
	}
	out := map[string]layers.Config{}
	for name, mod := range mods {
		c := mustPreset("tiny-llama")
		mod(&c)
		c.MakeVocabSizeDivisibleBy = 1
		c.InitMethodStd = 0.3
		out[name] = c
	}
	return out
}

func randomTokens(b, s, vocab int, seed uint64) [][]int64 {
	out := make([][]int64, b)
	x := seed
	for i := range out {
		out[i] = make([]int64, s)
		for j := range out[i] {
			x = x*6364136223846793005 + 1442695040888963407
			out[i][j] = int64(x>>33) % int64(vocab)
		}
	}
	return out
}

// TestDecodeMatchesForwardFamilies checks every layer variant (GQA, MQA, sliding window,
// learned positions, ALiBi before and after the scale, BLOOM's embedding norm, Falcon's
// parallel attention, post-LN residuals, QKV bias, partial RoPE, Qwen3's head norms) the
// same way.
func TestDecodeMatchesForwardFamilies(t *testing.T) {
	const b, s = 3, 12
	for name, cfg := range familyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := layers.NewGPTModel(cpu.New(), cfg, 7)
			require.NoError(t, err)
			tokens := randomTokens(b, s, cfg.VocabSize, 11)
			fwd := forwardLogits(t, m, tokens)
			for _, k := range []int{1, 6} {
				requireLogitsMatch(t, name, fwd, decodeAll(t, m, tokens, k), b, m.Cfg.PaddedVocabSize, k, 1e-5)
			}
		})
	}
}

// TestDecodeRewind checks that decoding again from an earlier position overwrites the
// cache: a second continuation from position 4 gives Forward's logits of that sequence.
func TestDecodeRewind(t *testing.T) {
	cfg := familyConfigs()["llama-gqa"]
	m, err := layers.NewGPTModel(cpu.New(), cfg, 7)
	require.NoError(t, err)
	a := randomTokens(1, 8, cfg.VocabSize, 1)
	bb := randomTokens(1, 8, cfg.VocabSize, 2)
	copy(bb[0][:4], a[0][:4])
	kc := m.NewKVCache(1, 8)
	_, err = m.Decode(kc, a, 0)
	require.NoError(t, err)
	lg, err := m.Decode(kc, [][]int64{bb[0][4:]}, 4)
	require.NoError(t, err)
	requireLogitsMatch(t, "rewind", forwardLogits(t, m, bb), [][]float32{lg.F32()}, 1, m.Cfg.PaddedVocabSize, 8, 1e-5)
}

// decodeTP decodes tokens on tp in-process ranks (model from seed) and returns rank 0's
// logits per step, checking every rank returns the same.
func decodeTP(t *testing.T, cfg layers.Config, tp int, tokens [][]int64, k int) [][]float32 {
	t.Helper()
	if tp == 1 {
		m, err := layers.NewGPTModel(cpu.New(), cfg, 5)
		require.NoError(t, err)
		return decodeAll(t, m, tokens, k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms, err := tcp.LocalWorld(ctx, tp, tcp.Options{Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer func() {
		for _, c := range comms {
			c.Close()
		}
	}()
	outs := make([][][]float32, tp)
	errs := make([]error, tp)
	var wg sync.WaitGroup
	for r := range tp {
		wg.Add(1)
		go func(r int, c comm.Comm) {
			defer wg.Done()
			m, err := layers.NewParallelGPTModel(cpu.New(), cfg, layers.Parallel{TP: c}, 5)
			if err != nil {
				errs[r] = err
				return
			}
			b, s := len(tokens), len(tokens[0])
			kc := m.NewKVCache(b, s)
			for p := 0; p < s; {
				n := 1
				if p == 0 {
					n = k
				}
				chunk := make([][]int64, b)
				for i := range chunk {
					chunk[i] = tokens[i][p : p+n]
				}
				lg, err := m.Decode(kc, chunk, p)
				if err != nil {
					errs[r] = fmt.Errorf("rank %d position %d: %w", r, p, err)
					return
				}
				outs[r] = append(outs[r], lg.F32())
				p += n
			}
		}(r, comms[r])
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for r := 1; r < tp; r++ {
		require.Equal(t, outs[0], outs[r], "rank %d's gathered logits", r)
	}
	return outs[0]
}

// TestDecodeTensorParallel checks that decoding at TP = 2 (and 4 where the heads allow)
// gives the single-process logits for each family.
func TestDecodeTensorParallel(t *testing.T) {
	const b, s, k = 2, 8, 3
	for _, name := range []string{"llama-gqa", "gpt2", "bloom", "falcon-alibi-before-scale", "post-ln-qkv-bias-partial-rope", "mixtral-moe", "deepseek-v2-mla"} {
		cfg := familyConfigs()[name]
		tokens := randomTokens(b, s, cfg.VocabSize, 3)
		ref := decodeTP(t, cfg, 1, tokens, k)
		for _, tp := range []int{2, 4} {
			if cfg.GroupQueryAttention && cfg.NumQueryGroups%tp != 0 {
				continue
			}
			got := decodeTP(t, cfg, tp, tokens, k)
			require.Len(t, got, len(ref))
			// The TP split reorders the sums of linear_proj and linear_fc2, so the bound
			// is relative to the step's largest logit, as for the training layouts.
			for i := range ref {
				var worst, scale float64
				for j := range ref[i] {
					worst = math.Max(worst, math.Abs(float64(ref[i][j]-got[i][j])))
					scale = math.Max(scale, math.Abs(float64(ref[i][j])))
				}
				t.Logf("%s tp=%d step %d: max diff %.3g, max |logit| %.3g", name, tp, i, worst, scale)
				require.LessOrEqual(t, worst, 1e-5*scale, "%s tp=%d step %d", name, tp, i)
			}
		}
	}
}

// TestDecodeErrors checks that bad calls fail with a message, not a panic.
func TestDecodeErrors(t *testing.T) {
	cfg := mustPreset("tiny-gpt2")
	m, err := layers.NewGPTModel(cpu.New(), cfg, 1)
	require.NoError(t, err)
	kc := m.NewKVCache(2, 200)
	for _, tc := range []struct {
		name   string
		tokens [][]int64
		pos    int
		want   string
	}{
		{"rows", [][]int64{{1}}, 0, "token rows"},
		{"ragged", [][]int64{{1, 2}, {3}}, 0, "same chunk length"},
		{"empty", [][]int64{{}, {}}, 0, "empty chunk"},
		{"hole", [][]int64{{1}, {2}}, 3, "cache holds 0"},
		{"vocab", [][]int64{{1}, {9999}}, 0, "outside the vocabulary"},
		{"positions", [][]int64{make([]int64, 129), make([]int64, 129)}, 0, "--max-position-embeddings 128"},
	} {
		_, err := m.Decode(kc, tc.tokens, tc.pos)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err = m.Decode(m.NewKVCache(1, 4), [][]int64{{1, 2, 3, 4, 5}}, 0)
	require.ErrorContains(t, err, "exceed the cache's 4")
}

// BenchmarkGenerateTokens measures decoding 64 tokens after a 64-token prompt on the
// small-llama preset (4 layers, hidden 256, vocab 32000), with the KV cache ("cache")
// and by recomputing the whole prefix with the training Forward at every step
// ("recompute"), the cost the cache saves. Reports tokens/s for the batch.
func BenchmarkGenerateTokens(b *testing.B) {
	const prompt, gen = 64, 64
	cfg := mustPreset("small-llama")
	for _, batch := range []int{1, 4} {
		m, err := layers.NewGPTModel(cpu.New(), cfg, 1)
		require.NoError(b, err)
		tokens := randomTokens(batch, prompt+gen, cfg.VocabSize, 5)
		b.Run(fmt.Sprintf("cache/b=%d", batch), func(b *testing.B) {
			for range b.N {
				kc := m.NewKVCache(batch, prompt+gen)
				for p := 0; p < prompt+gen-1; {
					n := 1
					if p == 0 {
						n = prompt
					}
					chunk := make([][]int64, batch)
					for i := range chunk {
						chunk[i] = tokens[i][p : p+n]
					}
					if _, err := m.Decode(kc, chunk, p); err != nil {
						b.Fatal(err)
					}
					p += n
				}
			}
			b.ReportMetric(float64(gen*batch*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run(fmt.Sprintf("recompute/b=%d", batch), func(b *testing.B) {
			for range b.N {
				for s := prompt; s < prompt+gen; s++ {
					bt := layers.Batch{Tokens: make([]int64, batch*s), Labels: make([]int64, batch*s), LossMask: make([]float32, batch*s)}
					for i := range batch {
						copy(bt.Tokens[i*s:], tokens[i][:s])
					}
					st := m.NewStash(s, batch)
					if _, _, err := m.Forward(st, bt, 0, 0); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(gen*batch*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
