package hf_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// writeConfig writes config.json text into a fresh folder and parses it.
func writeConfig(t *testing.T, text string) (*hf.Model, error) {
	d := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(d, "config.json"), []byte(text), 0o644))
	return hf.ReadConfig(d)
}

// TestMixtralConfig: config.json's keys become the MoE architecture, MixtralConfig's
// defaults fill absent keys, and what gomegatron cannot express is refused with the file
// and the key named.
func TestMixtralConfig(t *testing.T) {
	m, err := writeConfig(t, hftest.TinyMixtral)
	require.NoError(t, err)
	c := m.Config
	require.Equal(t, hf.Mixtral, m.Family)
	require.Equal(t, 4, c.NumExperts)
	require.Equal(t, 2, c.MoERouterTopK)
	require.Equal(t, 0.02, c.MoEAuxLossCoeff)
	require.Equal(t, 0.0, c.MoEZLossCoeff)
	require.Equal(t, "aux_loss", c.MoERouterLoadBalancingType)
	require.Equal(t, 48, c.FFNHiddenSize, "intermediate_size is each expert's FFN")
	require.Equal(t, 5, c.SlidingWindow)
	require.Equal(t, 2, c.NumQueryGroups)
	require.True(t, c.GroupQueryAttention)
	require.Equal(t, 16, c.KVChannels)
	require.Equal(t, 1e6, c.RotaryBase)
	require.Equal(t, 200, c.VocabSize)
	require.Equal(t, 200, c.PaddedVocabSize, "the vocabulary is stored unpadded")
	require.Equal(t, 128, c.MaxPositionEmbeddings)
	require.Equal(t, "RMSNorm", c.Normalization)
	require.Equal(t, 1e-5, c.NormEpsilon)
	require.True(t, c.DisableBiasLinear && c.SwiGLU && c.UntieEmbeddingsAndOutputWeights)
	require.False(t, c.AddQKVBias)
	require.Zero(t, c.HiddenDropout+c.AttentionDropout)

	// MixtralConfig's defaults for absent keys; null num_key_value_heads and sliding_window.
	m, err = writeConfig(t, `{"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 48, "num_attention_heads": 4,
		"num_hidden_layers": 2, "vocab_size": 200, "num_key_value_heads": null, "sliding_window": null, "head_dim": 32,
		"tie_word_embeddings": true, "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}`)
	require.NoError(t, err)
	require.Equal(t, 8, m.Config.NumExperts, "MixtralConfig's num_local_experts default")
	require.Equal(t, 2, m.Config.MoERouterTopK, "num_experts_per_tok default")
	require.Equal(t, 0.001, m.Config.MoEAuxLossCoeff, "router_aux_loss_coef default")
	require.Equal(t, 4, m.Config.NumQueryGroups, "null num_key_value_heads is num_attention_heads")
	require.Equal(t, 32, m.Config.KVChannels, "head_dim")
	require.Equal(t, 5000.0, m.Config.RotaryBase, "rope_theta from transformers 5's rope_parameters")
	require.Equal(t, 0, m.Config.SlidingWindow)
	require.Equal(t, 4096*32, m.Config.MaxPositionEmbeddings, "max_position_embeddings default")
	require.False(t, m.Config.UntieEmbeddingsAndOutputWeights)
	m, err = writeConfig(t, `{"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 48, "num_attention_heads": 4,
		"num_hidden_layers": 2, "vocab_size": 200, "num_key_value_heads": 4}`)
	require.NoError(t, err)
	require.Equal(t, 1e6, m.Config.RotaryBase, "rope_theta default")
	require.Equal(t, 1e-5, m.Config.NormEpsilon, "rms_norm_eps default")
	require.True(t, m.Config.UntieEmbeddingsAndOutputWeights, "tie_word_embeddings default false")

	for _, bad := range []struct{ cfg, want string }{
		{`{"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3}`, "num_experts_per_tok 3"},
		{`{"model_type": "mixtral", "num_local_experts": 0}`, "num_local_experts 0"},
		{`{"model_type": "mixtral", "hidden_act": "gelu"}`, `hidden_act "gelu"`},
		{`{"model_type": "mixtral", "rope_scaling": {"type": "dynamic", "factor": 2.0}}`, `rope_scaling {"type": "dynamic", "factor": 2.0} is not supported (linear, Llama 3.1's llama3 and yarn are)`},
		{`{"model_type": "mixtral", "rope_scaling": {"type": "linear", "factor": 0.5}}`, "rope_scaling linear factor 0.5: want ≥ 1"},
		{`{"model_type": "mixtral", "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}`, `"rope_type": "yarn"`},
		{`{"model_type": "mixtral", "attention_bias": true}`, "attention_bias"},
		{`{"model_type": "mixtral", "num_local_experts": "8"}`, "num_local_experts"},
		// A corrupt layer count is refused before the weight mapping grows with it.
		{`{"model_type": "qwen3_moe", "num_hidden_layers": 10000000}`, "num_hidden_layers 10000000 × 128 experts: implausibly large"},
	} {
		_, err := writeConfig(t, bad.cfg)
		require.ErrorContains(t, err, bad.want, bad.cfg)
		require.ErrorContains(t, err, "config.json", bad.cfg)
	}
}

// TestMixtralRules lists the mapping of one layer's MoE block with its Hugging Face
// shapes, and refuses experts in a dense family (and a Mixtral without them).
func TestMixtralRules(t *testing.T) {
	m, err := writeConfig(t, hftest.TinyMixtral)
	require.NoError(t, err)
	rules, err := m.Rules()
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range rules {
		require.NotContains(t, r.Megatron, "mlp.linear_fc", "no dense MLP in a Mixtral")
		for _, n := range r.HF {
			require.NotContains(t, n, "mlp.", "Mixtral has no dense mlp tensors")
		}
		spec := fmt.Sprint(r.HF)
		shape := map[string][]int{"mlp.router.weight": {4, 64}, "linear_fc1.weight": {96, 64}, "linear_fc2.weight": {64, 48}}
		for suffix, s := range shape {
			if strings.HasSuffix(r.Megatron, suffix) {
				spec += fmt.Sprint(m.HFShapes(r, s))
			}
		}
		got[r.Megatron] = spec
	}
	want := map[string]string{
		"decoder.layers.1.mlp.router.weight": "[model.layers.1.block_sparse_moe.gate.weight][[4 64]]",
		"decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight": "[model.layers.1.block_sparse_moe.experts.3.w1.weight " +
			"model.layers.1.block_sparse_moe.experts.3.w3.weight][[48 64] [48 64]]",
		"decoder.layers.1.mlp.experts.local_experts.3.linear_fc2.weight": "[model.layers.1.block_sparse_moe.experts.3.w2.weight][[64 48]]",
		"decoder.layers.1.pre_mlp_layernorm.weight":                      "[model.layers.1.post_attention_layernorm.weight]",
		"decoder.layers.0.self_attention.linear_qkv.weight": "[model.layers.0.self_attn.q_proj.weight " +
			"model.layers.0.self_attn.k_proj.weight model.layers.0.self_attn.v_proj.weight]",
		"output_layer.weight": "[lm_head.weight]",
	}
	for k, v := range want {
		require.Equal(t, v, got[k], k)
	}
	// Per layer: 2 norms, QKV, proj, router and 2 per expert; then embedding, final norm, head.
	require.Len(t, rules, 2*(4+1+2*4)+3)

	dense := *m
	dense.Family = hf.Mistral
	_, err = dense.Rules()
	require.ErrorContains(t, err, "a mistral model has no experts")
	noExperts := *m
	noExperts.Config.NumExperts = 0
	_, err = noExperts.Rules()
	require.ErrorContains(t, err, "a mixtral model needs experts")
}

// readAll reads every tensor of a Hugging Face folder, or of one .safetensors file (copies).
func readAll(t *testing.T, path string) map[string]*tensor.Tensor {
	t.Helper()
	var set interface {
		Names() []string
		Tensor(string) (*tensor.Tensor, error)
		Close() error
	}
	var err error
	if strings.HasSuffix(path, ".safetensors") {
		set, err = safetensors.Open(path)
	} else {
		set, err = safetensors.OpenDir(path)
	}
	require.NoError(t, err)
	defer set.Close()
	out := map[string]*tensor.Tensor{}
	for _, n := range set.Names() {
		x, err := set.Tensor(n)
		require.NoError(t, err)
		out[n] = x.Clone()
	}
	return out
}

// writeFolder writes config.json and model.safetensors holding ts.
func writeFolder(t *testing.T, dir, config string, ts map[string]*tensor.Tensor) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644))
	var named []safetensors.Named
	for n, x := range ts {
		named = append(named, safetensors.Named{Name: n, T: x})
	}
	require.NoError(t, safetensors.Write(filepath.Join(dir, safetensors.SingleFile), named, nil))
}

// param downloads a parameter of a CPU model.
func param(t *testing.T, gm *layers.GPTModel, name string) []float32 {
	t.Helper()
	p := gm.Params.ByName(name)
	require.NotNil(t, p, name)
	return append([]float32(nil), p.Data.F32()...)
}

// TestMixtralLoadMapsTensors: hf.Load puts every Mixtral tensor where Megatron-Core's
// MoELayer keeps it, bit for bit: router = gate, fc1 = [w1; w3], fc2 = w2, and
// post_attention_layernorm in pre_mlp_layernorm.
func TestMixtralLoadMapsTensors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mixtral")
	require.NoError(t, hftest.Write(dir, hftest.TinyMixtral, 1))
	src := readAll(t, dir)
	m, gm, err := hf.Load(cpu.New(), dir)
	require.NoError(t, err)
	require.Equal(t, hf.Mixtral, m.Family)
	for l := range 2 {
		require.NotNil(t, gm.Layers[l].MoE, "layer %d is an MoE layer", l)
		h := fmt.Sprintf("model.layers.%d.", l)
		L := fmt.Sprintf("decoder.layers.%d.", l)
		require.Equal(t, src[h+"block_sparse_moe.gate.weight"].F32(), param(t, gm, L+"mlp.router.weight"))
		require.Equal(t, src[h+"post_attention_layernorm.weight"].F32(), param(t, gm, L+"pre_mlp_layernorm.weight"))
		for e := range 4 {
			he := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", h, e)
			me := fmt.Sprintf("%smlp.experts.local_experts.%d.", L, e)
			fc1 := append(append([]float32(nil), src[he+"w1.weight"].F32()...), src[he+"w3.weight"].F32()...)
			require.Equal(t, fc1, param(t, gm, me+"linear_fc1.weight"), "%s fc1 = [w1; w3]", me)
			require.Equal(t, src[he+"w2.weight"].F32(), param(t, gm, me+"linear_fc2.weight"))
		}
	}
	require.Equal(t, src["lm_head.weight"].F32(), param(t, gm, "output_layer.weight"))
}

// TestMixtralLoadErrors: a missing, misshapen or unexpected tensor is refused with its name.
func TestMixtralLoadErrors(t *testing.T) {
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good")
	require.NoError(t, hftest.Write(good, hftest.TinyMixtral, 1))
	orig := readAll(t, good)
	variant := func(name string, edit func(ts map[string]*tensor.Tensor)) error {
		ts := map[string]*tensor.Tensor{}
		for n, x := range orig {
			ts[n] = x
		}
		edit(ts)
		dir := filepath.Join(tmp, name)
		writeFolder(t, dir, hftest.TinyMixtral, ts)
		_, _, err := hf.Load(cpu.New(), dir)
		return err
	}
	const w3 = "model.layers.1.block_sparse_moe.experts.3.w3.weight"
	err := variant("missing", func(ts map[string]*tensor.Tensor) { delete(ts, w3) })
	require.ErrorContains(t, err, w3)
	require.ErrorContains(t, err, "decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight")

	const w2 = "model.layers.0.block_sparse_moe.experts.0.w2.weight"
	err = variant("transposed", func(ts map[string]*tensor.Tensor) {
		ts[w2] = tensor.FromF32(ts[w2].F32(), 48, 64)
	})
	require.ErrorContains(t, err, w2+" has shape [48 64], want [64 48]")

	const gate = "model.layers.0.block_sparse_moe.gate.weight"
	err = variant("router", func(ts map[string]*tensor.Tensor) {
		ts[gate] = tensor.FromF32(ts[gate].F32()[:3*64], 3, 64)
	})
	require.ErrorContains(t, err, gate+" has shape [3 64], want [4 64]")

	const extra = "model.layers.0.block_sparse_moe.experts.4.w1.weight"
	err = variant("extra", func(ts map[string]*tensor.Tensor) {
		ts[extra] = ts["model.layers.0.block_sparse_moe.experts.3.w1.weight"]
	})
	require.ErrorContains(t, err, "tensor "+extra+" is not used by the mixtral mapping")

	// transformers 5 keeps the experts fused in memory (mlp.experts.gate_up_proj); such a
	// folder names the per-expert tensor it lacks.
	err = variant("fused", func(ts map[string]*tensor.Tensor) {
		for n := range ts {
			if strings.Contains(n, "block_sparse_moe.experts.") {
				delete(ts, n)
			}
		}
		ts["model.layers.0.mlp.experts.gate_up_proj"] = tensor.FromF32(make([]float32, 4*64*96), 4, 64, 96)
	})
	require.ErrorContains(t, err, "model.layers.0.block_sparse_moe.experts.0.w1.weight")
}

// TestMixtralDenseEquivalent checks the expert mapping without torch: a Mixtral whose
// experts all copy a Mistral's MLP (w1 = gate_proj, w3 = up_proj, w2 = down_proj), with
// top-1 routing (score 1), computes exactly the Mistral — the same loss, bit for bit.
// Swapping w1 and w3, or mapping the wrong norm, breaks it.
func TestMixtralDenseEquivalent(t *testing.T) {
	tmp := t.TempDir()
	mistralCfg := `{"model_type": "mistral", "hidden_size": 64, "intermediate_size": 48, "num_attention_heads": 4,
		"num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200, "max_position_embeddings": 128,
		"rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": false, "hidden_act": "silu", "sliding_window": 5}`
	mis, mix := filepath.Join(tmp, "mistral"), filepath.Join(tmp, "mixtral")
	require.NoError(t, hftest.Write(mis, mistralCfg, 0.1))
	ts := readAll(t, mis)
	// The router's values only need to be finite: with one expert chosen its score is 1.
	router := readAll(t, mis)["model.layers.0.input_layernorm.weight"].F32()
	out := map[string]*tensor.Tensor{}
	for n, x := range ts {
		if !strings.Contains(n, ".mlp.") {
			out[n] = x
		}
	}
	for l := range 2 {
		h := fmt.Sprintf("model.layers.%d.", l)
		out[h+"block_sparse_moe.gate.weight"] = tensor.FromF32(append(append(append(append([]float32(nil), router...), router...), router...), router...), 4, 64)
		for e := range 4 {
			he := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", h, e)
			out[he+"w1.weight"] = ts[h+"mlp.gate_proj.weight"]
			out[he+"w3.weight"] = ts[h+"mlp.up_proj.weight"]
			out[he+"w2.weight"] = ts[h+"mlp.down_proj.weight"]
		}
	}
	writeFolder(t, mix, strings.NewReplacer(`"mistral"`, `"mixtral"`, `"sliding_window": 5`, `"sliding_window": 5, "num_local_experts": 4, "num_experts_per_tok": 1`).Replace(mistralCfg), out)

	be := cpu.New()
	_, dm, err := hf.Load(be, mis)
	require.NoError(t, err)
	mm, moe, err := hf.Load(be, mix)
	require.NoError(t, err)
	require.Equal(t, 1, mm.Config.MoERouterTopK)
	require.NotNil(t, moe.Layers[0].MoE)
	ids := []int64{1, 17, 42, 199, 3, 3, 88, 120, 7, 64, 150, 9, 2, 5, 190, 33, 61, 61, 0, 14, 100, 77, 31, 180}
	lossOf := func(gm *layers.GPTModel) float64 {
		st := gm.NewStash(12, 2)
		sum, n, err := gm.Forward(st, hfBatch(ids, 2, 12), 0, 0)
		require.NoError(t, err)
		return sum / n
	}
	want := lossOf(dm)
	require.Equal(t, want, lossOf(moe), "a Mixtral of identical experts, top-1, is the dense Mistral")
}

// TestMixtralMatchesTorch loads a synthetic Mixtral (top-2 of 4 experts, GQA, sliding
// window 5 over 12 tokens) with hf.Load and compares the loss and every position's logits
// with Hugging Face's forward transcribed in float64 torch (testdata/hf_forward.py, which
// tools/convert's TestMixtralMatchesTorch checks against transformers' own float64 logits
// of the llama fixtures), within float32 rounding.
func TestMixtralMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	rows := [][]int64{{1, 17, 42, 199, 3, 3, 88, 120, 7, 64, 150, 9}, {2, 5, 190, 33, 61, 61, 0, 14, 100, 77, 31, 180}}
	var plain []float32
	// Linear rope_scaling (factor 3): Megatron's --rotary-seq-len-interpolation-factor.
	for _, scaling := range []string{"", `{"type": "linear", "factor": 3.0}`} {
		dir := filepath.Join(t.TempDir(), "mixtral")
		require.NoError(t, hftest.Write(dir, hftest.TinyMixtral, 0.1))
		if scaling != "" {
			cfgPath := filepath.Join(dir, "config.json")
			var cfg map[string]any
			b, err := os.ReadFile(cfgPath)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &cfg))
			var rs any
			require.NoError(t, json.Unmarshal([]byte(scaling), &rs))
			cfg["rope_scaling"] = rs
			b, err = json.Marshal(cfg)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(cfgPath, b, 0o644))
		}
		wantLoss, wantLogits := hftest.PyForward(t, dir, rows)

		m, gm, err := hf.Load(cpu.New(), dir)
		require.NoError(t, err)
		b, s, v := 2, 12, m.Config.PaddedVocabSize
		require.Equal(t, 200, v)
		st := gm.NewStash(s, b)
		sum, n, err := gm.Forward(st, hfBatch(append(append([]int64(nil), rows[0]...), rows[1]...), b, s), 0, 0)
		require.NoError(t, err)
		require.InDelta(t, wantLoss, sum/n, 1e-5*wantLoss, "%s loss", scaling)
		logits := st.Logits.F32() // [s, b, V]
		var worst, moved float64
		for i := range b {
			for j := range s {
				for k := range v {
					d := wantLogits[i][j][k] - float64(logits[(j*b+i)*v+k])
					worst = max(worst, d, -d)
					if plain != nil {
						moved = max(moved, math.Abs(float64(plain[(j*b+i)*v+k]-logits[(j*b+i)*v+k])))
					}
				}
			}
		}
		t.Logf("%s: loss %.7f (torch %.7f), max |Δlogit| %.2g", scaling, sum/n, wantLoss, worst)
		require.Less(t, worst, 1e-4, "%s: logits vs Hugging Face's forward", scaling)
		if plain == nil {
			plain = append([]float32(nil), logits...)
		} else {
			require.Greater(t, moved, 1e-3, "the scaling changes the logits")
		}
	}
}

// TestMixtralSaveRoundTrip: a loaded Mixtral saved with hf.Save is the source folder
// again — every tensor bit-identical, config.json describing the same architecture with
// Mixtral's keys and the base config's token ids — and loads to the same logits. Saving
// over weights, or an MoE model as a dense family, is refused.
func TestMixtralSaveRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, out := filepath.Join(tmp, "src"), filepath.Join(tmp, "out")
	require.NoError(t, hftest.Write(src, hftest.TinyMixtral, 0.1))
	be := cpu.New()
	m, gm, err := hf.Load(be, src)
	require.NoError(t, err)
	var base map[string]any
	require.NoError(t, json.Unmarshal([]byte(hftest.TinyMixtral), &base))
	base["architectures"], base["num_local_experts"] = []any{"LlamaForCausalLM"}, 99 // overwritten from the model
	saved, err := hf.Save(be, gm, out, hf.Mixtral, tensor.F32, base)
	require.NoError(t, err)
	require.Equal(t, hf.Mixtral, saved.Family)

	want, got := readAll(t, src), readAll(t, out)
	require.Equal(t, len(want), len(got))
	for n, w := range want {
		g, ok := got[n]
		require.True(t, ok, "saved folder lacks %s", n)
		require.Equal(t, w.DType(), g.DType(), n)
		require.Equal(t, w.Shape(), g.Shape(), n)
		require.True(t, bytes.Equal(w.Data, g.Data), "%s differs", n)
	}
	back, err := hf.ReadConfig(out)
	require.NoError(t, err)
	require.Equal(t, m.Config, back.Config)
	var conf map[string]any
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &conf))
	for k, v := range map[string]any{"model_type": "mixtral", "architectures": []any{"MixtralForCausalLM"},
		"num_local_experts": 4.0, "num_experts_per_tok": 2.0, "router_aux_loss_coef": 0.02, "sliding_window": 5.0,
		"intermediate_size": 48.0, "num_key_value_heads": 2.0, "rope_theta": 1e6, "torch_dtype": "float32",
		"tie_word_embeddings": false, "bos_token_id": 1.0, "eos_token_id": 2.0} {
		require.Equal(t, v, conf[k], k)
	}

	_, again, err := hf.Load(be, out)
	require.NoError(t, err)
	ids := []int64{1, 17, 42, 199, 3, 3, 88, 120, 7, 64, 150, 9}
	logits := func(gm *layers.GPTModel) []float32 {
		st := gm.NewStash(12, 1)
		_, _, err := gm.Forward(st, hfBatch(ids, 1, 12), 0, 0)
		require.NoError(t, err)
		return append([]float32(nil), st.Logits.F32()...)
	}
	require.Equal(t, logits(gm), logits(again))

	// The same model with GroupedMLP experts, filled from the folder's full tensors, computes
	// the same logits and saves the same tensors.
	cfg := gm.Cfg
	cfg.MoEGroupedGemm = true
	grouped, err := layers.NewGPTModel(be, cfg, 0)
	require.NoError(t, err)
	r, err := hf.Open(src)
	require.NoError(t, err)
	defer r.Close()
	for _, p := range grouped.Params {
		local, err := p.LocalFrom(func(q *layers.Param) ([]float32, error) {
			v, _, err := r.Full(q.InitKey)
			return v, err
		}, 0, 1)
		require.NoError(t, err)
		be.Upload(p.Data, tensor.FromF32(local, p.Shape...))
	}
	require.NotNil(t, grouped.Params.ByName("decoder.layers.1.mlp.experts.weight1"))
	require.InDeltaSlice(t, logits(gm), logits(grouped), 1e-5)
	_, err = hf.Save(be, grouped, filepath.Join(tmp, "grouped"), hf.Mixtral, tensor.F32, nil)
	require.NoError(t, err)
	for n, g := range readAll(t, filepath.Join(tmp, "grouped")) {
		require.True(t, bytes.Equal(want[n].Data, g.Data), "GroupedMLP model: %s differs", n)
	}

	_, err = hf.Save(be, gm, out, hf.Mixtral, tensor.F32, nil)
	require.ErrorContains(t, err, "already holds weights")
	_, err = hf.Save(be, gm, filepath.Join(tmp, "llama"), hf.Llama, tensor.F32, nil)
	require.ErrorContains(t, err, "a llama model has no experts")
}

// TestSaveDropsVocabPadding: Save writes the true vocabulary of a model whose embedding
// and output layer carry padding rows, in the requested dtype.
func TestSaveDropsVocabPadding(t *testing.T) {
	m, err := writeConfig(t, hftest.TinyMixtral)
	require.NoError(t, err)
	cfg := m.Config
	cfg.PaddedVocabSize = 256
	be := cpu.New()
	gm, err := layers.NewGPTModel(be, cfg, 5)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "out")
	_, err = hf.Save(be, gm, out, hf.Mixtral, tensor.BF16, nil)
	require.NoError(t, err)
	ts := readAll(t, out)
	for meg, name := range map[string]string{"embedding.word_embeddings.weight": "model.embed_tokens.weight", "output_layer.weight": "lm_head.weight"} {
		x := ts[name]
		require.Equal(t, []int{200, 64}, x.Shape(), name)
		require.Equal(t, tensor.BF16, x.DType())
		require.Equal(t, tensor.FromF32Values(tensor.BF16, param(t, gm, meg)[:200*64], 200, 64).Data, x.Data, name)
	}
	back, err := hf.ReadConfig(out)
	require.NoError(t, err)
	require.Equal(t, 200, back.Config.VocabSize)
}

// TestRopeParametersDense: transformers ≥ 5 writes rope_theta inside rope_parameters for
// the dense families too; reading only rope_theta would train Llama-3 with base 10000.
func TestRopeParametersDense(t *testing.T) {
	for _, mt := range []string{"llama", "mistral", "qwen2", "qwen3", "falcon"} {
		m, err := writeConfig(t, `{"model_type": "`+mt+`", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
			"num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 200, "rms_norm_eps": 1e-5, "layer_norm_epsilon": 1e-5,
			"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}`)
		require.NoError(t, err, mt)
		require.Equal(t, 500000.0, m.Config.RotaryBase, mt)
		m, err = writeConfig(t, `{"model_type": "`+mt+`", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
			"num_hidden_layers": 2, "vocab_size": 200, "rms_norm_eps": 1e-5, "layer_norm_epsilon": 1e-5, "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}`)
		require.NoError(t, err, mt)
		require.Equal(t, 2.0, m.Config.RotarySeqLenInterpolationFactor, mt)
		_, err = writeConfig(t, `{"model_type": "`+mt+`", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
			"num_hidden_layers": 2, "vocab_size": 200, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}`)
		require.ErrorContains(t, err, "rope_parameters", mt)
	}
}
