package megatron

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// testConfig is a small Llama-like model (GQA, SwiGLU, RMSNorm, RoPE).
func testConfig(tied bool) layers.Config {
	c := layers.Defaults()
	c.NumLayers, c.HiddenSize, c.NumAttentionHeads, c.FFNHiddenSize = 4, 32, 4, 48
	c.GroupQueryAttention, c.NumQueryGroups = true, 2
	c.Normalization, c.SwiGLU, c.PositionEmbeddingType = "RMSNorm", true, "rope"
	c.DisableBiasLinear = true
	c.UntieEmbeddingsAndOutputWeights = !tied
	c.AttentionDropout, c.HiddenDropout = 0, 0
	c.VocabSize, c.MakeVocabSizeDivisibleBy = 50, 16
	c.SeqLength, c.MaxPositionEmbeddings = 64, 64
	return c
}

// saveTestCheckpoint writes a random-weight checkpoint of cfg at TP × PP the way a
// trainer would: one state dict per shard (with optimizer, scheduler and RNG entries),
// then the tracker. It returns the full tensors by global name.
func saveTestCheckpoint(t *testing.T, loc Location, cfg layers.Config, tp, pp int, f Format) map[string][]float32 {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	full := map[string][]float32{}
	cfg.TensorModelParallelSize = tp
	require.NoError(t, cfg.Finalize())
	for p := 0; p < pp; p++ {
		for r := 0; r < tp; r++ {
			specs, err := layers.Specs(cfg, layers.Parallel{TPRank: r, TPSize: tp, PPRank: p, PPSize: pp})
			require.NoError(t, err)
			ts := map[string]*tensor.Tensor{}
			for _, sp := range specs {
				v, ok := full[sp.InitKey]
				if !ok {
					v = make([]float32, tensor.ShapeNumel(sp.FullShape))
					for i := range v {
						v[i] = float32(rng.NormFloat64())
					}
					full[sp.InitKey] = v
				}
				ts[sp.Name] = tensor.FromF32Values(tensor.BF16, layers.Shard(v, sp.FullShape, sp.PartitionDim, sp.GLU, r, tp), sp.Shape...)
			}
			model, err := ModelDict(f, specs, ts)
			require.NoError(t, err)
			st := StateDict(Args(cfg, tp, pp, tensor.BF16, f, ""), loc.Iteration, model)
			st.Set("optimizer", map[string]any{"param_groups": []any{map[string]any{"lr": 0.001}}})
			st.Set("opt_param_scheduler", map[string]any{"num_steps": int64(loc.Iteration * 8)})
			st.Set("rng_state", []any{map[string]any{"torch_rng_state": tensor.New(tensor.U8, 16)}})
			require.NoError(t, SaveShard(loc, r, p, pp, st))
		}
	}
	require.NoError(t, WriteTracker(loc))
	for k, v := range full { // the reference is what bf16 storage keeps
		full[k] = tensor.FromF32Values(tensor.BF16, v, len(v)).ToF32()
	}
	return full
}

// TestSaveOpenRoundTrip saves TP 2 × PP 2 checkpoints in every layout, tied and untied,
// and reads them back: folder names, tracker, args → config, every full tensor, and the
// training entries of the state dict.
func TestSaveOpenRoundTrip(t *testing.T) {
	for _, f := range []Format{MCore, MCoreTE, Legacy} {
		for _, tied := range []bool{false, true} {
			t.Run(f.String()+map[bool]string{true: "/tied", false: "/untied"}[tied], func(t *testing.T) {
				loc := Location{Root: t.TempDir(), Iteration: 7}
				cfg := testConfig(tied)
				full := saveTestCheckpoint(t, loc, cfg, 2, 2, f)
				require.FileExists(t, filepath.Join(loc.Root, "iter_0000007", "mp_rank_01_001", ModelFile))
				tr, err := os.ReadFile(filepath.Join(loc.Root, TrackerFile))
				require.NoError(t, err)
				require.Equal(t, "7", string(tr))

				c, err := Open(loc.Root)
				require.NoError(t, err)
				defer c.Close()
				require.Equal(t, 7, c.Iteration)
				require.Equal(t, f, c.Format)
				require.Equal(t, 2, c.TP)
				require.Equal(t, 2, c.PP)
				require.Equal(t, tensor.BF16, c.DType)
				want := cfg
				want.TensorModelParallelSize = 2
				require.NoError(t, want.Finalize())
				require.Equal(t, want, c.Config)
				require.Len(t, c.Keys(), len(full))
				for k, v := range full {
					got, _, err := c.Full(k)
					require.NoError(t, err)
					require.Equal(t, v, got, k)
				}
				sf := c.ShardFile(1, 1)
				opt, ok := sf.State.Get("opt_param_scheduler")
				require.True(t, ok)
				n, _ := opt.(*torchpickle.Dict).Get("num_steps")
				require.Equal(t, int64(56), n)
				require.Equal(t, 7, sf.Iteration())
				if tied && f == Legacy {
					m, _ := sf.State.Get("model")
					_, ok := m.(*torchpickle.Dict).Get("word_embeddings_for_head")
					require.True(t, ok, "tied last stage keeps word_embeddings_for_head")
				}
			})
		}
	}
}

// TestResolveAndLayoutNames checks Megatron's folder naming and the paths Open accepts.
func TestResolveAndLayoutNames(t *testing.T) {
	require.Equal(t, "iter_0000100", IterDirName(100, false))
	require.Equal(t, "release", IterDirName(5, true))
	require.Equal(t, "mp_rank_03", ShardDirName(3, 0, 1))
	require.Equal(t, "mp_rank_03_001", ShardDirName(3, 1, 2))
	root := t.TempDir()
	saveTestCheckpoint(t, Location{Root: root, Release: true}, testConfig(false), 1, 1, MCore)
	for _, p := range []string{root, filepath.Join(root, "release")} {
		l, err := Resolve(p)
		require.NoError(t, err)
		require.Equal(t, Location{Root: root, Release: true}, l)
	}
	tr, err := os.ReadFile(filepath.Join(root, TrackerFile))
	require.NoError(t, err)
	require.Equal(t, "release", string(tr))
}

// TestArgsConfigRoundTrip: the args written for a configuration give it back, both in
// memory (Go ints) and after pickling (int64); for a dense GQA model and for multi-latent
// attention with and without a query latent (q_lora_rank None).
func TestArgsConfigRoundTrip(t *testing.T) {
	for _, rq := range []int{-1, 0, 16} {
		cfg := testConfig(true)
		if rq >= 0 {
			cfg.MultiLatentAttention, cfg.GroupQueryAttention, cfg.QKLayernorm = true, false, true
			cfg.QLoRARank, cfg.KVLoRARank, cfg.QKHeadDim, cfg.QKPosEmbHeadDim, cfg.VHeadDim = rq, 12, 8, 4, 6
			cfg.YarnScalingFactor, cfg.YarnMScale, cfg.YarnMScaleAllDim = 40, 0.707, 0.707
		}
		t.Run(fmt.Sprint(rq), func(t *testing.T) { argsConfigRoundTrip(t, cfg) })
	}
	v3 := testConfig(false) // DeepSeek-V3's router
	v3.NumExperts, v3.MoERouterTopK, v3.MoERouterScoreFunction, v3.MoERouterTopKScaling = 8, 4, "sigmoid", 2.5
	v3.MoERouterNumGroups, v3.MoERouterGroupTopK, v3.MoERouterLoadBalancingType = 4, 2, "seq_aux_loss"
	v3.MoERouterEnableExpertBias, v3.MoERouterBiasUpdateRate = true, 0.01
	t.Run("v3-router", func(t *testing.T) { argsConfigRoundTrip(t, v3) })
	mla := testConfig(true)
	mla.MultiLatentAttention, mla.GroupQueryAttention = true, false
	require.NoError(t, mla.Finalize())
	_, err := KeyPath(MCoreTE, "decoder.layers.0.self_attention.linear_kv_down_proj.weight", false)
	require.ErrorContains(t, err, "local spec")
}

func argsConfigRoundTrip(t *testing.T, cfg layers.Config) {
	cfg.TensorModelParallelSize = 2
	require.NoError(t, cfg.Finalize())
	ns := Args(cfg, 2, 4, tensor.F16, MCoreTE, "llama")
	// Megatron's check_checkpoint_args compares it on resume; its default is True with RoPE too.
	ape, _ := ns.Get("add_position_embedding")
	require.Equal(t, true, ape)
	got, info, err := ConfigFromArgs(ns)
	require.NoError(t, err)
	require.Equal(t, cfg, got)
	require.Equal(t, ArgsInfo{TP: 2, PP: 4, VP: 1, ParamsDType: tensor.F16, HFModelType: "llama", EP: 1}, info)
	path := filepath.Join(t.TempDir(), "args.pt")
	require.NoError(t, torchpickle.Save(path, ns))
	v, err := torchpickle.Load(path)
	require.NoError(t, err)
	got, info2, err := ConfigFromArgs(v.(*torchpickle.Namespace))
	require.NoError(t, err)
	require.Equal(t, cfg, got)
	require.Equal(t, info, info2)
}

// TestDistribOptimPlacement: distrib_optim.pt sits next to model_optim_rng.pt in the
// shard folder and reads back (the buckets_coalesced dict of
// get_parameter_state_dp_zero).
func TestDistribOptimPlacement(t *testing.T) {
	loc := Location{Root: t.TempDir(), Iteration: 20}
	state := torchpickle.NewDict(false)
	state.Set("buckets_coalesced", true)
	inner := torchpickle.NewDict(false)
	inner.Set(tensor.F32, map[string]any{"param": tensor.FromF32([]float32{1, 2, 3}, 3), "numel_unpadded": int64(3)})
	state.Set(int64(0), inner)
	require.NoError(t, SaveDistribOptim(loc, 1, 2, 4, state))
	require.FileExists(t, filepath.Join(loc.Root, "iter_0000020", "mp_rank_01_002", DistribOptimFile))
	v, err := LoadDistribOptim(loc, 1, 2, 4)
	require.NoError(t, err)
	d := v.(*torchpickle.Dict)
	bc, _ := d.Get("buckets_coalesced")
	require.Equal(t, true, bc)
	g, ok := d.Get(int64(0))
	require.True(t, ok)
	p, ok := g.(*torchpickle.Dict).Get(tensor.F32)
	require.True(t, ok)
	x, _ := p.(*torchpickle.Dict).Get("param")
	require.Equal(t, []float32{1, 2, 3}, x.(*tensor.Tensor).F32())
}
