package scripts

import (
	"encoding/base64"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
)

const (
	qwen1PretrainScript = "qwen/run_pretrain_megatron_qwen.sh"
	qwen1GenerateScript = "qwen/run_text_generation_megatron_qwen.sh"
)

// Pai's Qwen (1.0) scripts' commands: QwenTokenizer, QKV biases only (its two bias flags),
// eps 1e-6, 72B's RoPE interpolation last; the generation script passes no repetition
// penalty, as Pai's.
func TestQwen1DryRun(t *testing.T) {
	f := newFixture(t)
	stdout, stderr, code := run(t, f, "bash", qwen1PretrainScript, map[string]string{"GPUS_PER_NODE": "8"},
		"dsw", "../..", "72B", "1", "8", "1e-5", "1e-6", "2048", "2048", "85", "bf16", "8", "1", "sel", "true", "false", "false", "false",
		"100000", f.ds, "none", "100000000", "10000", f.out)
	require.Equal(t, 0, code, stderr)
	cmd := normalize(t, strings.TrimSpace(stdout), true)
	assert.Contains(t, cmd, " pretrain --save "+f.out+"/checkpoint/dsw-pretrain-megatron-qwen-72B-lr-1e-5-bs-1-seqlen-2048-pr-bf16-tp-8-pp-1-ac-sel-do-true-sp-false-tt-100000000-wt-10000 --split 98\\,2\\,0 --train-data-path "+f.ds+" --lr 1e-5")
	assert.Contains(t, cmd, "--num-layers 80 --hidden-size 8192 --num-attention-heads 64 --ffn-hidden-size 24576 --seq-length 2048 --max-position-embeddings 2048 --log-interval 1 --eval-interval 100 --eval-iters 10")
	assert.Contains(t, cmd, "--no-load-optim --no-load-rng --num-workers 8 --seed 1234 --max-padding-length 2048 --extra-vocab-size 85 "+
		"--patch-tokenizer-type QwenTokenizer --dataset LLama-Pretrain-Idxmap --swiglu --normalization RMSNorm --use-rotary-position-embeddings "+
		"--position-embedding-type rope --untie-embeddings-and-output-weights --norm-epsilon 1e-6 --disable-bias-linear-fc --disable-bias-attn-fc "+
		"--bf16 --recompute-activations --use-distributed-optimizer --rotary-seq-len-interpolation-factor 4")
	assert.True(t, strings.HasSuffix(cmd, "--rotary-seq-len-interpolation-factor 4"), cmd)

	// A Qwen (1.0) config.json counts w1 and w2 in intermediate_size.
	ck := filepath.Join(f.dir, "Qwen-7B")
	writeFile(t, filepath.Join(ck, "config.json"), `{"model_type": "qwen", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 22016}`)
	args := []string{"dsw", "../..", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "85", "bf16", "1", "1", "sel", "true", "false", "false", "false",
		"100000", f.ds, ck, "100000000", "10000", f.out}
	_, stderr, code = run(t, f, "bash", qwen1PretrainScript, map[string]string{"GPUS_PER_NODE": "8"}, args...)
	require.Equal(t, 0, code, stderr)
	args[2] = "14B"
	_, stderr, code = run(t, f, "bash", qwen1PretrainScript, map[string]string{"GPUS_PER_NODE": "8"}, args...)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "config.json has num_hidden_layers 32, but MODEL_SIZE (arg 3) 14B has 40")

	out := filepath.Join(f.dir, "gen", "out.txt")
	stdout, stderr, code = run(t, f, "bash", qwen1GenerateScript, nil,
		"dsw", "../../", "none", "14B", "2", "1", "1024", "80", "213", "fp16", "0", "512", "512", f.jsonl, out, "0.85", "1", "1.3")
	require.Equal(t, 0, code, stderr)
	cmd = normalize(t, strings.TrimSpace(stdout), true)
	assert.Contains(t, cmd, "--num-layers 40 --hidden-size 5120 --num-attention-heads 40 --ffn-hidden-size 13696")
	assert.Contains(t, cmd, "--max-padding-length 80 --use-distributed-optimizer --patch-tokenizer-type QwenTokenizer --swiglu")
	assert.True(t, strings.HasSuffix(cmd, "--disable-bias-attn-fc --text-generate-output-file "+out+" --text-generate-input-file "+f.jsonl+" --fp16"), cmd)
	assert.NotContains(t, cmd, "--repetition-penalty")
	_, stderr, code = run(t, f, "bash", qwen1GenerateScript, nil,
		"dsw", "../../", "none", "72B", "2", "1", "1024", "80", "213", "fp16", "0", "512", "512", f.jsonl, out, "0.85", "1", "1.3")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "MODEL_SIZE (arg 4): '72B' is not one of: 7B 14B tiny small")
}

// The Qwen (1.0) scripts for real on a tiny QWenLMHeadModel folder with a synthetic
// qwen.tiktoken (the 256 bytes; QwenTokenizer adds its 208 specials): Pai's convertor
// (Qwen1.0 branch), pretraining from the converted checkpoint on an idxmap dataset with
// QwenTokenizer and Pai's Qwen bias flags, and generation.
func TestQwen1RealRun(t *testing.T) {
	f, bin, conv := realRunTools(t)

	// vocab_size: 256 ranks + 208 specials + EXTRA_VOCAB_SIZE 16.
	src := filepath.Join(f.dir, "Qwen-tiny")
	require.NoError(t, hftest.Write(src, `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 64, "intermediate_size": 344,
		"num_attention_heads": 4, "num_hidden_layers": 2, "kv_channels": 16, "vocab_size": 480, "layer_norm_epsilon": 1e-6,
		"rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 256, "max_position_embeddings": 256, "no_bias": true, "tie_word_embeddings": false}`, 0.02))
	var ranks strings.Builder
	for b := range 256 {
		fmt.Fprintf(&ranks, "%s %d\n", base64.StdEncoding.EncodeToString([]byte{byte(b)}), b)
	}
	writeFile(t, filepath.Join(src, "qwen.tiktoken"), ranks.String())
	ck := filepath.Join(f.dir, "qwen-tiny-hf-to-mg-tp1-pp1")
	runReal(t, f, qwenHF2MegatronScript, map[string]string{"DRY_RUN": "0", "CONVERT_BIN": conv}, "x", src, ck, "1", "1", "qwen-7b", "0", "false")
	require.FileExists(t, filepath.Join(ck, "qwen.tiktoken"))

	ds := filepath.Join(f.dir, "wudao_qwenbpe_content_document")
	writeCorpus(t, ds)
	env := map[string]string{"DRY_RUN": "0", "GOLAUNCH": bin, "GPUS_PER_NODE": "1"}
	stdout := runReal(t, f, qwen1PretrainScript, env, "dsw", "../..", "tiny", "1", "2", "1e-3", "1e-4", "128", "128", "16", "bf16", "1", "1", "sel",
		"false", "false", "false", "false", "100", ds, ck, "2560", "256", f.out)
	requireTinyRun(t, f, bin, stdout, qwen1GenerateScript, ck, "16", "QwenTokenizer")
	// Pai's Qwen 1.0 script leaves Megatron's default dropout on the converted model: the
	// warning of Pai's issue #217.
	require.Contains(t, stdout, "was converted from a Hugging Face qwen model, trained without dropout")
	out, err := exec.Command(bin, "--standalone", "--nproc-per-node", "1", "pretrain", "--use-checkpoint-args", "--load", ck,
		"--mock-data", "--vocab-size", "480", "--micro-batch-size", "1", "--global-batch-size", "1", "--train-iters", "1", "--lr", "1e-4",
		"--eval-iters", "0", "--data-cache-path", f.dir, "--hidden-dropout", "0.0", "--attention-dropout", "0.0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "trained without dropout", "no dropout, no warning")

	// The trained checkpoint keeps the converted one's hf_model_type: converted back without
	// --model_name it is a Qwen (1.0) folder again, not the Qwen2 its layers also fit.
	saved, err := filepath.Glob(filepath.Join(f.out, "checkpoint", "*", "latest_checkpointed_iteration.txt"))
	require.NoError(t, err)
	require.Len(t, saved, 1)
	back := filepath.Join(f.dir, "qwen-tiny-back")
	out, err = exec.Command(conv, "--load_path", filepath.Dir(saved[0]), "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers",
		"--hf_ckpt_path", src, "--progress", "none").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m, err := hf.ReadConfig(back)
	require.NoError(t, err)
	require.Equal(t, hf.Qwen, m.Family)
}
