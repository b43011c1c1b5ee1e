package main

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBadInvocations requires a clear error, naming the flag or path, for each misuse.
func TestBadInvocations(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"TP does not divide the query groups", []string{"--target_tensor_model_parallel_size", "4"}, []string{"query groups 2", "4"}},
		{"PP does not divide the layers", []string{"--target_pipeline_model_parallel_size", "3"}, []string{"--target_pipeline_model_parallel_size 3", "num_layers 2"}},
		{"unknown dtype", []string{"--target_params_dtype", "fp8"}, []string{"--target_params_dtype", "fp8"}},
		{"model name of another family", []string{"--model_name", "bloom-7b"}, []string{"--model_name", "bloom", "llama"}},
		{"unknown format", []string{"--megatron-format", "dist"}, []string{"--megatron-format", "dist"}},
		{"negative extra vocab", []string{"--extra_num_vocabs", "-2"}, []string{"--extra_num_vocabs"}},
		{"mg2hf from a Hugging Face folder", []string{"--convert_checkpoint_from_megatron_to_transformers"}, []string{"not a Megatron checkpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			var o, e bytes.Buffer
			err := run(append([]string{"--load_path", src, "--save_path", out, "--progress", "none"}, tc.args...), &o, &e)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	var o, e bytes.Buffer
	err := run([]string{"--load_path", t.TempDir(), "--save_path", filepath.Join(t.TempDir(), "x")}, &o, &e)
	require.ErrorContains(t, err, "neither a Megatron checkpoint")
}

// TestTargetNotOverwrittenWithoutForce: a non-empty --save_path is refused and left
// untouched; with --force the conversion replaces the old checkpoint entirely (no stale
// shard of the previous TP survives).
func TestTargetNotOverwrittenWithoutForce(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-mha")
	out := t.TempDir()
	convertOK(t, "--load_path", src, "--save_path", out, "--target_tensor_model_parallel_size", "2", "--force")
	var o, e bytes.Buffer
	err := run([]string{"--load_path", src, "--save_path", out, "--progress", "none"}, &o, &e)
	require.ErrorContains(t, err, "--save_path "+out+" is not empty")
	require.ErrorContains(t, err, "--force")
	c, err := megatron.Open(out)
	require.NoError(t, err)
	require.Equal(t, 2, c.TP, "the refused run changed nothing")
	c.Close()

	convertOK(t, "--load_path", src, "--save_path", out, "--force")
	c, err = megatron.Open(out)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, 1, c.TP)
}

// TestExtraVocabAndDType appends vocabulary rows (Pai's N(0, 0.02), same rows in the
// embedding and the output layer, reproducible by seed; or the row mean) and stores fp16.
func TestExtraVocabAndDType(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	orig := hfTensors(t, src)
	emb := orig["model.embed_tokens.weight"].ToF32()
	h := 64
	for _, init := range []string{"normal", "mean"} {
		t.Run(init, func(t *testing.T) {
			tmp := t.TempDir()
			a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
			for _, d := range []string{a, b} {
				convertOK(t, "--load_path", src, "--save_path", d, "--extra_num_vocabs", "5", "--extra-vocab-init", init,
					"--target_tensor_model_parallel_size", "2", "--target_params_dtype", "fp16")
			}
			ca, fa := megatronFull(t, a)
			_, fb := megatronFull(t, b)
			requireSameTensors(t, fa, fb) // deterministic
			require.Equal(t, tensor.F16, ca.DType)
			require.Equal(t, 261, ca.Config.VocabSize)
			require.Equal(t, 512, ca.Config.PaddedVocabSize) // 261 padded to 128·TP
			we := fa["embedding.word_embeddings.weight"].ToF32()
			out := fa["output_layer.weight"].ToF32()
			require.Equal(t, 512*h, len(we))
			for i := 0; i < 256*h; i++ {
				require.Equal(t, tensor.F32FromF16(tensor.F16FromF32(emb[i])), we[i])
			}
			extra := we[256*h : 261*h]
			require.Equal(t, make([]float32, (512-261)*h), we[261*h:], "padding rows are zero")
			switch init {
			case "normal":
				var s, ss float64
				for _, v := range extra {
					s += float64(v)
					ss += float64(v) * float64(v)
				}
				n := float64(len(extra))
				std := math.Sqrt(ss/n - (s/n)*(s/n))
				require.InDelta(t, 0.02, std, 0.003, "N(0, 0.02) rows")
				require.InDelta(t, 0, s/n, 0.003)
				require.True(t, slicesEqual(extra, out[256*h:261*h]), "the same new rows in embedding and output layer")
			case "mean":
				for j := 0; j < h; j++ {
					var m float64
					for r := 0; r < 256; r++ {
						m += float64(emb[r*h+j])
					}
					want := tensor.F32FromF16(tensor.F16FromF32(float32(m / 256)))
					require.InDelta(t, want, extra[j], 1e-3*math.Abs(float64(want))+1e-6)
					require.Equal(t, extra[j], extra[4*h+j])
				}
				require.False(t, slicesEqual(extra, out[256*h:261*h]), "each tensor gets its own mean")
			}
			back := filepath.Join(tmp, "hf")
			convertOK(t, "--load_path", a, "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers", "--target_params_dtype", "fp32")
			got := hfTensors(t, back)
			require.Equal(t, []int{261, h}, got["model.embed_tokens.weight"].Shape())
			require.Equal(t, we[:261*h], got["model.embed_tokens.weight"].F32())
		})
	}
}

// TestModelConvertorScript checks that scripts/model_convertor.sh maps Pai's positional
// arguments onto the convertor's flags (DRY_RUN=1 prints the command) and runs it.
func TestModelConvertorScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/model_convertor.sh")
	require.NoError(t, err)
	src, err := filepath.Abs(filepath.Join(hfFixtures, "llama-gqa"))
	require.NoError(t, err)
	tmp := t.TempDir()
	cmd := exec.Command("bash", script, "/opt/Megatron-LM", src, filepath.Join(tmp, "meg"), "2", "2", "llama2-7b", "0", "false")
	cmd.Env = append(os.Environ(), "DRY_RUN=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	line := strings.TrimSpace(string(out))
	for _, w := range []string{"--load_path " + src, "--save_path " + filepath.Join(tmp, "meg"), "--target_tensor_model_parallel_size 2",
		"--target_pipeline_model_parallel_size 2", "--model_name llama2-7b", "--extra_num_vocabs 0", "--target_params_dtype fp16", "--megatron-path /opt/Megatron-LM",
		"--make_vocab_size_divisible_by 1", "--megatron-format legacy"} {
		require.Contains(t, line, w)
	}
	require.NotContains(t, line, "--convert_checkpoint_from_megatron_to_transformers")

	cmd = exec.Command("bash", script, "/opt/Megatron-LM", filepath.Join(tmp, "meg"), filepath.Join(tmp, "hf"), "2", "2", "llama2-7b", "0", "true")
	cmd.Env = append(os.Environ(), "DRY_RUN=1")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "--convert_checkpoint_from_megatron_to_transformers")

	if testing.Short() {
		return
	}
	bin := filepath.Join(tmp, "convert")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err = build.CombinedOutput()
	require.NoError(t, err, string(out))
	for _, args := range [][]string{
		{src, filepath.Join(tmp, "meg"), "2", "2", "llama2-7b", "0", "false"},
		{filepath.Join(tmp, "meg", "release"), filepath.Join(tmp, "hf"), "2", "2", "llama2-7b", "0", "true"},
	} {
		cmd = exec.Command("bash", append([]string{script, "/opt/Megatron-LM"}, args...)...)
		cmd.Env = append(os.Environ(), "CONVERT_BIN="+bin, "TARGET_PARAMS_DTYPE=fp32")
		out, err = cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	requireSameTensors(t, hfTensors(t, src), hfTensors(t, filepath.Join(tmp, "hf")))
}

// TestHF2McoreConvertorScript runs scripts/hf2mcore_convertor.sh (Pai v2's 13 positional
// arguments) both ways: Hugging Face → Megatron-Core with Transformer Engine's key names at
// TP 2, then back, bit-identical; with NUM_EXPERTS the dense model is upcycled (Pai's
// expert options) and comes back as a Mixtral; expert parallelism, bad MoE arguments and
// a model of the wrong size are refused.
func TestHF2McoreConvertorScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/hf2mcore_convertor.sh")
	require.NoError(t, err)
	src, err := filepath.Abs(filepath.Join(hfFixtures, "llama-gqa"))
	require.NoError(t, err)
	tmp := t.TempDir()
	meg, back := filepath.Join(tmp, "mcore"), filepath.Join(tmp, "hf")
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run([]string{"DRY_RUN=1"}, "tiny", src, "../../../", src, meg, "2", "1", "0", "0", "0", "0", "0", "false")
	require.NoError(t, err, out)
	require.Equal(t, "convert --load_path "+src+" --save_path "+meg+" --target_tensor_model_parallel_size 2 --target_pipeline_model_parallel_size 1 "+
		"--target_params_dtype fp16 --model_name llama --extra_num_vocabs 0 --megatron-format mcore --transformer-impl transformer_engine "+
		"--make_vocab_size_divisible_by 1 --megatron-path ../../../\n", out)
	moe := filepath.Join(tmp, "moe")
	out, err = run([]string{"DRY_RUN=1"}, "tiny", src, "../../../", src, moe, "2", "1", "0", "4", "2", "1", "2", "false")
	require.NoError(t, err, out)
	require.Equal(t, "convert --load_path "+src+" --save_path "+moe+" --target_tensor_model_parallel_size 2 --target_pipeline_model_parallel_size 1 "+
		"--target_params_dtype fp16 --model_name llama --extra_num_vocabs 0 --megatron-format mcore --transformer-impl transformer_engine "+
		"--make_vocab_size_divisible_by 1 --megatron-path ../../../ --moe-router-topk 2 --num-experts 4 --expert-model-parallel-size 1 "+
		"--target_expert_model_parallel_size 1 --num_expert_split_size 2\n", out)
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "4", "1", "3", "0", "false"}, "EP (arg 11): 3 must be a positive divisor of NUM_EXPERTS (arg 9) 4"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "4", "1", "0", "0", "false"}, "EP (arg 11): 0 must be a positive divisor of NUM_EXPERTS (arg 9) 4"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "4", "0", "1", "0", "false"}, "EXPERTS_TOPK (arg 10): 0 must be between 1 and NUM_EXPERTS (arg 9) 4"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "4", "5", "1", "0", "false"}, "EXPERTS_TOPK (arg 10): 5 must be between 1 and NUM_EXPERTS (arg 9) 4"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "3", "1", "1", "3", "false"}, "NUM_EXPERT_SPLITS (arg 12): 3 does not divide MODEL_SIZE tiny's FFN hidden size 172"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "0", "0", "2", "0", "false"}, "EP (arg 11): 2 applies to mixture-of-experts models; NUM_EXPERTS (arg 9) is 0"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "0", "0", "0", "2", "false"}, "NUM_EXPERT_SPLITS (arg 12): 2 applies to mixture-of-experts models"},
		{[]string{"7B", src, "x", src, meg, "2", "1", "0", "0", "0", "0", "0", "false"}, "HG_CKPT_PATH (arg 2): " + src + "/config.json has num_hidden_layers 2, but MODEL_SIZE (arg 1) 7B has 32"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "0", "0", "0", "0", "yes"}, "mg2hf (arg 13): 'yes' is not one of: true false"},
		{[]string{"tiny", src, "x", src}, "expected 13 arguments, got 4"},
		{[]string{"tiny", src, "x", src, meg, "2", "1", "0", "4", "1", "3", "false"}, "EP (arg 11): 3 must be a positive divisor"}, // the README's 12
	} {
		out, err := run([]string{"DRY_RUN=1"}, bad.args...)
		require.Error(t, err)
		require.Contains(t, out, bad.want)
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(tmp, "convert")
	build := exec.Command("go", "build", "-o", bin, ".")
	out2, err := build.CombinedOutput()
	require.NoError(t, err, string(out2))
	env := []string{"CONVERT_BIN=" + bin, "TARGET_PARAMS_DTYPE=fp32"}
	out, err = run(env, "tiny", src, "x", src, meg, "2", "1", "0", "0", "0", "0", "false") // the README's twelve arguments
	require.NoError(t, err, out)
	require.Regexp(t, `(?m)^0 min \d+ sec$`, out, "Pai's closing line")
	// A conversion that fails fails the script, without Pai's closing line.
	out, err = run([]string{"CONVERT_BIN=/bin/false"}, "tiny", src, "x", src, filepath.Join(tmp, "never"), "2", "1", "0", "0", "0", "0", "false")
	require.Error(t, err, out)
	require.NotRegexp(t, `(?m)^0 min \d+ sec$`, out)
	v, err := torchpickle.Load(filepath.Join(meg, "release", megatron.ShardDirName(1, 0, 1), megatron.ModelFile))
	require.NoError(t, err)
	m, _ := v.(*torchpickle.Dict).Get("model")
	w, ok := m.(*torchpickle.Dict).Get("decoder.layers.1.self_attention.linear_qkv.layer_norm_weight")
	require.True(t, ok, "Transformer Engine's fused-norm key")
	require.Equal(t, []int{64}, w.(*tensor.Tensor).Shape())
	out, err = run([]string{"DRY_RUN=1"}, "tiny", src, "x", filepath.Join(meg, "release"), back, "1", "1", "0", "0", "0", "0", "0", "true")
	require.NoError(t, err, out)
	require.Contains(t, out, "--convert_checkpoint_from_megatron_to_transformers --hf_ckpt_path "+src)
	out, err = run(env, "tiny", src, "x", filepath.Join(meg, "release"), back, "1", "1", "0", "0", "0", "0", "0", "true")
	require.NoError(t, err, out)
	requireSameTensors(t, hfTensors(t, src), hfTensors(t, back))

	// Upcycling (the Mistral README's "0 2 2 1" expert arguments, Llama's twelve), and back
	// as a Mixtral.
	out, err = run(env, "tiny", src, "x", src, moe, "2", "1", "0", "2", "2", "1", "false")
	require.NoError(t, err, out)
	c, full := megatronFull(t, moe)
	require.Equal(t, 2, c.Config.NumExperts)
	require.Equal(t, 2, c.Config.MoERouterTopK)
	require.Equal(t, megatron.MCoreTE, c.Format)
	orig := hfTensors(t, src)
	require.Equal(t, orig["model.layers.1.mlp.down_proj.weight"].Data, full["decoder.layers.1.mlp.experts.local_experts.1.linear_fc2.weight"].Data)
	v, err = torchpickle.Load(filepath.Join(moe, "release", megatron.ShardDirName(0, 0, 1), megatron.ModelFile))
	require.NoError(t, err)
	m, _ = v.(*torchpickle.Dict).Get("model")
	for _, k := range []string{"decoder.layers.0.pre_mlp_layernorm.weight", "decoder.layers.0.mlp.router.weight",
		"decoder.layers.0.mlp.experts.local_experts.1.linear_fc1.weight", "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight"} {
		_, ok := m.(*torchpickle.Dict).Get(k)
		require.True(t, ok, "MoE shard lacks %s", k)
	}
	mix := filepath.Join(tmp, "mixtral")
	out, err = run(env, "tiny", src, "x", filepath.Join(moe, "release"), mix, "1", "1", "0", "2", "2", "1", "0", "true")
	require.NoError(t, err, out)
	hm, err := hf.ReadConfig(mix)
	require.NoError(t, err)
	require.Equal(t, hf.Mixtral, hm.Family)
	got := hfTensors(t, mix)
	require.Equal(t, orig["model.layers.0.mlp.gate_proj.weight"].Data, got["model.layers.0.block_sparse_moe.experts.1.w1.weight"].Data)
	require.Equal(t, orig["model.norm.weight"].Data, got["model.norm.weight"].Data)
}

// TestQwenConvertorScript runs scripts/qwen1_5/hf2mcore_qwen1.5_dense_convertor.sh (Pai v2's
// six or seven arguments) on a synthetic Qwen2-architecture model of the tiny shape: to
// Megatron-Core at TP 2 with the vocabulary unpadded, and back, bit-identical.
func TestQwenConvertorScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/qwen1_5/hf2mcore_qwen1.5_dense_convertor.sh")
	require.NoError(t, err)
	tmp := t.TempDir()
	src, meg, back := filepath.Join(tmp, "Qwen1.5-tiny"), filepath.Join(tmp, "mcore"), filepath.Join(tmp, "back")
	syntheticHF(t, src, `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
		"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 202,
		"max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": false,
		"hidden_act": "silu", "use_sliding_window": false, "sliding_window": 4096}`)
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run([]string{"DRY_RUN=1"}, "tiny", src, meg, "2", "1", "false")
	require.NoError(t, err, out)
	require.Equal(t, "convert --load_path "+src+" --save_path "+meg+" --target_tensor_model_parallel_size 2 --target_pipeline_model_parallel_size 1 "+
		"--target_params_dtype fp16 --model_name qwen --megatron-format mcore --transformer-impl transformer_engine --make_vocab_size_divisible_by 1\n", out)
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"A2.7B", src, meg, "2", "1", "false"}, "MODEL_SIZE (arg 1): A2.7B is Qwen1.5-MoE"},
		{[]string{"7B", src, meg, "2", "1", "false"}, "SOURCE_CKPT_PATH (arg 2): " + src + "/config.json has num_hidden_layers 2, but MODEL_SIZE (arg 1) 7B has 32"},
		{[]string{"tiny", meg, back, "2", "1", "true", src}, "SOURCE_CKPT_PATH (arg 2): " + meg + " not found"},
		{[]string{"tiny", src, back, "2", "1", "true"}, "HF_CKPT_PATH (arg 7): mg2hf true needs the Hugging Face folder"},
		{[]string{"tiny", src, meg}, "expected 7 arguments, got 3"},
	} {
		out, err := run([]string{"DRY_RUN=1"}, bad.args...)
		require.Error(t, err)
		require.Contains(t, out, bad.want)
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(tmp, "convert")
	b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(b))
	env := []string{"CONVERT_BIN=" + bin, "TARGET_PARAMS_DTYPE=fp32"}
	out, err = run(env, "tiny", src, meg, "2", "1", "false")
	require.NoError(t, err, out)
	c, _ := megatronFull(t, meg)
	require.Equal(t, 202, c.Config.PaddedVocabSize, "Pai's vocabulary, not rounded to 128·TP")
	out, err = run(env, "tiny", filepath.Join(meg, "release"), back, "1", "1", "true", src)
	require.NoError(t, err, out)
	requireSameTensors(t, hfTensors(t, src), hfTensors(t, back))
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMistralConvertorScript runs scripts/mistral/hf2mcore_convertor.sh (Pai v2's 12 or 13
// arguments): the README's Mixtral-8x7B command (with EP 1: expert parallelism is refused),
// a tiny Mixtral to Megatron-Core at TP 2 and back bit-identical, and a tiny Mistral
// upcycled to experts and written back as a Mixtral.
func TestMistralConvertorScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/mistral/hf2mcore_convertor.sh")
	require.NoError(t, err)
	tmp := t.TempDir()
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	big := filepath.Join(tmp, "Mixtral-8x7B-v0.1")
	require.NoError(t, os.MkdirAll(big, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(big, "config.json"), []byte(`{"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
		"num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8, "vocab_size": 32000}`), 0o644))
	out8 := filepath.Join(tmp, "Mixtral-8x7B-v0.1-to-mcore-tp4-pp1")
	out, err := run([]string{"DRY_RUN=1"}, "8x7B", big, "../../../", big, out8, "4", "1", "0", "8", "2", "1", "false", "16")
	require.NoError(t, err, out)
	require.Equal(t, "convert --load_path "+big+" --save_path "+out8+" --target_tensor_model_parallel_size 4 --target_pipeline_model_parallel_size 1 "+
		"--target_params_dtype bf16 --model_name mixtral --extra_num_vocabs 0 --megatron-format mcore --transformer-impl transformer_engine "+
		"--make_vocab_size_divisible_by 1 --megatron-path ../../../ --moe-router-topk 2 --num-experts 8 --target_expert_model_parallel_size 1\n", out)
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"8x7B", big, "x", big, out8, "4", "1", "0", "8", "2", "3", "false", "16"}, "EP (arg 11): 3 must be a positive divisor of NUM_EXPERTS (arg 9) 8"},
		{[]string{"8x7B", big, "x", big, out8, "4", "1", "0", "8", "9", "1", "false"}, "EXPERTS_TOPK (arg 10): 9 must be between 1 and NUM_EXPERTS (arg 9) 8"},
		{[]string{"7B", big, "x", big, out8, "4", "1", "0", "0", "0", "0", "false", "16"}, "WS (arg 13): Pai's world size is an 8x7B argument only"},
		{[]string{"tiny", big, "x", big, out8, "4", "1", "0", "0", "0", "0", "false"}, "HG_CKPT_PATH (arg 2): " + big + "/config.json has num_hidden_layers 32, but MODEL_SIZE (arg 1) tiny has 2"},
		{[]string{"7B", big, "x", big, out8, "4", "1", "0", "0", "0", "2", "false"}, "EP (arg 11): 2 applies to mixture-of-experts models"},
		{[]string{"8x7B", big, "x"}, "expected 13 arguments, got 3"},
	} {
		out, err := run([]string{"DRY_RUN=1"}, bad.args...)
		require.Error(t, err)
		require.Contains(t, out, bad.want)
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(tmp, "convert")
	b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(b))
	env := []string{"CONVERT_BIN=" + bin, "TARGET_PARAMS_DTYPE=fp32"}

	// A Mixtral of the tiny shape: to TP 2 and back.
	mix, meg, back := filepath.Join(tmp, "mixtral"), filepath.Join(tmp, "mixtral-mcore"), filepath.Join(tmp, "mixtral-back")
	syntheticHF(t, mix, strings.NewReplacer(`"intermediate_size": 48`, `"intermediate_size": 172`, `"vocab_size": 200`, `"vocab_size": 256`).Replace(tinyMixtral))
	out, err = run(env, "tiny", mix, "x", mix, meg, "2", "1", "0", "4", "2", "1", "false")
	require.NoError(t, err, out)
	c, _ := megatronFull(t, meg)
	require.Equal(t, 4, c.Config.NumExperts)
	require.Equal(t, megatron.MCoreTE, c.Format)
	out, err = run(env, "tiny", mix, "x", meg, back, "1", "1", "0", "4", "2", "1", "true")
	require.NoError(t, err, out)
	requireSameTensors(t, hfTensors(t, mix), hfTensors(t, back))

	// A Mistral of the tiny shape, upcycled to 2 experts (top-1), back as a Mixtral.
	mis, moe, mixed := filepath.Join(tmp, "mistral"), filepath.Join(tmp, "mistral-moe"), filepath.Join(tmp, "mistral-mixtral")
	syntheticHF(t, mis, `{"model_type": "mistral", "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
		"num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu", "sliding_window": 16}`)
	out, err = run(env, "tiny", mis, "x", mis, moe, "2", "2", "0", "2", "1", "1", "false")
	require.NoError(t, err, out)
	c, full := megatronFull(t, moe)
	require.Equal(t, 2, c.Config.NumExperts)
	require.Equal(t, 1, c.Config.MoERouterTopK)
	require.Equal(t, 16, c.Config.SlidingWindow)
	orig := hfTensors(t, mis)
	require.Equal(t, orig["model.layers.1.mlp.down_proj.weight"].Data, full["decoder.layers.1.mlp.experts.local_experts.0.linear_fc2.weight"].Data)
	out, err = run(env, "tiny", mis, "x", moe, mixed, "1", "1", "0", "2", "1", "1", "true")
	require.NoError(t, err, out)
	hm, err := hf.ReadConfig(mixed)
	require.NoError(t, err)
	require.Equal(t, hf.Mixtral, hm.Family)
	require.Equal(t, 16, hm.Config.SlidingWindow)
	got := hfTensors(t, mixed)
	require.Equal(t, orig["model.layers.1.mlp.up_proj.weight"].Data, got["model.layers.1.block_sparse_moe.experts.1.w3.weight"].Data)
}
