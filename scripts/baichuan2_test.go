package scripts

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
)

const (
	baichuan2PretrainScript = "baichuan2/run_pretrain_megatron_baichuan.sh"
	baichuan2GenerateScript = "baichuan2/run_text_generation_megatron_baichuan.sh"
	baichuan2ConvertScript  = "baichuan2/model_convertor.sh"
	baichuan2EvaluateScript = "baichuan2/run_evaluate_megatron_baichuan.sh"
	baichuan2EvalHFScript   = "baichuan2/run_evaluate_huggingface_baichuan.sh"
)

// Pai's Baichuan 2 pretraining script's command: its model_options (RoPE for 7B, ALiBi for
// 13B) before and after the other flags, Pai's flags in Pai's order, and --use-normhead
// unless NORMHEAD=0.
func TestBaichuan2DryRun(t *testing.T) {
	f := newFixture(t)
	args := func(size string) []string {
		return []string{"dsw", "/workspace/Pai-Megatron-Patch/", size, "1", "8", "1e-5", "1e-6", "2048", "2048", "0", "bf16", "2", "1", "sel",
			"true", "true", "true", "false", "100000", f.json, "none", "100000000", "10000", f.out}
	}
	env := map[string]string{"GPUS_PER_NODE": "8"}
	for size, pos := range map[string]string{"7B": "--use-rotary-position-embeddings --position-embedding-type rope",
		"13B": "--use-alibi-mask --position-embedding-type none"} {
		stdout, stderr, code := run(t, f, "bash", baichuan2PretrainScript, env, args(size)...)
		require.Equal(t, 0, code, stderr)
		cmd := normalize(t, strings.TrimSpace(stdout), true)
		assert.Contains(t, cmd, " pretrain "+pos+" --save "+f.out+"/checkpoint/dsw-pretrain-megatron-baichuan-"+size+"-lr-1e-5-bs-1-seqlen-2048-pr-bf16-tp-2-pp-1-ac-sel-do-true-sp-true-tt-100000000-wt-10000 --split 98\\,2\\,0 --train-data-path "+f.json)
		assert.Contains(t, cmd, "--lr-decay-iters 6103 --lr-warmup-iters 0 --train-iters 6103")
		assert.Contains(t, cmd, "--log-interval 1 --eval-interval 100 --eval-iters 10 --save-interval 100000")
		assert.Contains(t, cmd, "--patch-tokenizer-type BaichuanTokenizer --dataset LLama-Pretrain-Raw --swiglu --normalization RMSNorm "+
			"--no-query-key-layer-scaling --untie-embeddings-and-output-weights --disable-bias-linear --recompute-activations "+
			"--use-distributed-optimizer --bf16 --sequence-parallel --use-flash-attn "+pos+" --use-normhead")
		assert.True(t, strings.HasSuffix(cmd, pos+" --use-normhead"), cmd)
	}
	env["NORMHEAD"] = "0"
	stdout, _, code := run(t, f, "bash", baichuan2PretrainScript, env, args("7B")...)
	require.Equal(t, 0, code)
	assert.NotContains(t, stdout, "--use-normhead")
	env["NORMHEAD"] = "yes"
	_, stderr, code := run(t, f, "bash", baichuan2PretrainScript, env, args("7B")...)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "NORMHEAD='yes' (environment) is not one of: 1 0")
	delete(env, "NORMHEAD")
	_, stderr, code = run(t, f, "bash", baichuan2PretrainScript, env, args("70B")...)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "MODEL_SIZE (arg 3): '70B' is not one of: 7B 13B tiny small")

	// Generation: Pai's rapidformer_options, then load, input, pr and model_options.
	out := filepath.Join(f.dir, "gen", "out.txt")
	stdout, stderr, code = run(t, f, "bash", baichuan2GenerateScript, nil,
		"dsw", "x", "none", "13B", "2", "1", "1024", "80", "0", "fp16", "0", "512", "512", f.jsonl, out, "0.85", "1", "1")
	require.Equal(t, 0, code, stderr)
	cmd := normalize(t, strings.TrimSpace(stdout), true)
	assert.Contains(t, cmd, "--use-distributed-optimizer --swiglu --untie-embeddings-and-output-weights --normalization RMSNorm "+
		"--patch-tokenizer-type BaichuanTokenizer --no-query-key-layer-scaling --repetition-penalty 1 --disable-bias-linear "+
		"--text-generate-output-file "+out+" --text-generate-input-file "+f.jsonl+" --fp16 --use-alibi-mask --position-embedding-type none")
	assert.True(t, strings.HasSuffix(cmd, "--position-embedding-type none"), cmd)

	// The convertor: Pai's fp16, MN checked against config.json.
	stdout, stderr, code = run(t, f, "bash", baichuan2ConvertScript, nil, "/root/Megatron-LM-23.04/", f.ck13, filepath.Join(f.dir, "mg"), "2", "1", "baichuan2-13b", "0", "false")
	require.Equal(t, 2, code, stdout)
	assert.Contains(t, stderr, "config.json has intermediate_size 13824, but MN (arg 6) baichuan2-13b has 13696")
	stdout, stderr, code = run(t, f, "bash", baichuan2ConvertScript, nil, "/root/Megatron-LM-23.04/", f.ck7, filepath.Join(f.dir, "mg"), "2", "1", "baichuan2-7b", "0", "false")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "convert --load_path "+f.ck7+" --save_path "+f.dir+"/mg --target_params_dtype fp16 --megatron-path /root/Megatron-LM-23.04/ "+
		"--target_tensor_model_parallel_size 2 --target_pipeline_model_parallel_size 1 --model_name baichuan2-7b --extra_num_vocabs 0 "+
		"--make_vocab_size_divisible_by 1 --megatron-format legacy", normalize(t, strings.TrimSpace(stdout), false))
	_, stderr, code = run(t, f, "bash", baichuan2ConvertScript, nil, "x", f.ck7, filepath.Join(f.dir, "mg"), "1", "1", "baichuan-13b", "0", "false")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "MN (arg 6): 'baichuan-13b' is not one of: baichuan2-7b baichuan2-13b")
}

// The Baichuan 2 scripts for real on a tiny Baichuan folder (W_pack, RoPE) with a
// SentencePiece tokenizer.model and Baichuan 2's tokenizer_config.json: convert it, pretrain
// from it on raw JSON with BaichuanTokenizer, and generate from it. The checkpoint has no
// NormHead (its vocabulary is not Baichuan 2's), so the pretraining script's default
// --use-normhead is refused with the flag to drop, and NORMHEAD=0 trains.
func TestBaichuan2RealRun(t *testing.T) {
	f, bin, conv := realRunTools(t)

	src := filepath.Join(f.dir, "Baichuan2-tiny")
	require.NoError(t, hftest.Write(src, `{"model_type": "baichuan", "architectures": ["BaiChuanForCausalLM"], "hidden_size": 64,
		"intermediate_size": 172, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 2000, "model_max_length": 256,
		"rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}`, 0.02))
	model, err := os.ReadFile("../data/tokenizer/testdata/sp_bpe2k.model")
	require.NoError(t, err)
	writeFile(t, filepath.Join(src, "tokenizer.model"), string(model))
	writeFile(t, filepath.Join(src, "tokenizer_config.json"), `{"add_bos_token": false, "add_eos_token": false, "bos_token": "<s>",
		"eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>", "tokenizer_class": "BaichuanTokenizer"}`)
	ck := filepath.Join(f.dir, "Baichuan2-tiny-to-mg-tp1-pp1")
	runReal(t, f, baichuan2ConvertScript, map[string]string{"DRY_RUN": "0", "CONVERT_BIN": conv}, "x", src, ck, "1", "1", "baichuan2-tiny", "0", "false")
	require.FileExists(t, filepath.Join(ck, "tokenizer.model"))

	var recs []string
	for i := range 24 {
		recs = append(recs, `{"instruction": "Add `+strconv.Itoa(i%9)+` and 2.", "input": "", "output": "It is `+strconv.Itoa(i%9+2)+`."}`)
	}
	data := filepath.Join(f.dir, "alpaca_zh.json")
	writeFile(t, data, "["+strings.Join(recs, ",")+"]")
	env := map[string]string{"DRY_RUN": "0", "GOLAUNCH": bin, "GPUS_PER_NODE": "1"}
	args := []string{"dsw", "x", "tiny", "1", "2", "1e-3", "1e-4", "128", "128", "0", "bf16", "1", "1", "sel",
		"false", "false", "false", "false", "100", data, ck, "2560", "256", f.out}
	stdout, stderr, code := run(t, f, "bash", baichuan2PretrainScript, env, args...)
	require.NotEqual(t, 0, code)
	require.Contains(t, stdout+stderr, "use_normhead false (Baichuan 2's NormHead output layer), this run has --use-normhead true: pass no --use-normhead")
	env["NORMHEAD"] = "0"
	stdout = runReal(t, f, baichuan2PretrainScript, env, args...)
	requireTinyRun(t, f, bin, stdout, baichuan2GenerateScript, ck, "0", "BaichuanTokenizer")

	// Pai's evaluation script on the same raw JSON: one pass, a loss per micro-batch.
	stdout = runReal(t, f, baichuan2EvaluateScript, env, "dsw", "x", "tiny", "4", "128", "128", "0", "bf16", "1", "1", "sel",
		"false", "false", "false", "false", data, ck)
	require.Contains(t, stdout, "evaluate-raw --use-rotary-position-embeddings --position-embedding-type rope --valid-data-path "+data)
	require.Contains(t, stdout, "total number of samples: 24")
	require.Regexp(t, `iteration +6/ +6 \| lm loss \(per data-parallel rank\): \S+ \|`, stdout)

	// And the Hugging Face folder itself, with its BaichuanTokenizer.
	stdout = runReal(t, f, baichuan2EvalHFScript, env, "dsw", "x", "tiny", "4", "128", "128", "0", "bf16", data, src)
	require.Contains(t, stdout, "evaluate-raw --transformer-type huggingface --valid-data-path "+data)
	require.Contains(t, stdout, "--patch-tokenizer-type BaichuanTokenizer")
	require.Regexp(t, `lm loss \(per data-parallel rank\): \S+ \|`, stdout)
}
