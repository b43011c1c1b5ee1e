package scripts

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// evaluateFixed is the megatron_options of Pai's examples/llama2/run_evaluate_megatron_llama.sh
// and run_evaluate_mcore_llama.sh (commit a098ca5), in their order; {ROPE} is where they
// differ (the legacy script's --use-llama2-rotary-position-embeddings, the mcore script's
// --use-rotary-position-embeddings --no-rope-fusion).
const evaluateFixed = "--valid-data-path {DATA} --micro-batch-size {MBS} --num-layers {L} --hidden-size {H} " +
	"--num-attention-heads {NH} --seq-length {SEQ} --max-position-embeddings {SEQ} --ffn-hidden-size {F} --log-interval 1 " +
	"--eval-interval 100 --eval-iters 10 --tensor-model-parallel-size {TP} --pipeline-model-parallel-size {PP} --no-load-optim " +
	"--no-load-rng --seed 1234 --num-workers 0 --max-padding-length {PAD} --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu --normalization RMSNorm {ROPE} " +
	"--position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear"

func TestEvaluateDryRun(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, script, size, rope, tail string
		args                           []string
		vals                           map[string]string
	}{{
		name: "legacy README example: 7B bf16 TP 2 SP", script: evaluateScript, size: "7B",
		args: []string{"dsw", "../..", "7B", "1", "80", "80", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", f.json, f.ck7},
		vals: map[string]string{"MBS": "1", "SEQ": "80", "PAD": "80", "EXTRA": "0", "TP": "2", "PP": "1"},
		rope: "--use-llama2-rotary-position-embeddings",
		tail: "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer --sequence-parallel",
	}, {
		name: "mcore 70B fp16 TE full recompute, no checkpoint", script: mcoreEvaluateScript, size: "70B",
		args: []string{"dsw", "../..", "70B", "2", "128", "128", "1", "fp16", "8", "1", "full", "false", "true", "false", "true", f.json, "none"},
		vals: map[string]string{"MBS": "2", "SEQ": "128", "PAD": "128", "EXTRA": "1", "TP": "8", "PP": "1"},
		rope: "--use-rotary-position-embeddings --no-rope-fusion",
		tail: "--use-mcore-models --fp16 --apply-query-key-layer-scaling --transformer-impl transformer_engine " +
			"--recompute-method uniform --recompute-granularity full --use-flash-attn --group-query-attention --num-query-groups 8",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"GPUS_PER_NODE": "8"}
			stdout, stderr, code := run(t, f, "bash", tc.script, env, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			want := "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT evaluate-raw " +
				fill(evaluateFixed, merge(shape[tc.size], tc.vals, map[string]string{"DATA": f.json, "ROPE": tc.rope})) + " " + tc.tail
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), true))
		})
	}
}

func TestEvaluateBadInput(t *testing.T) {
	f := newFixture(t)
	base := []string{"dsw", "../..", "7B", "1", "80", "80", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", f.json, f.ck7}
	env := map[string]string{"GPUS_PER_NODE": "2"}
	for _, script := range []string{evaluateScript, mcoreEvaluateScript} {
		_, stderr, code := run(t, f, "bash", script, env, base...)
		require.Equal(t, 0, code, "the base arguments must be valid: %s", stderr)
		checkBad(t, f, script, base, env, []badCase{
			{"data missing", map[int]string{16: f.dir + "/none.json"}, nil, "DATASET_PATH (arg 16): " + f.dir + "/none.json not found"},
			{"data is a prefix", map[int]string{16: f.ds}, nil, "DATASET_PATH (arg 16): " + f.ds + " is a .bin/.idx dataset; Pai's evaluation reads a raw JSON file"},
			{"checkpoint of 70B for 7B", map[int]string{17: f.ck70}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 17): " + f.ck70 + "/config.json has num_hidden_layers 80, but MODEL_SIZE (arg 3) 7B has 32"},
			{"PR", map[int]string{8: "bfloat16"}, nil, "PR (arg 8): 'bfloat16' is not one of: fp16 bf16 fp8"},
			{"TP of 3", map[int]string{9: "3"}, nil, "TP (arg 9): 3 does not divide the 32 attention heads of MODEL_SIZE 7B"},
			{"SEQ_LEN", map[int]string{5: "0"}, nil, "SEQ_LEN (arg 5): '0' is not a positive integer"},
			{"TE", map[int]string{15: "yes"}, nil, "TE (arg 15): 'yes' is not one of: true false"},
		})
		stdout, stderr, code := run(t, f, "bash", script, nil)
		assert.Equal(t, 2, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "usage: "+script+" ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE DATASET_PATH PRETRAIN_CHECKPOINT_PATH")
		assert.Contains(t, stderr, "17 PRETRAIN_CHECKPOINT_PATH")
	}
}

// TestEvaluateHFDryRun: Pai's run_evaluate_huggingface_llama.sh (commit a098ca5): one
// process on dsw, its own flags (the model comes from the folder), then pr and load.
func TestEvaluateHFDryRun(t *testing.T) {
	f := newFixture(t)
	stdout, stderr, code := run(t, f, "bash", hfEvaluateScript, nil, "dsw", "../..", "7B", "2", "80", "81", "0", "fp16", f.json, f.ck7)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	want := "golaunch --nproc_per_node 1 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT evaluate-raw " +
		"--transformer-type huggingface --valid-data-path " + f.json + " --micro-batch-size 2 --num-layers 32 --hidden-size 4096 " +
		"--num-attention-heads 32 --seq-length 80 --max-position-embeddings 80 --log-interval 1 --eval-interval 100 --eval-iters 10 " +
		"--tensor-model-parallel-size 1 --pipeline-model-parallel-size 1 --no-load-optim --num-workers 0 --dataset LLama-SFT " +
		"--use-distributed-optimizer --max-padding-length 81 --extra-vocab-size 0 --patch-tokenizer-type LLamaTokenizer --fp16 --load " + f.ck7
	assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), true))
	base := []string{"dsw", "../..", "7B", "2", "80", "81", "0", "fp16", f.json, f.ck7}
	checkBad(t, f, hfEvaluateScript, base, nil, []badCase{
		{"a Megatron checkpoint", map[int]string{10: f.ckMeg}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 10): " + f.ckMeg + " has no config.json"},
		{"fp8", map[int]string{8: "fp8"}, nil, "PR (arg 8): 'fp8' is not one of: fp16 bf16"},
		{"70B folder for 7B", map[int]string{10: f.ck70}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 10): " + f.ck70 + "/config.json has num_hidden_layers 80, but MODEL_SIZE (arg 3) 7B has 32"},
	})
}
