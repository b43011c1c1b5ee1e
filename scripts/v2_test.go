package scripts

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Pai-Megatron-Patch v2's llama2 scripts (commit 7097866, 2024-06): the iteration-based
// fine-tuning with a global batch and the Megatron-Core pretraining and fine-tuning.
const (
	withGAScript        = "run_finetune_megatron_llama_withGA.sh"
	mcorePretrainScript = "run_pretrain_mcore_llama.sh"
	mcoreFinetuneScript = "run_finetune_mcore_llama_withGA.sh"
)

// withGAFixed is run_finetune_megatron_llama_withGA.sh's megatron_options, in Pai's order
// (the printed command is shell-quoted: printf %q escapes the split's commas).
const withGAFixed = "--save {OUT}/checkpoint/{NAME} --split 99\\,1\\,0 --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 " +
	"--weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 --dataloader-type cyclic --lr-decay-iters {DECAY} " +
	"--lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} " +
	"--hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 2048 " +
	"--max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} " +
	"--tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu --normalization RMSNorm " +
	"--use-rotary-position-embeddings --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --eod-mask-loss"

// mcorePretrainFixed is run_pretrain_mcore_llama.sh's megatron_options, then gomegatron's
// --use-mcore-models.
const mcorePretrainFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {DATA} --data-path {DATA} --lr {LR} " +
	"--min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 " +
	"--init-method-std 0.006 --attention-dropout 0.0 --hidden-dropout 0.0 --lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} " +
	"--train-iters {ITERS} --split 99\\,1\\,0 --micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} " +
	"--num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 4096 " +
	"--max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} " +
	"--tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Idxmap --swiglu --normalization RMSNorm " +
	"--use-rotary-position-embeddings --no-rope-fusion --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --transformer-impl transformer_engine --use-mcore-models"

// mcoreFinetuneFixed is run_finetune_mcore_llama_withGA.sh's megatron_options (PAD_LEN as
// --max-position-embeddings, --max-padding-length twice), then --use-mcore-models.
const mcoreFinetuneFixed = "--save {OUT}/checkpoint/{NAME} --split 99\\,1\\,0 --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 " +
	"--weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 --dataloader-type cyclic --lr-decay-iters {DECAY} " +
	"--lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} " +
	"--hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings {PAD} " +
	"--max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} " +
	"--tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --max-padding-length {PAD} " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu " +
	"--normalization RMSNorm --use-rotary-position-embeddings --no-rope-fusion --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --disable-bias-linear --eod-mask-loss --transformer-impl transformer_engine " +
	"--use-mcore-models"

// Pai v2's Llama-3 scripts (examples/llama3, 7097866), in scripts/llama3/.
const (
	llama3PretrainScript = "llama3/run_pretrain_mcore_llama.sh"
	llama3FinetuneScript = "llama3/run_finetune_mcore_llama_withGA.sh"
)

// llama3PretrainFixed is examples/llama3/run_pretrain_mcore_llama.sh's megatron_options.
const llama3PretrainFixed = "--save {OUT}/checkpoint/{NAME} --data-path {DATA} --lr {LR} --min-lr {MINLR} --lr-decay-style cosine " +
	"--weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --clip-grad 1.0 --init-method-std 0.008 --attention-dropout 0.0 " +
	"--hidden-dropout 0.0 --lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --split 99\\,1\\,0 " +
	"--micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
	"--ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 8192 --max-padding-length {PAD} --log-interval 1 " +
	"--eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 8 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLama3Tokenizer --dataset LLama-Pretrain-Idxmap --swiglu --normalization RMSNorm --norm-epsilon 1e-05 " +
	"--use-rotary-position-embeddings --no-rope-fusion --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --use-mcore-models --rotary-base 500000"

// llama3FinetuneFixed is examples/llama3/run_finetune_mcore_llama_withGA.sh's megatron_options.
const llama3FinetuneFixed = "--save {OUT}/checkpoint/{NAME} --split 99\\,1\\,0 --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style cosine --adam-beta1 0.9 --adam-beta2 0.95 " +
	"--weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 --dataloader-type cyclic --lr-decay-iters {DECAY} " +
	"--lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} " +
	"--hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 8192 " +
	"--max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} " +
	"--tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 8 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu --normalization RMSNorm " +
	"--use-rotary-position-embeddings --no-rope-fusion --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --use-mcore-models --rotary-base 500000 --attention-dropout 0.0 --hidden-dropout 0.0 " +
	"--norm-epsilon 1e-05 --eod-mask-loss"

// Pai's Llama-3 legacy scripts (examples/llama3, running ../llama2's entry points).
const (
	llama3LegacyPretrainScript = "llama3/run_pretrain_megatron_llama.sh"
	llama3LegacyFinetuneScript = "llama3/run_finetune_megatron_llama_withGA.sh"
)

// llama3LegacyPretrainFixed is examples/llama3/run_pretrain_megatron_llama.sh's megatron_options.
const llama3LegacyPretrainFixed = "--save {OUT}/checkpoint/{NAME} --split 99\\,1\\,0 --train-data-path {DATA} --data-path {DATA} --lr {LR} " +
	"--min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 " +
	"--init-method-std 0.006 --lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} " +
	"--global-batch-size {GBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} " +
	"--seq-length {SEQ} --max-position-embeddings 8192 --max-padding-length {PAD} --log-interval 1 --eval-interval 10000 " +
	"--eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --dataset LLama-Pretrain-Idxmap --no-load-optim --no-load-rng --num-workers 8 --seed 1234 " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer --swiglu --normalization RMSNorm --use-rotary-position-embeddings " +
	"--position-embedding-type rope --untie-embeddings-and-output-weights --rotary-base 500000 --attention-dropout 0.0 " +
	"--hidden-dropout 0.0 --disable-bias-linear --norm-epsilon 1e-05"

// llama3LegacyFinetuneFixed is examples/llama3/run_finetune_megatron_llama_withGA.sh's megatron_options.
const llama3LegacyFinetuneFixed = "--save {OUT}/checkpoint/{NAME} --split 99\\,1\\,0 --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 " +
	"--clip-grad 1.0 --init-method-std 0.006 --lr-decay-iters {DECAY} --lr-warmup-iters {WARMUP} --train-iters {ITERS} " +
	"--micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
	"--ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 8192 --max-padding-length {PAD} --log-interval 1 " +
	"--eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 8 --seed 1234 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu --normalization RMSNorm " +
	"--use-rotary-position-embeddings --position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear " +
	"--rotary-base 500000 --attention-dropout 0.0 --hidden-dropout 0.0 --norm-epsilon 1e-05"

// TestLlama3DryRun: the Llama-3 scripts print Pai's commands for its README examples.
func TestLlama3DryRun(t *testing.T) {
	f := newFixture(t)
	ck8 := filepath.Join(f.dir, "Meta-Llama-3-8B-to-mcore-tp4-pp1")
	writeFile(t, filepath.Join(ck8, "config.json"), `{"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256}`)
	dsw8 := "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT "
	eight := map[string]string{"GPUS_PER_NODE": "8"}
	gqa := " --group-query-attention --num-query-groups 8"
	runDryCases(t, f, []dryCase{{
		name: "pretrain README example", script: llama3PretrainScript, fixed: llama3PretrainFixed, size: "8B", env: eight, launch: dsw8 + "pretrain ",
		args: []string{"dsw", "../../", "8B", "1", "8", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "false", "100000", f.ds, ck8, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "pretrain-mcore-llama3-8B-lr-1e-5-minlr-1e-6-bs-1-gbs-8-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-moe-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "256"},
		tail: "--bf16 --load " + ck8 + " --transformer-impl local --recompute-activations --use-distributed-optimizer" + gqa,
	}, {
		name: "finetune README example", script: llama3FinetuneScript, fixed: llama3FinetuneFixed, size: "8B", env: eight, launch: dsw8 + "finetune ",
		args: []string{"dsw", "../../", "8B", "1", "8", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "false", "100000", f.json, f.json, ck8, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama2-8B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "99990000", "WARMUP": "10000", "ITERS": "100000000", "MBS": "1", "GBS": "8",
			"SEQ": "128", "PAD": "128", "SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "256"},
		tail: "--bf16 --load " + ck8 + " --transformer-impl local --recompute-activations --use-distributed-optimizer" + gqa,
	}, {
		name: "legacy pretrain", script: llama3LegacyPretrainScript, fixed: llama3LegacyPretrainFixed, size: "8B", env: eight, launch: dsw8 + "pretrain ",
		args: []string{"dsw", "../../", "8B", "1", "8", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "100000", f.ds, ck8, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-8B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "256"},
		tail: "--bf16 --load " + ck8 + " --transformer-impl local --recompute-activations --use-distributed-optimizer" + gqa,
	}, {
		name: "legacy withGA finetune", script: llama3LegacyFinetuneScript, fixed: llama3LegacyFinetuneFixed, size: "8B", env: eight, launch: dsw8 + "finetune ",
		args: []string{"dsw", "../../", "8B", "1", "32", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "100", f.json, f.json, ck8, "1000", "10", f.out},
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama3-8B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "990", "WARMUP": "10", "ITERS": "1000", "MBS": "1", "GBS": "32",
			"SEQ": "128", "PAD": "128", "SAVE": "100", "TP": "4", "PP": "1", "EXTRA": "256"},
		tail: "--bf16 --load " + ck8 + " --transformer-impl local --recompute-activations --use-distributed-optimizer" + gqa,
	}})
	base := []string{"dsw", "x", "8B", "1", "8", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "false", "100", f.ds, ck8, "1024000", "0", f.out}
	checkBad(t, f, llama3PretrainScript, base, eight, []badCase{
		{"Llama-2 size", map[int]string{3: "7B"}, nil, "MODEL_SIZE (arg 3): '7B' is not one of: 8B tiny small"},
		{"Llama-2 checkpoint", map[int]string{22: f.ck7}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 22): " + f.ck7 + "/config.json has intermediate_size 11008, but MODEL_SIZE (arg 3) 8B has 14336"},
	})
}

func TestV2DryRun(t *testing.T) {
	f := newFixture(t)
	dsw8 := "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT "
	dsw2 := "golaunch --nproc_per_node 2 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT "
	eight, two := map[string]string{"GPUS_PER_NODE": "8"}, map[string]string{"GPUS_PER_NODE": "2"}
	runDryCases(t, f, []dryCase{{
		name: "withGA README example: 13B TP 8, decay = 1000 - 10", script: withGAScript, fixed: withGAFixed, size: "13B", env: eight,
		args:   []string{"dsw", "../../", "13B", "1", "32", "1e-5", "1e-6", "128", "128", "0", "bf16", "8", "1", "sel", "true", "false", "false", "false", "100", f.json, f.json, f.ck13, "1000", "10", f.out},
		launch: dsw8 + "finetune ",
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama2-13B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-8-pp-1-ac-sel-do-true-sp-false-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "990", "WARMUP": "10", "ITERS": "1000", "MBS": "1", "GBS": "32",
			"SEQ": "128", "PAD": "128", "SAVE": "100", "TP": "8", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck13 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name: "withGA tiny fp16 (no query-key scaling in the legacy script), SP at TP 2, from scratch", script: withGAScript, fixed: withGAFixed, size: "tiny", env: two,
		args:   []string{"dsw", "x", "tiny", "2", "8", "3e-4", "0", "64", "100", "3", "fp16", "2", "1", "none", "false", "true", "true", "false", "5", f.json, f.json, "none", "20", "0", f.out},
		launch: dsw2 + "finetune ",
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama2-tiny-lr-3e-4-bs-2-seqlen-64-pr-fp16-tp-2-pp-1-ac-none-do-false-sp-true-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "3e-4", "MINLR": "0", "DECAY": "20", "WARMUP": "0", "ITERS": "20", "MBS": "2", "GBS": "8",
			"SEQ": "64", "PAD": "100", "SAVE": "5", "TP": "2", "PP": "1", "EXTRA": "3"},
		tail: "--fp16 --use-flash-attn --sequence-parallel --group-query-attention --num-query-groups 2 --vocab-size 256",
	}, {
		name: "mcore pretrain README example: 13B TP 8, MOE false", script: mcorePretrainScript, fixed: mcorePretrainFixed, size: "13B", env: eight,
		args:   []string{"dsw", "../../", "13B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "8", "1", "sel", "true", "false", "false", "false", "false", "100000", f.ds, f.ck13, "100000000", "10000", f.out},
		launch: dsw8 + "pretrain ",
		vals: map[string]string{"NAME": "dsw-pretrain-mcore-llama-13B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-8-pp-1-ac-sel-do-true-sp-false-moe-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "100000", "TP": "8", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck13 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name: "mcore pretrain fp16 adds --apply-query-key-layer-scaling; fp8 TE twice", script: mcorePretrainScript, fixed: mcorePretrainFixed, size: "tiny", env: two,
		args:   []string{"dsw", "x", "tiny", "1", "4", "1e-3", "1e-4", "128", "128", "0", "fp16", "1", "2", "full", "false", "true", "false", "true", "false", "10", "0.5 " + f.ds + " 0.5 " + f.ds2, "none", "1024000", "0", f.out},
		launch: dsw2 + "pretrain ",
		vals: map[string]string{"NAME": "dsw-pretrain-mcore-llama-tiny-lr-1e-3-bs-1-seqlen-128-pr-fp16-tp-1-pp-2-ac-full-do-false-sp-false-moe-false-tt-1024000-wt-0",
			"DATA": "0.5 " + f.ds + " 0.5 " + f.ds2, "LR": "1e-3", "MINLR": "1e-4", "ITERS": "2000", "WARMUP": "0", "MBS": "1", "GBS": "4", "SEQ": "128", "PAD": "128",
			"SAVE": "10", "TP": "1", "PP": "2", "EXTRA": "0"},
		tail: "--fp16 --apply-query-key-layer-scaling --transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full " +
			"--use-flash-attn --group-query-attention --num-query-groups 2 --vocab-size 256",
	}, {
		name: "mcore finetune README example: 13B TP 8", script: mcoreFinetuneScript, fixed: mcoreFinetuneFixed, size: "13B", env: eight,
		args:   []string{"dsw", "../../", "13B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "8", "1", "sel", "true", "false", "false", "false", "false", "100000", f.json, f.json, f.ck13, "100000000", "10000", f.out},
		launch: dsw8 + "finetune ",
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama2-13B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-8-pp-1-ac-sel-do-true-sp-false-tt--wt-10000",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "99990000", "WARMUP": "10000", "ITERS": "100000000", "MBS": "1", "GBS": "8",
			"SEQ": "128", "PAD": "128", "SAVE": "100000", "TP": "8", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck13 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name: "mcore finetune 70B fp8 TP 8 SP, GQA", script: mcoreFinetuneScript, fixed: mcoreFinetuneFixed, size: "70B", env: eight,
		args:   []string{"dsw", "x", "70B", "1", "64", "1e-5", "1e-6", "2048", "2048", "0", "fp8", "8", "1", "full", "true", "true", "true", "true", "false", "500", f.json, f.json, f.ck70, "300", "30", f.out},
		launch: dsw8 + "finetune ",
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama2-70B-lr-1e-5-bs-1-seqlen-2048-pr-fp8-tp-8-pp-1-ac-full-do-true-sp-true-tt--wt-30",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "270", "WARMUP": "30", "ITERS": "300", "MBS": "1", "GBS": "64",
			"SEQ": "2048", "PAD": "2048", "SAVE": "500", "TP": "8", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --fp8-hybrid --fp8-amax-compute-algo max --fp8-amax-history-len 1024 --transformer-impl transformer_engine --load " + f.ck70 +
			" --transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full --use-distributed-optimizer --use-flash-attn" +
			" --sequence-parallel --group-query-attention --num-query-groups 8",
	}})
}

// dryCase is one dry run: the script's arguments and environment, and the command it must
// print: launch, then fixed (a template filled with vals, the shape of size and OUT), then tail.
type dryCase struct {
	name, script, fixed, size, launch, tail string
	env                                     map[string]string
	args                                    []string
	vals                                    map[string]string
}

func runDryCases(t *testing.T, f fixture, cases []dryCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", tc.script, tc.env, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			require.Contains(t, shape, tc.size)
			want := tc.launch + fill(tc.fixed, merge(shape[tc.size], tc.vals, map[string]string{"OUT": f.out})) + " " + tc.tail
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), true))
			assert.Empty(t, stderr)
			assert.NoDirExists(t, f.out, "a dry run creates nothing")
		})
	}
}

func TestV2BadInput(t *testing.T) {
	f := newFixture(t)
	missing := filepath.Join(f.dir, "alpaca_zh-llama2-train.json")
	withGA := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "1", "1", "sel", "true", "false", "false", "false", "100", f.json, f.json, f.ck7, "100", "10", f.out}
	mcoreFT := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "1", "1", "sel", "true", "false", "false", "false", "false", "100", f.json, f.json, f.ck7, "100", "10", f.out}
	mcorePT := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "1", "1", "sel", "true", "false", "false", "false", "false", "100", f.ds, f.ck7, "1024000", "0", f.out}
	env := map[string]string{"GPUS_PER_NODE": "8"}
	for script, base := range map[string][]string{withGAScript: withGA, mcoreFinetuneScript: mcoreFT, mcorePretrainScript: mcorePT} {
		_, stderr, code := run(t, f, "bash", script, env, base...)
		require.Equal(t, 0, code, "%s: the base arguments must be valid: %s", script, stderr)
	}
	checkBad(t, f, withGAScript, withGA, env, []badCase{
		{"train data missing", map[int]string{20: missing}, nil, "DATASET_PATH (arg 20): " + missing + " not found"},
		{"valid data missing", map[int]string{21: missing}, nil, "VALID_DATASET_PATH (arg 21): " + missing + " not found"},
		{"warmup leaves no decay", map[int]string{24: "100"}, nil, "WARMUP_ITERS (arg 24): 100 leaves no decay iterations"},
		{"TRAIN_ITERS", map[int]string{23: "0"}, nil, "TRAIN_ITERS (arg 23): '0' is not a positive integer"},
		{"GBS by MBS × DP", map[int]string{5: "12"}, nil, "GLOBAL_BATCH_SIZE (arg 5): 12 is not a multiple of BATCH_SIZE (arg 4) 1 × data-parallel size 8"},
	})
	checkBad(t, f, mcoreFinetuneScript, mcoreFT, env, []badCase{
		{"MOE yes", map[int]string{19: "yes"}, nil, "MOE (arg 19): 'yes' is not one of: true false"},
		{"checkpoint of 70B for 7B", map[int]string{23: f.ck70}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 23): " + f.ck70 + "/config.json has num_hidden_layers 80, but MODEL_SIZE (arg 3) 7B has 32"},
		{"warmup leaves no decay", map[int]string{25: "200"}, nil, "WARMUP_ITERS (arg 25): 200 leaves no decay iterations"},
		{"output under a file", map[int]string{26: f.json + "/out"}, nil, "OUTPUT_BASEPATH (arg 26): " + f.json + "/out cannot be created"},
	})
	checkBad(t, f, mcorePretrainScript, mcorePT, env, []badCase{
		{"no iterations", map[int]string{23: "1000"}, nil, "TRAIN_TOKENS (arg 23): 1000 / GLOBAL_BATCH_SIZE 8 / SEQ_LEN 128 gives 0 training iterations"},
		{"data missing", map[int]string{21: f.ds + "x"}, nil, "DATASET_PATH (arg 21): " + f.ds + "x.bin not found"},
		{"TP does not divide heads", map[int]string{12: "3"}, nil, "TP (arg 12): 3 does not divide the 32 attention heads of MODEL_SIZE 7B"},
	})
}

// Pai v2's Qwen1.5 scripts (examples/qwen1_5, 7097866), in scripts/qwen1_5/.
const (
	qwenPretrainScript = "qwen1_5/run_pretrain_mcore_qwen.sh"
	qwenFinetuneScript = "qwen1_5/run_finetune_mcore_qwen_withGA.sh"
)

// qwenTail is the end of both Qwen1.5 scripts' megatron_options.
const qwenTail = "--swiglu --normalization RMSNorm --norm-epsilon 1e-06 --use-rotary-position-embeddings --no-rope-fusion " +
	"--position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear --add-qkv-bias --use-mcore-models " +
	"--rotary-percent 1.0 --rotary-base 1000000 --rotary-seq-len-interpolation-factor 1"

// qwenPretrainFixed is examples/qwen1_5/run_pretrain_mcore_qwen.sh's megatron_options.
const qwenPretrainFixed = "--save {OUT}/checkpoint/{NAME} --data-path {DATA} --lr {LR} --min-lr {MINLR} --lr-decay-style cosine " +
	"--weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --clip-grad 1.0 --init-method-std 0.008 --attention-dropout 0.0 " +
	"--hidden-dropout 0.0 --lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --split 99\\,1\\,0 " +
	"--micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
	"--ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings 32768 --max-padding-length {PAD} --log-interval 1 " +
	"--eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 8 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type Qwen2Tokenizer --dataset LLama-Pretrain-Idxmap " + qwenTail

// qwenFinetuneFixed is examples/qwen1_5/run_finetune_mcore_qwen_withGA.sh's megatron_options.
const qwenFinetuneFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style cosine --adam-beta1 0.9 --adam-beta2 0.95 " +
	"--weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.008 --attention-dropout 0.0 --hidden-dropout 0.0 --dataloader-type cyclic " +
	"--lr-decay-iters {DECAY} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} " +
	"--max-position-embeddings 32768 --max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 " +
	"--save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 8 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw " + qwenTail + " --eod-mask-loss"

// TestQwen15DryRun: the Qwen1.5 scripts print Pai's commands for its README examples (the
// fine-tuning one without EP, as Pai's README writes it, and with it).
func TestQwen15DryRun(t *testing.T) {
	f := newFixture(t)
	ck := filepath.Join(f.dir, "Qwen1.5-0.5B-hf-to-mcore-tp1-pp1")
	writeFile(t, filepath.Join(ck, "config.json"), `{"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16, "vocab_size": 151936}`)
	one := map[string]string{"GPUS_PER_NODE": "1"}
	dsw1 := "golaunch --nproc_per_node 1 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT "
	ft := []string{"dsw", "../../", "0.5B", "1", "8", "1e-5", "1e-6", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", "false", "100000", f.json, f.json, ck, "100000000", "10000", f.out}
	ftVals := map[string]string{"NAME": "dsw-finetune-megatron-qwen2-0.5B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-1-pp-1-ac-sel-do-true-sp-false-tt--wt-",
		"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "99990000", "WARMUP": "10000", "ITERS": "100000000", "MBS": "1", "GBS": "8",
		"SEQ": "128", "PAD": "128", "SAVE": "100000", "TP": "1", "PP": "1", "EXTRA": "293"}
	tail := "--bf16 --load " + ck + " --transformer-impl local --recompute-activations --use-distributed-optimizer"
	runDryCases(t, f, []dryCase{{
		name: "pretrain README example", script: qwenPretrainScript, fixed: qwenPretrainFixed, size: "0.5B", env: one, launch: dsw1 + "pretrain ",
		args: []string{"dsw", "../../", "0.5B", "1", "8", "1e-5", "1e-6", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", "false", "100000", f.ds, ck, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "pretrain-mcore-qwen-0.5B-lr-1e-5-minlr-1e-6-bs-1-gbs-8-seqlen-128-pr-bf16-tp-1-pp-1-ac-sel-do-true-sp-false-moe-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "100000", "TP": "1", "PP": "1", "EXTRA": "293"},
		tail: tail,
	}, {
		name: "finetune README example (26 arguments, no EP)", script: qwenFinetuneScript, fixed: qwenFinetuneFixed, size: "0.5B", env: one, launch: dsw1 + "finetune ",
		args: ft, vals: ftVals, tail: tail,
	}, {
		name: "finetune with EP", script: qwenFinetuneScript, fixed: qwenFinetuneFixed, size: "0.5B", env: one, launch: dsw1 + "finetune ",
		args: append(append(append([]string{}, ft[:19]...), "1"), ft[19:]...), vals: ftVals, tail: tail,
	}})
	base := append(append(append([]string{}, ft[:19]...), "1"), ft[19:]...)
	checkBad(t, f, qwenFinetuneScript, base, one, []badCase{
		{"MoE size", map[int]string{3: "A2.7B"}, nil, "MODEL_SIZE (arg 3): A2.7B is Qwen1.5-MoE"},
		{"EP", map[int]string{20: "0"}, nil, "EP (arg 20): '0' is not a positive integer"},
		{"warmup", map[int]string{26: "100000000"}, nil, "WARMUP_ITERS (arg 26): 100000000 leaves no decay iterations"},
	})
}

// Pai v2's Mistral scripts (examples/mistral, 7097866), in scripts/mistral/.
const (
	mistralPretrainScript = "mistral/run_pretrain_mcore_mistral.sh"
	mistralFinetuneScript = "mistral/run_finetune_mcore_mistral_withGA.sh"
)

// mistralTail ends both Mistral scripts' megatron_options (before the fine-tuning extras).
const mistralTail = "--swiglu --use-rotary-position-embeddings --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --disable-bias-linear-fc --disable-bias-attn-fc --normalization RMSNorm --no-masked-softmax-fusion " +
	"--no-position-embedding --use-mcore-models --no-rope-fusion"

// mistralPretrainFixed is examples/mistral/run_pretrain_mcore_mistral.sh's megatron_options.
const mistralPretrainFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {DATA} --data-path {DATA} --lr {LR} --min-lr {MINLR} " +
	"--lr-decay-style cosine --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 " +
	"--lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --split 99\\,1\\,0 --micro-batch-size {MBS} " +
	"--global-batch-size {GBS} --num-layers {L} --hidden-size {H} --ffn-hidden-size {F} --num-attention-heads {NH} " +
	"--seq-length {SEQ} --max-position-embeddings 32768 --max-padding-length {PAD} --sliding-window 4096 --log-interval 1 " +
	"--eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type MistralTokenizer --dataset LLama-Pretrain-Idxmap " + mistralTail +
	" --distributed-timeout-minutes 6000 --transformer-impl transformer_engine"

// mistralFinetuneFixed is examples/mistral/run_finetune_mcore_mistral_withGA.sh's megatron_options.
const mistralFinetuneFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {TRAIN} --data-path {TRAIN} --valid-data-path {VALID} " +
	"--lr {LR} --min-lr {MINLR} --lr-decay-style cosine --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 " +
	"--init-method-std 0.006 --lr-decay-iters {DECAY} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --split 99\\,1\\,0 " +
	"--micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} --ffn-hidden-size {F} " +
	"--num-attention-heads {NH} --seq-length {SEQ} --max-position-embeddings 32768 --max-padding-length {PAD} --log-interval 1 " +
	"--eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type MistralTokenizer --dataset LLama-Pretrain-Raw " + mistralTail +
	" --expert-model-parallel-size {EP} --distributed-timeout-minutes 6000 --transformer-impl transformer_engine --eod-mask-loss"

// TestMistralDryRun: the Mistral scripts print Pai's commands for its README examples.
func TestMistralDryRun(t *testing.T) {
	f := newFixture(t)
	ck := filepath.Join(f.dir, "Mistral-7B-v0.1-to-mcore-tp4-pp1")
	writeFile(t, filepath.Join(ck, "config.json"), `{"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000}`)
	eight := map[string]string{"GPUS_PER_NODE": "8"}
	dsw8 := "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT "
	tail := "--bf16 --load " + ck + " --recompute-activations --use-distributed-optimizer --group-query-attention --num-query-groups 8"
	runDryCases(t, f, []dryCase{{
		name: "pretrain README example", script: mistralPretrainScript, fixed: mistralPretrainFixed, size: "mistral7B", env: eight, launch: dsw8 + "pretrain ",
		args: []string{"dsw", "../../", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "sel", "true", "false", "false", "false", "false", "100000", f.ds, ck, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "0"},
		tail: tail,
	}, {
		name: "finetune README example; full recompute adds --recompute-num-layers 1", script: mistralFinetuneScript, fixed: mistralFinetuneFixed, size: "mistral7B", env: eight, launch: dsw8 + "finetune ",
		args: []string{"dsw", "../../", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "full", "true", "false", "false", "false", "false", "100000", f.json, f.json, ck, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "dsw-finetune-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-full-do-true-sp-false-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "99990000", "WARMUP": "10000", "ITERS": "100000000", "MBS": "1", "GBS": "8",
			"SEQ": "128", "PAD": "128", "SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "0", "EP": "2"},
		tail: "--bf16 --load " + ck + " --recompute-num-layers 1 --recompute-method uniform --recompute-granularity full --use-distributed-optimizer --group-query-attention --num-query-groups 8",
	}})
}

// TestV2MoEOptions: MOE=true adds Pai's mixture-of-experts options after every other
// option, as Pai's scripts do (Llama-2's with expert parallelism 2, Qwen's with its EP
// argument).
func TestV2MoEOptions(t *testing.T) {
	f := newFixture(t)
	mixtral := func(ep string) string {
		return " --moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size " + ep + " --moe-router-load-balancing-type aux_loss"
	}
	env := map[string]string{"GPUS_PER_NODE": "8"}
	pt := []string{"dsw", "x", "8B", "1", "8", "1e-5", "1e-6", "128", "128", "256", "bf16", "4", "1", "sel", "true", "false", "false", "false", "true", "100", f.ds, "none", "1024000", "0", f.out}
	ft := []string{"dsw", "x", "0.5B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "1", "1", "sel", "true", "false", "false", "false", "true", "2", "100", f.json, f.json, "none", "100", "10", f.out}
	l2 := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "1", "1", "sel", "true", "false", "false", "false", "true", "100", f.ds, "none", "1024000", "0", f.out}
	for _, tc := range []struct {
		script string
		args   []string
		want   string
	}{{llama3PretrainScript, pt, mixtral("1")}, {qwenFinetuneScript, ft, mixtral("2")},
		{mcorePretrainScript, l2, " --moe-router-topk 1 --num-experts 4 --expert-model-parallel-size 2"}} {
		stdout, stderr, code := run(t, f, "bash", tc.script, env, tc.args...)
		require.Equal(t, 0, code, "%s: %s", tc.script, stderr)
		require.True(t, strings.HasSuffix(strings.TrimSpace(stdout), tc.want), "%s: %s", tc.script, stdout)
	}
}
