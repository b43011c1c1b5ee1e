package main

import (
	"bytes"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// tinyMixtral is a Mixtral-8x7B-shaped config.json at test size: GQA, 4 experts with
// top-2 routing, a sliding window shorter than the test sequences.
const tinyMixtral = hftest.TinyMixtral

// TestMixtralConfig: config.json's keys become the MoE architecture, MixtralConfig's
// defaults fill absent keys, and what gomegatron cannot express is refused.
func TestMixtralConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hf")
	syntheticHF(t, dir, tinyMixtral)
	m, err := hf.ReadConfig(dir)
	require.NoError(t, err)
	c := m.Config
	require.Equal(t, hf.Mixtral, m.Family)
	require.Equal(t, 4, c.NumExperts)
	require.Equal(t, 2, c.MoERouterTopK)
	require.Equal(t, 0.02, c.MoEAuxLossCoeff)
	require.Equal(t, "aux_loss", c.MoERouterLoadBalancingType)
	require.Equal(t, 48, c.FFNHiddenSize, "intermediate_size is each expert's FFN")
	require.Equal(t, 5, c.SlidingWindow)
	require.Equal(t, 2, c.NumQueryGroups)
	require.Equal(t, 1e6, c.RotaryBase)
	require.True(t, c.DisableBiasLinear && c.SwiGLU && c.UntieEmbeddingsAndOutputWeights)
	require.Equal(t, mixtral, inferFamily(&c), "family inferred from the architecture")

	write := func(cfg string) (*hf.Model, error) {
		d := t.TempDir()
		require.NoError(t, writeFileAtomic(filepath.Join(d, "config.json"), []byte(cfg)))
		return hf.ReadConfig(d)
	}
	m, err = write(`{"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 48, "num_attention_heads": 4,
		"num_hidden_layers": 2, "vocab_size": 200, "num_key_value_heads": null, "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}`)
	require.NoError(t, err)
	require.Equal(t, 8, m.Config.NumExperts, "MixtralConfig's num_local_experts default")
	require.Equal(t, 2, m.Config.MoERouterTopK)
	require.Equal(t, 0.001, m.Config.MoEAuxLossCoeff)
	require.Equal(t, 4, m.Config.NumQueryGroups, "null num_key_value_heads is num_attention_heads")
	require.Equal(t, 5000.0, m.Config.RotaryBase, "rope_theta from transformers 5's rope_parameters")
	require.Equal(t, 0, m.Config.SlidingWindow)
	for _, bad := range []struct{ cfg, want string }{
		{`{"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3}`, "num_experts_per_tok 3"},
		{`{"model_type": "mixtral", "hidden_act": "gelu"}`, `hidden_act "gelu"`},
		{`{"model_type": "mixtral", "rope_scaling": {"type": "yarn", "factor": 2.0}}`, "rope_scaling"},
	} {
		_, err := write(bad.cfg)
		require.ErrorContains(t, err, bad.want)
	}
}

// TestMixtralRoundTrip converts a synthetic Mixtral to Megatron-Core at TP 2 × PP 2 in both
// layer specs and back: bit-identical tensors and the same architecture. The shards hold
// Megatron-Core's MoE keys (router, local_experts, a separate pre_mlp_layernorm even with
// Transformer Engine's fused names), with the router replicated over TP and each expert
// split as the dense MLP is; resharding to TP 1 × PP 1 keeps every full tensor.
func TestMixtralRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "hf")
	syntheticHF(t, src, tinyMixtral)
	orig := hfTensors(t, src)
	want, err := hf.ReadConfig(src)
	require.NoError(t, err)
	for _, impl := range []string{"transformer_engine", "local"} {
		t.Run(impl, func(t *testing.T) {
			meg, back, one := filepath.Join(tmp, impl+"-meg"), filepath.Join(tmp, impl+"-hf"), filepath.Join(tmp, impl+"-tp1")
			convertOK(t, "--load_path", src, "--save_path", meg, "--transformer-impl", impl,
				"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2")
			c, full := megatronFull(t, meg)
			require.Equal(t, 4, c.Config.NumExperts)
			require.Equal(t, 2, c.Config.MoERouterTopK)
			require.Equal(t, mixtral, c.Info.HFModelType)
			h := orig["model.layers.1.block_sparse_moe.experts.3.w1.weight"]
			require.Equal(t, append(append([]byte(nil), h.Data...), orig["model.layers.1.block_sparse_moe.experts.3.w3.weight"].Data...),
				full["decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight"].Data, "fc1 = [w1; w3]")
			require.Equal(t, orig["model.layers.1.block_sparse_moe.gate.weight"].Data, full["decoder.layers.1.mlp.router.weight"].Data)

			// Stage 1 of TP rank 1 holds global layer 1 as its layer 0.
			v, err := torchpickle.Load(filepath.Join(meg, "release", megatron.ShardDirName(1, 1, 2), megatron.ModelFile))
			require.NoError(t, err)
			mv, _ := v.(*torchpickle.Dict).Get("model")
			model := mv.(*torchpickle.Dict)
			get := func(k string) *tensor.Tensor {
				x, ok := model.Get(k)
				require.True(t, ok, "shard lacks %s", k)
				return x.(*tensor.Tensor)
			}
			require.Equal(t, []int{4, 64}, get("decoder.layers.0.mlp.router.weight").Shape(), "router replicated")
			require.Equal(t, orig["model.layers.1.block_sparse_moe.gate.weight"].Data, get("decoder.layers.0.mlp.router.weight").Data)
			fc1 := get("decoder.layers.0.mlp.experts.local_experts.3.linear_fc1.weight")
			require.Equal(t, []int{48, 64}, fc1.Shape(), "[gate_r; up_r] of 24 rows each")
			w1, w3 := orig["model.layers.1.block_sparse_moe.experts.3.w1.weight"], orig["model.layers.1.block_sparse_moe.experts.3.w3.weight"]
			row := 64 * 4
			require.Equal(t, append(append([]byte(nil), w1.Data[24*row:]...), w3.Data[24*row:]...), fc1.Data, "rank 1: the second half of gate and of up")
			require.Equal(t, []int{64, 24}, get("decoder.layers.0.mlp.experts.local_experts.0.linear_fc2.weight").Shape())
			require.Equal(t, []int{64}, get("decoder.layers.0.pre_mlp_layernorm.weight").Shape(), "MoE layers keep pre_mlp_layernorm")
			_, fused := model.Get("decoder.layers.0.mlp.linear_fc1.layer_norm_weight")
			require.False(t, fused)
			if impl == "transformer_engine" {
				get("decoder.layers.0.self_attention.linear_qkv.layer_norm_weight")
			}

			convertOK(t, "--load_path", meg, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
			requireSameTensors(t, orig, hfTensors(t, back))
			got, err := hf.ReadConfig(back)
			require.NoError(t, err)
			require.Equal(t, want.Family, got.Family)
			require.Equal(t, want.Config, got.Config)
			conf, err := readJSONMap(filepath.Join(back, "config.json"))
			require.NoError(t, err)
			require.Equal(t, []any{"MixtralForCausalLM"}, conf["architectures"])
			require.Equal(t, 0.02, conf["router_aux_loss_coef"])

			convertOK(t, "--load_path", meg, "--save_path", one)
			c1, f1 := megatronFull(t, one)
			require.Equal(t, 1, c1.TP)
			require.Equal(t, c.Format, c1.Format)
			requireSameTensors(t, full, f1)
		})
	}
	var o, e bytes.Buffer
	err = run([]string{"--load_path", src, "--save_path", filepath.Join(tmp, "legacy"), "--megatron-format", "legacy", "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "--megatron-format legacy: a mixture-of-experts model")
}

// lastLogits runs the model on ids (one prefill chunk) and returns the last position's
// logits per row, the padding columns dropped.
func lastLogits(t *testing.T, gm *layers.GPTModel, ids [][]int64, vocab int) [][]float32 {
	kc := gm.NewKVCache(len(ids), len(ids[0]))
	lg, err := gm.Decode(kc, ids, 0)
	require.NoError(t, err)
	v := lg.F32()
	out := make([][]float32, len(ids))
	for b := range out {
		out[b] = v[b*lg.Dim(1) : b*lg.Dim(1)+vocab]
	}
	return out
}

func flat(ids [][]int64) []int64 {
	var out []int64
	for _, r := range ids {
		out = append(out, r...)
	}
	return out
}

// TestMixtralMatchesTorch compares the converted model with Hugging Face's forward pass,
// transcribed in float64 torch (ckpt/hf/testdata/hf_forward.py), which first reproduces
// transformers' own float64 logits of the llama fixtures to 1e-5. A synthetic Mixtral
// (top-2 of 4 experts, sliding window 5 over 12 tokens) converted to Megatron-Core
// TP 2 × PP 2 and loaded as `golaunch evaluate` loads it (megatron.LoadModel) must give
// the transcription's loss and last-position logits within float32 rounding.
func TestMixtralMatchesTorch(t *testing.T) {
	hftest.NeedTorch(t)
	for _, fam := range []string{"llama-gqa", "llama-mha"} {
		src := filepath.Join(hfFixtures, fam)
		ids, b, s := fixtureTokens(t, src)
		rows := make([][]int64, b)
		for i := range rows {
			rows[i] = ids[i*s : (i+1)*s]
		}
		loss, logits := hftest.PyForward(t, src, rows)
		out, err := safetensors.Open(filepath.Join(src, "outputs.safetensors"))
		require.NoError(t, err)
		lt, err := out.Tensor("loss_f64")
		require.NoError(t, err)
		require.InDelta(t, lt.F64()[0], loss, 1e-5, "%s: the transcription's loss", fam)
		ref, err := out.Tensor("logits_f64")
		require.NoError(t, err)
		rv, v := ref.F64(), ref.Dim(2)
		var worst float64
		for i := 0; i < b; i++ {
			for j := 0; j < s; j++ {
				for k := 0; k < v; k++ {
					worst = math.Max(worst, math.Abs(logits[i][j][k]-rv[(i*s+j)*v+k]))
				}
			}
		}
		out.Close()
		require.Less(t, worst, 1e-5, "%s: the transcription's logits vs transformers' float64 run", fam)
	}

	tmp := t.TempDir()
	src, meg := filepath.Join(tmp, "hf"), filepath.Join(tmp, "meg")
	syntheticHFScaled(t, src, tinyMixtral, 0.1)
	ids := [][]int64{{1, 17, 42, 199, 3, 3, 88, 120, 7, 64, 150, 9}, {2, 5, 190, 33, 61, 61, 0, 14, 100, 77, 31, 180}}
	wantLoss, wantLogits := hftest.PyForward(t, src, ids)
	// Unpadded vocabulary (as Pai's scripts convert): Megatron's cross-entropy runs over the
	// padded rows too, whose logits are 0, so padding would change the loss.
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2",
		"--make_vocab_size_divisible_by", "1")
	gm, _, err := megatron.LoadModel(cpu.New(), meg)
	require.NoError(t, err)
	require.NotNil(t, gm.Layers[0].MoE, "the loaded model has MoE layers")
	loss := forwardLoss(t, gm, flat(ids), 2, 12)
	require.InDelta(t, wantLoss, loss, 1e-5*wantLoss, "loss of the converted Mixtral vs Hugging Face's")
	got := lastLogits(t, gm, ids, 200)
	for b := range ids {
		for k, w := range wantLogits[b][11] {
			require.InDelta(t, w, got[b][k], 1e-4, "row %d logit %d", b, k)
		}
	}
}

// TestUpcycleLlama converts the dense llama fixture with Pai's upcycling (--num-experts 4
// --moe-router-topk 1): every expert copies the layer's MLP and the top-1 score is 1, so
// the MoE checkpoint's loss equals the dense one's bit for bit. The router is N(0, 0.02),
// the same in every TP shard and run. Converted to Hugging Face it is a Mixtral (checked
// against the torch transcription when available: the dense model's loss again), and
// that Mixtral converts back to the same MoE checkpoint.
func TestUpcycleLlama(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	orig := hfTensors(t, src)
	tmp := t.TempDir()
	dense, moe, mix, again := filepath.Join(tmp, "dense"), filepath.Join(tmp, "moe"), filepath.Join(tmp, "mixtral"), filepath.Join(tmp, "again")
	convertOK(t, "--load_path", src, "--save_path", dense, "--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2")
	convertOK(t, "--load_path", src, "--save_path", moe, "--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2",
		"--num-experts", "4", "--moe-router-topk", "1")
	c, full := megatronFull(t, moe)
	require.Equal(t, 4, c.Config.NumExperts)
	require.Equal(t, 1, c.Config.MoERouterTopK)
	require.Equal(t, 172, c.Config.FFNHiddenSize)
	require.Equal(t, mixtral, c.Info.HFModelType)
	for l := 0; l < 2; l++ {
		p := "model.layers." + string(rune('0'+l)) + "."
		L := "decoder.layers." + string(rune('0'+l)) + "."
		fc1 := append(append([]byte(nil), orig[p+"mlp.gate_proj.weight"].Data...), orig[p+"mlp.up_proj.weight"].Data...)
		for e := 0; e < 4; e++ {
			E := L + "mlp.experts.local_experts." + string(rune('0'+e)) + "."
			require.Equal(t, fc1, full[E+"linear_fc1.weight"].Data)
			require.Equal(t, orig[p+"mlp.down_proj.weight"].Data, full[E+"linear_fc2.weight"].Data)
		}
		require.Equal(t, orig[p+"post_attention_layernorm.weight"].Data, full[L+"pre_mlp_layernorm.weight"].Data)
		r := full[L+"router.weight"]
		if r == nil {
			r = full[L+"mlp.router.weight"]
		}
		require.Equal(t, []int{4, 64}, r.Shape())
		var ss float64
		for _, x := range r.F32() {
			ss += float64(x) * float64(x)
		}
		require.InDelta(t, 0.02, math.Sqrt(ss/256), 0.004, "router N(0, 0.02)")
	}
	require.NotEqual(t, full["decoder.layers.0.mlp.router.weight"].Data, full["decoder.layers.1.mlp.router.weight"].Data, "each layer its own router")
	for pp := 0; pp < 2; pp++ {
		a, b := c.ShardTensors(0, pp), c.ShardTensors(1, pp)
		require.Equal(t, a["decoder.layers.0.mlp.router.weight"].Data, b["decoder.layers.0.mlp.router.weight"].Data, "router replicated over TP")
	}
	convertOK(t, "--load_path", src, "--save_path", again, "--num-experts", "4", "--moe-router-topk", "1")
	_, full1 := megatronFull(t, again)
	require.Equal(t, full["decoder.layers.1.mlp.router.weight"].Data, full1["decoder.layers.1.mlp.router.weight"].Data, "the router is drawn from --seed")
	// A dense Megatron checkpoint upcycles to the same MoE checkpoint.
	fromMeg := filepath.Join(tmp, "from-megatron")
	convertOK(t, "--load_path", dense, "--save_path", fromMeg, "--num-experts", "4", "--moe-router-topk", "1")
	_, fm := megatronFull(t, fromMeg)
	requireSameTensors(t, full, fm)

	ids, b, s := fixtureTokens(t, src)
	be := cpu.New()
	dm, _, err := megatron.LoadModel(be, dense)
	require.NoError(t, err)
	mm, _, err := megatron.LoadModel(be, moe)
	require.NoError(t, err)
	denseLoss := forwardLoss(t, dm, ids, b, s)
	require.Equal(t, denseLoss, forwardLoss(t, mm, ids, b, s), "top-1 upcycled loss = dense loss")

	convertOK(t, "--load_path", moe, "--save_path", mix, "--convert_checkpoint_from_megatron_to_transformers")
	hm, err := hf.ReadConfig(mix)
	require.NoError(t, err)
	require.Equal(t, hf.Mixtral, hm.Family)
	require.Equal(t, 4, hm.Config.NumExperts)
	require.Equal(t, 1, hm.Config.MoERouterTopK)
	got := hfTensors(t, mix)
	require.Equal(t, orig["model.layers.0.mlp.gate_proj.weight"].Data, got["model.layers.0.block_sparse_moe.experts.2.w1.weight"].Data)
	require.Equal(t, orig["model.layers.0.mlp.up_proj.weight"].Data, got["model.layers.0.block_sparse_moe.experts.2.w3.weight"].Data)
	require.Equal(t, orig["model.layers.0.mlp.down_proj.weight"].Data, got["model.layers.0.block_sparse_moe.experts.2.w2.weight"].Data)
	back := filepath.Join(tmp, "back")
	convertOK(t, "--load_path", mix, "--save_path", back, "--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2")
	_, fb := megatronFull(t, back)
	requireSameTensors(t, full, fb)

	if exec.Command("/usr/bin/python3", "-c", "import torch").Run() == nil {
		rows := make([][]int64, b)
		for i := range rows {
			rows[i] = ids[i*s : (i+1)*s]
		}
		loss, _ := hftest.PyForward(t, mix, rows)
		require.InDelta(t, denseLoss, loss, 1e-5, "Hugging Face's Mixtral forward of the upcycled model")
	}
}

// TestUpcycleSplit: --num_expert_split_size 2 cuts the FFN into halves, expert e taking
// half e mod 2 of gate, up and down (Pai's fine-grained upcycling), at TP 2.
func TestUpcycleSplit(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	orig := hfTensors(t, src)
	meg := filepath.Join(t.TempDir(), "moe")
	convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
		"--num-experts", "4", "--moe-router-topk", "2", "--num_expert_split_size", "2")
	c, full := megatronFull(t, meg)
	require.Equal(t, 86, c.Config.FFNHiddenSize)
	h := 64
	rows := func(x *tensor.Tensor, lo, n int) []float32 { return x.F32()[lo*h : (lo+n)*h] }
	gate, up, down := orig["model.layers.1.mlp.gate_proj.weight"], orig["model.layers.1.mlp.up_proj.weight"], orig["model.layers.1.mlp.down_proj.weight"]
	for e := 0; e < 4; e++ {
		s := e % 2
		E := "decoder.layers.1.mlp.experts.local_experts." + string(rune('0'+e)) + "."
		fc1 := full[E+"linear_fc1.weight"]
		require.Equal(t, []int{172, 64}, fc1.Shape())
		require.Equal(t, append(append([]float32(nil), rows(gate, 86*s, 86)...), rows(up, 86*s, 86)...), fc1.F32())
		fc2 := full[E+"linear_fc2.weight"]
		require.Equal(t, []int{64, 86}, fc2.Shape())
		dv := down.F32()
		for r := 0; r < h; r++ {
			require.Equal(t, dv[r*172+86*s:r*172+86*s+86], fc2.F32()[r*86:(r+1)*86])
		}
	}
}

// TestMoEBadInvocations: expert parallelism, a changed expert count, a split that does not
// divide the FFN, MoE flags on a dense model and upcycling a non-SwiGLU model are refused
// with the flag named.
func TestMoEBadInvocations(t *testing.T) {
	tmp := t.TempDir()
	mix := filepath.Join(tmp, "mixtral")
	syntheticHF(t, mix, tinyMixtral)
	llama := filepath.Join(hfFixtures, "llama-gqa")
	for _, tc := range []struct {
		name, src string
		args      []string
		want      string
	}{
		{"EP on a dense model", llama, []string{"--target_expert_model_parallel_size", "2"}, "--target_expert_model_parallel_size 2 applies to mixture-of-experts models"},
		{"EP not dividing the experts", mix, []string{"--expert-model-parallel-size", "3"}, "--target_expert_model_parallel_size 3 does not divide the 4 experts"},
		{"EP flags disagree", mix, []string{"--expert-model-parallel-size", "4", "--target_expert_model_parallel_size", "2"}, "disagree"},
		{"another expert count", mix, []string{"--num-experts", "8"}, "--num-experts 8: " + mix + " already has 4 experts"},
		{"split of an MoE", mix, []string{"--num_expert_split_size", "2"}, "--num_expert_split_size 2 splits a dense MLP"},
		{"split not dividing", llama, []string{"--num-experts", "3", "--num_expert_split_size", "3"}, "--num_expert_split_size 3 does not divide the FFN hidden size 172"},
		{"top-k on a dense model", llama, []string{"--moe-router-topk", "2"}, "pass --num-experts to upcycle it"},
		{"top-k above the experts", llama, []string{"--num-experts", "2", "--moe-router-topk", "3"}, "--moe-router-topk 3 must be between 1 and --num-experts 2"},
		{"GeLU MLP", filepath.Join(hfFixtures, "gpt2"), []string{"--num-experts", "2"}, "upcycling needs a SwiGLU MLP"},
		{"Mixtral TP not dividing the expert FFN", mix, []string{"--target_tensor_model_parallel_size", "2", "--moe-router-topk", "1", "--num_expert_split_size", "0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			err := run(append([]string{"--load_path", tc.src, "--save_path", filepath.Join(t.TempDir(), "out"), "--progress", "none"}, tc.args...), &o, &e)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	// --moe-router-topk rewrites the routing of an MoE checkpoint (weights unchanged).
	meg, top1 := filepath.Join(tmp, "meg"), filepath.Join(tmp, "top1")
	convertOK(t, "--load_path", mix, "--save_path", meg)
	convertOK(t, "--load_path", meg, "--save_path", top1, "--moe-router-topk", "1", "--num-experts", "4")
	c, f1 := megatronFull(t, top1)
	require.Equal(t, 1, c.Config.MoERouterTopK)
	_, f0 := megatronFull(t, meg)
	requireSameTensors(t, f0, f1)
	require.True(t, strings.HasPrefix(inferFamily(&c.Config), "mixtral"))

	// Args saying expert_model_parallel_size 2 over folders without the _EEE suffix: refused,
	// named (real expert-parallel checkpoints convert: cmd/golaunch TestExactResume).
	shard := filepath.Join(meg, "release", megatron.ShardDirName(0, 0, 1), megatron.ModelFile)
	v, err := torchpickle.Load(shard)
	require.NoError(t, err)
	a, _ := v.(*torchpickle.Dict).Get("args")
	a.(*torchpickle.Namespace).Set("expert_model_parallel_size", 2)
	require.NoError(t, torchpickle.Save(shard, v))
	var o, e bytes.Buffer
	err = run([]string{"--load_path", meg, "--save_path", filepath.Join(tmp, "ep"), "--convert_checkpoint_from_megatron_to_transformers", "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "folder mp_rank_00 lacks the _EEE suffix of an expert-parallel checkpoint")
}

// TestMixtralExpertParallel: written at EP 2 (and TP 2), each expert-parallel rank's folder
// holds its half of the experts under local numbers, and the checkpoint reads back as the
// EP 1 conversion, tensor for tensor; converting it back to HF gives the source again.
func TestMixtralExpertParallel(t *testing.T) {
	tmp := t.TempDir()
	mix, ep1, ep2, back := filepath.Join(tmp, "mixtral"), filepath.Join(tmp, "ep1"), filepath.Join(tmp, "ep2"), filepath.Join(tmp, "back")
	syntheticHF(t, mix, tinyMixtral)
	convertOK(t, "--load_path", mix, "--save_path", ep1, "--target_tensor_model_parallel_size", "2")
	convertOK(t, "--load_path", mix, "--save_path", ep2, "--target_tensor_model_parallel_size", "2", "--target_expert_model_parallel_size", "2")
	for _, d := range []string{"mp_rank_00_000", "mp_rank_00_001", "mp_rank_01_000", "mp_rank_01_001"} {
		require.FileExists(t, filepath.Join(ep2, "release", d, megatron.ModelFile))
	}
	sf, err := megatron.LoadShard(megatron.Location{Root: ep2, Release: true, ExpertRank: 1, ExpertSize: 2}, 0, 0, 1)
	require.NoError(t, err)
	local, _, err := sf.Model()
	require.NoError(t, err)
	require.Contains(t, local, "decoder.layers.0.mlp.experts.local_experts.1.linear_fc2.weight")
	require.NotContains(t, local, "decoder.layers.0.mlp.experts.local_experts.2.linear_fc2.weight")
	sf.Close()
	c, got := megatronFull(t, ep2)
	require.Equal(t, 2, c.EP)
	_, want := megatronFull(t, ep1)
	requireSameTensors(t, want, got)
	convertOK(t, "--load_path", ep2, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameTensors(t, hfTensors(t, mix), hfTensors(t, back))
}

// TestMixtralGroupedGemm writes Mixtral as Megatron's GroupedMLP at TP 2 and EP 2: each
// shard's weight1 [h, 2·fc1/TP] holds, as weight1.view(2, h, −1), its two experts' fc1
// shards transposed ([gate_r; up_r] as columns), and weight2 [2·ffn/TP, h] their fc2
// shards transposed. The full tensors equal the SequentialMLP conversion's, and both
// convert back to the original Hugging Face tensors and to each other.
func TestMixtralGroupedGemm(t *testing.T) {
	tmp := t.TempDir()
	mix, seq, grp, back, unpacked := filepath.Join(tmp, "mixtral"), filepath.Join(tmp, "seq"), filepath.Join(tmp, "grp"), filepath.Join(tmp, "back"), filepath.Join(tmp, "unpacked")
	syntheticHF(t, mix, tinyMixtral)
	orig := hfTensors(t, mix)
	convertOK(t, "--load_path", mix, "--save_path", seq)
	convertOK(t, "--load_path", mix, "--save_path", grp, "--target_tensor_model_parallel_size", "2",
		"--target_expert_model_parallel_size", "2", "--moe-grouped-gemm")

	// TP rank 1 of EP rank 1: experts 2 and 3, the second half of gate, up and fc2's columns.
	sf, err := megatron.LoadShard(megatron.Location{Root: grp, Release: true, ExpertRank: 1, ExpertSize: 2}, 1, 0, 1)
	require.NoError(t, err)
	defer sf.Close()
	local, _, err := sf.Model()
	require.NoError(t, err)
	require.NotContains(t, local, "decoder.layers.0.mlp.experts.local_experts.0.linear_fc1.weight")
	const h, ffn = 64, 48
	w1, w2 := local["decoder.layers.0.mlp.experts.weight1"], local["decoder.layers.0.mlp.experts.weight2"]
	require.NotNil(t, w1)
	require.Equal(t, []int{h, 2 * ffn}, w1.Shape(), "weight1 [h, 2 experts · 2·ffn/TP]")
	require.Equal(t, []int{ffn, h}, w2.Shape(), "weight2 [2 experts · ffn/TP, h]")
	g1, g2 := w1.ToF32(), w2.ToF32()
	hfAt := func(name string, row, col, cols int) float32 { return orig[name].ToF32()[row*cols+col] }
	for e := 0; e < 2; e++ {
		pre := fmt.Sprintf("model.layers.0.block_sparse_moe.experts.%d.", 2+e)
		for i := 0; i < h; i++ {
			for j := 0; j < ffn; j++ { // weight1.view(2, h, 48)[e][i, j]: gate rows 24…47, then up's
				var want float32
				if j < ffn/2 {
					want = hfAt(pre+"w1.weight", ffn/2+j, i, h)
				} else {
					want = hfAt(pre+"w3.weight", j, i, h)
				}
				require.Equal(t, want, g1[e*h*ffn+i*ffn+j], "weight1 expert %d [%d, %d]", e, i, j)
			}
		}
		for j := 0; j < ffn/2; j++ { // weight2.view(2, 24, h)[e][j, i] = w2[i, 24+j]
			for i := 0; i < h; i++ {
				require.Equal(t, hfAt(pre+"w2.weight", i, 24+j, ffn), g2[e*ffn/2*h+j*h+i], "weight2 expert %d [%d, %d]", e, j, i)
			}
		}
	}

	c, got := megatronFull(t, grp)
	require.True(t, c.Config.MoEGroupedGemm, "args say moe_grouped_gemm")
	_, want := megatronFull(t, seq)
	requireSameTensors(t, want, got)
	convertOK(t, "--load_path", grp, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
	requireSameTensors(t, orig, hfTensors(t, back))
	convertOK(t, "--load_path", grp, "--save_path", unpacked, "--no-moe-grouped-gemm")
	c1, f1 := megatronFull(t, unpacked)
	require.False(t, c1.Config.MoEGroupedGemm)
	requireSameTensors(t, want, f1)

	var o, e bytes.Buffer
	err = run([]string{"--load_path", filepath.Join(hfFixtures, "llama-gqa"), "--save_path", filepath.Join(tmp, "dense"), "--moe-grouped-gemm", "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "is a dense model")
}
