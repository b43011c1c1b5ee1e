package scripts

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The rest of Pai v2's Qwen1.5 and Mistral scripts (examples/qwen1_5, examples/mistral,
// commit 7097866): the legacy-model (megatron) pretraining and fine-tuning, the evaluations
// and Qwen's text generation. The expected commands below are written out from Pai's
// scripts' text (megatron_options, then pr, load, te, recompute, do, flash, sp, gqa).
const (
	qwenLegacyPretrainScript = "qwen1_5/run_pretrain_megatron_qwen.sh"
	qwenLegacyWithGAScript   = "qwen1_5/run_finetune_megatron_qwen_withGA.sh"
	qwenLegacyFinetuneScript = "qwen1_5/run_finetune_megatron_qwen.sh"
	qwenEvaluateScript       = "qwen1_5/run_evaluate_megatron_qwen.sh"
	qwenMcoreEvaluateScript  = "qwen1_5/run_evaluate_mcore_qwen.sh"
	qwenGenerateScript       = "qwen1_5/run_text_generation_megatron_qwen.sh"

	mistralLegacyPretrainScript = "mistral/run_pretrain_megatron_mistral.sh"
	mistralLegacyWithGAScript   = "mistral/run_finetune_megatron_mistral_withGA.sh"
	mistralEvaluateScript       = "mistral/run_evaluate_megatron_mistral.sh"
	mistralMcoreEvaluateScript  = "mistral/run_evaluate_mcore_mistral.sh"
	mistralHFEvaluateScript     = "mistral/run_evaluate_huggingface_mistral.sh"
)

// qwenLegacyTail ends the megatron_options of Pai's legacy Qwen1.5 scripts (Llama-2's entry
// points: llama2 RoPE with Qwen's base, no --disable-bias-linear).
const qwenLegacyTail = "--swiglu --normalization RMSNorm --use-llama2-rotary-position-embeddings --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --rotary-base 1000000 --rotary-scale-factor 1"

// qwenLegacyPretrainFixed is examples/qwen1_5/run_pretrain_megatron_qwen.sh's megatron_options.
const qwenLegacyPretrainFixed = "--save {OUT}/checkpoint/{NAME} --split 98\\,2\\,0 --train-data-path {DATA} --lr {LR} --min-lr {MINLR} " +
	"--lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 " +
	"--lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} " +
	"--max-position-embeddings {SEQ} --max-padding-length {PAD} --log-interval 1 --eval-interval 10000 --eval-iters 10 " +
	"--save-interval {SAVE} --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --dataset LLama-Pretrain-Idxmap --no-load-optim --no-load-rng --num-workers 8 --seed 1234 " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer " + qwenLegacyTail

// qwenLegacyWithGAFixed is examples/qwen1_5/run_finetune_megatron_qwen_withGA.sh's megatron_options.
const qwenLegacyWithGAFixed = "--save {OUT}/checkpoint/{NAME} --split 98\\,2\\,0 --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--test-data-path {VALID} --lr {LR} --min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 " +
	"--clip-grad 1.0 --init-method-std 0.006 --dataloader-type cyclic --lr-decay-iters {DECAY} --lr-warmup-iters {WARMUP} " +
	"--train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} --num-layers {L} --hidden-size {H} " +
	"--num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings {SEQ} --max-padding-length {PAD} " +
	"--log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 " +
	"--tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard --log-batch-size-to-tensorboard " +
	"--log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} --pipeline-model-parallel-size {PP} " +
	"--dataset LLama-Pretrain-Raw --no-save-optim --no-load-optim --no-load-rng --num-workers 8 --seed 1234 " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer " + qwenLegacyTail

// qwenLegacyFinetuneFixed is examples/qwen1_5/run_finetune_megatron_qwen.sh's megatron_options,
// with Pai's --train-data and --valid-data spelt --train-data-path and --valid-data-path (the
// flags golaunch finetune reads the same files from).
const qwenLegacyFinetuneFixed = "--load {CK} --save {OUT}/checkpoint/{NAME} --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --seq-length {SEQ} --max-position-embeddings {SEQ} " +
	"--ffn-hidden-size {F} --keep-last --micro-batch-size {MBS} --epochs {EPOCH} --lr {LR} --min-lr {MINLR} --lr-decay-style cosine " +
	"--weight-decay 0.1 --clip-grad 1.0 --adam-beta1 0.9 --adam-beta2 0.95 --init-method-std 0.01 --num-workers 0 --log-interval 1 " +
	"--eval-interval 1000 --eval-iters 10 --save-interval 1000000 --tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE " +
	"--log-timers-to-tensorboard --log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --finetune --no-load-optim --no-load-rng --seed 1234 --max-padding-length {PAD} " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type Qwen2Tokenizer --dataset LLama-Pretrain-Raw " + qwenLegacyTail

// evalHead is the start every Pai v2 evaluation script's megatron_options shares, up to
// --max-position-embeddings; evalLayout follows --ffn-hidden-size.
const (
	evalHead = "--valid-data-path {DATA} --micro-batch-size {MBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
		"--seq-length {SEQ} --max-position-embeddings "
	evalLayout = "--log-interval 1 --eval-interval 100 --eval-iters 10 --tensor-model-parallel-size {TP} " +
		"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --seed 1234 --num-workers 0 "
)

// qwenEvaluateFixed is examples/qwen1_5/run_evaluate_megatron_qwen.sh's megatron_options.
const qwenEvaluateFixed = evalHead + "{SEQ} --ffn-hidden-size {F} " + evalLayout +
	"--dataset LLama-Pretrain-Raw --max-padding-length {PAD} --extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer " +
	"--swiglu --normalization RMSNorm --use-rotary-position-embeddings --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --rotary-base 1000000 --rotary-scale-factor 1"

// qwenMcoreEvaluateFixed is examples/qwen1_5/run_evaluate_mcore_qwen.sh's megatron_options
// (RoPE base 1e8 as Pai writes it), then gomegatron's --use-mcore-models.
const qwenMcoreEvaluateFixed = evalHead + "{SEQ} --ffn-hidden-size {F} " + evalLayout +
	"--max-padding-length {PAD} --extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw " +
	"--swiglu --normalization RMSNorm --use-rotary-position-embeddings --no-rope-fusion --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --disable-bias-linear --eod-mask-loss --rotary-base 100000000 --rotary-percent 1 " +
	"--rotary-seq-len-interpolation-factor 1 --use-mcore-models"

// qwenGenerateFixed is examples/qwen1_5/run_text_generation_megatron_qwen.sh's
// rapidformer_options.
const qwenGenerateFixed = "--micro-batch-size {BS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
	"--ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings {SEQ} --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size 1 --no-load-optim --no-load-rng --top-p {TOPP} --temperature {TEMP} --top-k {TOPK} " +
	"--input-len {IN} --out-seq-length {OUTLEN} --extra-vocab-size {EXTRA} --max-padding-length {PAD} " +
	"--use-distributed-optimizer --swiglu --use-llama2-rotary-position-embeddings --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --patch-tokenizer-type LLamaTokenizer --normalization RMSNorm " +
	"--repetition-penalty {PEN} --rotary-base 1000000 --rotary-scale-factor 1"

// mistralLegacyTail ends the megatron_options of Pai's legacy Mistral scripts, after --dataset.
const mistralLegacyTail = "--sliding-window 4096 --swiglu --normalization RMSNorm --use-mistral-rotary-position-embeddings " +
	"--position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear"

// mistralLegacyLogs is the run of logging and layout flags in the middle of both legacy
// Mistral training scripts.
const mistralLegacyLogs = "--log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} --tensorboard-queue-size 1 " +
	"--tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard --log-batch-size-to-tensorboard " +
	"--log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} --pipeline-model-parallel-size {PP} --no-load-optim " +
	"--no-load-rng --num-workers 8 --seed 1234 --extra-vocab-size {EXTRA} --patch-tokenizer-type MistralTokenizer "

// mistralLegacyPretrainFixed is examples/mistral/run_pretrain_megatron_mistral.sh's megatron_options.
const mistralLegacyPretrainFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {DATA} --lr {LR} --min-lr {MINLR} " +
	"--lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 " +
	"--lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} " +
	"--max-position-embeddings 32768 --max-padding-length {PAD} " + mistralLegacyLogs + "--dataset LLama-Pretrain-Idxmap " +
	mistralLegacyTail

// mistralLegacyWithGAFixed is examples/mistral/run_finetune_megatron_mistral_withGA.sh's megatron_options.
const mistralLegacyWithGAFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {TRAIN} --valid-data-path {VALID} --lr {LR} " +
	"--min-lr {MINLR} --lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 " +
	"--init-method-std 0.006 --lr-decay-iters {DECAY} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} " +
	"--global-batch-size {GBS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} " +
	"--seq-length {SEQ} --max-position-embeddings 32768 --max-padding-length {PAD} " + mistralLegacyLogs +
	"--dataset LLama-Pretrain-Raw " + mistralLegacyTail

// mistralEvaluateFixed is examples/mistral/run_evaluate_megatron_mistral.sh's megatron_options.
const mistralEvaluateFixed = evalHead + "32768 --ffn-hidden-size {F} " + evalLayout +
	"--max-padding-length {PAD} --extra-vocab-size {EXTRA} --patch-tokenizer-type MistralTokenizer --dataset LLama-SFT " +
	mistralLegacyTail

// mistralMcoreEvaluateFixed is examples/mistral/run_evaluate_mcore_mistral.sh's
// megatron_options: 8 experts, top-2, EP = TOTAL_GPUS / TP / PP.
const mistralMcoreEvaluateFixed = evalHead + "32768 --ffn-hidden-size {F} " + evalLayout +
	"--max-padding-length {PAD} --extra-vocab-size {EXTRA} --patch-tokenizer-type MistralTokenizer --dataset LLama-SFT " +
	"--swiglu --use-rotary-position-embeddings --position-embedding-type rope --untie-embeddings-and-output-weights " +
	"--disable-bias-linear --disable-bias-linear-fc --disable-bias-attn-fc --normalization RMSNorm --no-masked-softmax-fusion " +
	"--no-position-embedding --num-experts 8 --moe-router-topk 2 --use-mcore-models --no-rope-fusion " +
	"--expert-model-parallel-size {EP} --transformer-impl transformer_engine"

// v2MoreFixture adds Hugging Face config folders of the Qwen1.5 and Mistral sizes the tests use.
func v2MoreFixture(t *testing.T) (f fixture, qwen05, qwen18, mistral7 string) {
	f = newFixture(t)
	qwen05 = filepath.Join(f.dir, "Qwen1.5-0.5B-hf-to-mcore-tp1-pp1")
	writeFile(t, filepath.Join(qwen05, "config.json"), `{"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16, "vocab_size": 151936}`)
	qwen18 = filepath.Join(f.dir, "Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp2")
	writeFile(t, filepath.Join(qwen18, "config.json"), `{"hidden_size": 2048, "intermediate_size": 5504, "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16, "vocab_size": 151936}`)
	mistral7 = filepath.Join(f.dir, "Mistral-7B-v0.1")
	writeFile(t, filepath.Join(mistral7, "config.json"), `{"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000}`)
	return f, qwen05, qwen18, mistral7
}

func dswLaunch(n int, cmd string) string {
	return "golaunch --nproc_per_node " + strconv.Itoa(n) + " --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT " + cmd + " "
}

func gpus(n int) map[string]string { return map[string]string{"GPUS_PER_NODE": strconv.Itoa(n)} }

// TestQwen15LegacyDryRun: Pai's legacy Qwen1.5 training scripts print Pai's commands for its
// examples (the scripts' first lines).
func TestQwen15LegacyDryRun(t *testing.T) {
	f, _, qwen18, _ := v2MoreFixture(t)
	runDryCases(t, f, []dryCase{{
		name: "pretrain example: 7B, SP at TP 1", script: qwenLegacyPretrainScript, fixed: qwenLegacyPretrainFixed, size: "7B", env: gpus(8),
		launch: dswLaunch(8, "pretrain"),
		args:   []string{"dsw", "../../", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "293", "bf16", "1", "1", "sel", "true", "true", "true", "false", "100000", f.ds, f.ck7, "10000000000", "100000000", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-2048-pr-bf16-tp-1-pp-1-ac-sel-do-true-sp-true-tt-10000000000-wt-100000000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "610351", "WARMUP": "6103", "MBS": "1", "GBS": "8", "SEQ": "2048", "PAD": "2048",
			"SAVE": "100000", "TP": "1", "PP": "1", "EXTRA": "293"},
		tail: "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer --use-flash-attn",
	}, {
		name: "pretrain tiny fp8 TE full recompute from scratch, a blend", script: qwenLegacyPretrainScript, fixed: qwenLegacyPretrainFixed, size: "tiny", env: gpus(2),
		launch: dswLaunch(2, "pretrain"),
		args:   []string{"dsw", "x", "tiny", "1", "4", "1e-3", "0", "128", "128", "1", "fp8", "2", "1", "full", "false", "false", "true", "true", "10", "0.5 " + f.ds + " 0.5 " + f.ds2, "none", "1024000", "0", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-tiny-lr-1e-3-bs-1-seqlen-128-pr-fp8-tp-2-pp-1-ac-full-do-false-sp-true-tt-1024000-wt-0",
			"DATA": "0.5 " + f.ds + " 0.5 " + f.ds2, "LR": "1e-3", "MINLR": "0", "ITERS": "2000", "WARMUP": "0", "MBS": "1", "GBS": "4", "SEQ": "128", "PAD": "128",
			"SAVE": "10", "TP": "2", "PP": "1", "EXTRA": "1"},
		tail: "--bf16 --fp8-hybrid --fp8-amax-compute-algo max --fp8-amax-history-len 1024 --transformer-impl transformer_engine " +
			"--transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full --sequence-parallel " +
			"--group-query-attention --num-query-groups 2 --vocab-size 256",
	}, {
		name: "withGA example: 1.8B TP 2 PP 2 SP", script: qwenLegacyWithGAScript, fixed: qwenLegacyWithGAFixed, size: "1.8B", env: gpus(8),
		launch: dswLaunch(8, "finetune"),
		args:   []string{"dsw", "../../", "1.8B", "1", "96", "1e-5", "1e-6", "2048", "2048", "293", "bf16", "2", "2", "sel", "true", "false", "true", "false", "100000", f.json, f.json, qwen18, "1000", "10", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-1.8B-lr-1e-5-bs-1-seqlen-2048-pr-bf16-tp-2-pp-2-ac-sel-do-true-sp-true-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "990", "WARMUP": "10", "ITERS": "1000", "MBS": "1", "GBS": "96",
			"SEQ": "2048", "PAD": "2048", "SAVE": "100000", "TP": "2", "PP": "2", "EXTRA": "293"},
		tail: "--bf16 --load " + qwen18 + " --recompute-activations --use-distributed-optimizer --sequence-parallel",
	}, {
		name: "withGA full recompute: every layer (--recompute-num-layers NUM_LAYERS)", script: qwenLegacyWithGAScript, fixed: qwenLegacyWithGAFixed, size: "1.8B", env: gpus(4),
		launch: dswLaunch(4, "finetune"),
		args:   []string{"dsw", "x", "1.8B", "2", "8", "1e-5", "1e-6", "1024", "1024", "293", "fp16", "1", "1", "full", "false", "false", "false", "true", "50", f.json, f.json, "none", "20", "0", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-1.8B-lr-1e-5-bs-2-seqlen-1024-pr-fp16-tp-1-pp-1-ac-full-do-false-sp-false-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "20", "WARMUP": "0", "ITERS": "20", "MBS": "2", "GBS": "8",
			"SEQ": "1024", "PAD": "1024", "SAVE": "50", "TP": "1", "PP": "1", "EXTRA": "293"},
		tail: "--fp16 --transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full --recompute-num-layers 24",
	}, {
		name: "epoch finetune example (Pai's 80/81 lengths): --load twice", script: qwenLegacyFinetuneScript, fixed: qwenLegacyFinetuneFixed, size: "7B", env: gpus(1),
		launch: dswLaunch(1, "finetune"),
		args:   []string{"dsw", "/workspace/Pai-Megatron-Patch", "7B", "1", "1e-5", "1e-6", "80", "81", "0", "bf16", "1", "1", "sel", "true", "true", "true", "false", f.json, f.json, f.ck7, "2", f.out},
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama-7B-lr-1e-5-ep-2-bs-1-seqlen-80-pr-bf16--do-true-tp-1-ac-sel-sp-true",
			"CK": f.ck7, "TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "EPOCH": "2", "MBS": "1", "SEQ": "80", "PAD": "81",
			"TP": "1", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer --use-flash-attn",
	}, {
		name: "epoch finetune from none: --load none, no load option", script: qwenLegacyFinetuneScript, fixed: qwenLegacyFinetuneFixed, size: "tiny", env: gpus(2),
		launch: dswLaunch(2, "finetune"),
		args:   []string{"dsw", "x", "tiny", "2", "1e-4", "0", "64", "64", "3", "fp16", "2", "1", "none", "false", "false", "true", "true", f.json, f.json, "none", "1", f.out},
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama-tiny-lr-1e-4-ep-1-bs-2-seqlen-64-pr-fp16--do-false-tp-2-ac-none-sp-true",
			"CK": "none", "TRAIN": f.json, "VALID": f.json, "LR": "1e-4", "MINLR": "0", "EPOCH": "1", "MBS": "2", "SEQ": "64", "PAD": "64",
			"TP": "2", "PP": "1", "EXTRA": "3"},
		tail: "--fp16 --transformer-impl transformer_engine --sequence-parallel --group-query-attention --num-query-groups 2 --vocab-size 256",
	}})
}

// TestQwen15EvaluateDryRun: Pai's Qwen1.5 evaluation and generation scripts.
func TestQwen15EvaluateDryRun(t *testing.T) {
	f, qwen05, qwen18, _ := v2MoreFixture(t)
	outFile := filepath.Join(f.dir, "cn_output.txt")
	runDryCases(t, f, []dryCase{{
		name: "legacy example: 7B TP 4 SP", script: qwenEvaluateScript, fixed: qwenEvaluateFixed, size: "7B", env: gpus(4),
		launch: dswLaunch(4, "evaluate-raw"),
		args:   []string{"dsw", "../../", "7B", "1", "1024", "1024", "293", "bf16", "4", "1", "sel", "true", "false", "true", "false", f.json, f.ck7},
		vals:   map[string]string{"DATA": f.json, "MBS": "1", "SEQ": "1024", "PAD": "1024", "EXTRA": "293", "TP": "4", "PP": "1"},
		tail:   "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer --sequence-parallel",
	}, {
		name: "legacy 32B GQA, no checkpoint, dlc", script: qwenEvaluateScript, fixed: qwenEvaluateFixed, size: "32B",
		env:    map[string]string{"WORLD_SIZE": "2", "RANK": "1", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "23456"},
		launch: "golaunch --nproc_per_node 8 --nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port PORT evaluate-raw ", // the port: PORT after normalize
		args:   []string{"dlc", "x", "32B", "2", "4096", "4096", "421", "fp16", "8", "2", "none", "false", "false", "false", "false", f.json, "none"},
		vals:   map[string]string{"DATA": f.json, "MBS": "2", "SEQ": "4096", "PAD": "4096", "EXTRA": "421", "TP": "8", "PP": "2"},
		tail:   "--fp16 --group-query-attention --num-query-groups 8",
	}, {
		name: "mcore example: 0.5B", script: qwenMcoreEvaluateScript, fixed: qwenMcoreEvaluateFixed, size: "0.5B", env: gpus(1),
		launch: dswLaunch(1, "evaluate-raw"),
		args:   []string{"dsw", "../..", "0.5B", "1", "2048", "2048", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", f.json, qwen05},
		vals:   map[string]string{"DATA": f.json, "MBS": "1", "SEQ": "2048", "PAD": "2048", "EXTRA": "293", "TP": "1", "PP": "1"},
		tail:   "--bf16 --load " + qwen05 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name: "mcore fp16 adds --apply-query-key-layer-scaling; TE, full recompute", script: qwenMcoreEvaluateScript, fixed: qwenMcoreEvaluateFixed, size: "1.8B", env: gpus(2),
		launch: dswLaunch(2, "evaluate-raw"),
		args:   []string{"dsw", "x", "1.8B", "4", "512", "512", "293", "fp16", "2", "1", "full", "false", "true", "false", "true", f.json, qwen18},
		vals:   map[string]string{"DATA": f.json, "MBS": "4", "SEQ": "512", "PAD": "512", "EXTRA": "293", "TP": "2", "PP": "1"},
		tail: "--fp16 --apply-query-key-layer-scaling --load " + qwen18 + " --transformer-impl transformer_engine " +
			"--recompute-method uniform --recompute-granularity full --use-flash-attn",
	}, {
		name: "generation example: 1.8B TP 2, one process per TP rank", script: qwenGenerateScript, fixed: qwenGenerateFixed, size: "1.8B",
		launch: dswLaunch(2, "generate"),
		args:   []string{"dsw", "../../", qwen18, "1.8B", "2", "1", "1024", "80", "0", "fp16", "0", "512", "512", f.jsonl, outFile, "0.85", "1", "1"},
		vals: map[string]string{"BS": "1", "SEQ": "1024", "TP": "2", "TOPP": "0.85", "TEMP": "1", "TOPK": "0", "IN": "512", "OUTLEN": "512",
			"EXTRA": "0", "PAD": "80", "PEN": "1"},
		tail: "--load " + qwen18 + " --text-generate-output-file " + outFile + " --text-generate-input-file " + f.jsonl + " --fp16",
	}, {
		name: "generation 32B GQA TP 8, greedy, no input file", script: qwenGenerateScript, fixed: qwenGenerateFixed, size: "32B",
		launch: dswLaunch(8, "generate"),
		args:   []string{"dlc", "x", "none", "32B", "8", "2", "2048", "2048", "421", "bf16", "1", "1", "128", "none", "none", "0", "1.0", "1.2"},
		vals: map[string]string{"BS": "2", "SEQ": "2048", "TP": "8", "TOPP": "0", "TEMP": "1.0", "TOPK": "1", "IN": "1", "OUTLEN": "128",
			"EXTRA": "421", "PAD": "2048", "PEN": "1.2"},
		tail: "--bf16 --group-query-attention --num-query-groups 8",
	}})
}

// TestMistralLegacyDryRun: Pai's legacy Mistral training scripts.
func TestMistralLegacyDryRun(t *testing.T) {
	f, _, _, mistral7 := v2MoreFixture(t)
	gqa := " --group-query-attention --num-query-groups 8"
	runDryCases(t, f, []dryCase{{
		name: "pretrain example: 7B TP 4", script: mistralLegacyPretrainScript, fixed: mistralLegacyPretrainFixed, size: "mistral7B", env: gpus(8),
		launch: dswLaunch(8, "pretrain"),
		args:   []string{"dsw", "../..", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "sel", "true", "false", "false", "false", "10000", f.ds, mistral7, "100000000", "10000", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "PAD": "128",
			"SAVE": "10000", "TP": "4", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + mistral7 + " --recompute-activations --use-distributed-optimizer" + gqa,
	}, {
		name: "pretrain full recompute (no --recompute-num-layers in the legacy script), fp16 (no query-key scaling)", script: mistralLegacyPretrainScript,
		fixed: mistralLegacyPretrainFixed, size: "tiny", env: gpus(1), launch: dswLaunch(1, "pretrain"),
		args: []string{"dsw", "x", "tiny", "1", "2", "1e-3", "1e-4", "64", "64", "0", "fp16", "1", "1", "full", "false", "false", "false", "false", "5", f.ds, "none", "12800", "128", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-tiny-lr-1e-3-bs-1-seqlen-64-pr-fp16-tp-1-pp-1-ac-full-do-false-sp-false-tt-12800-wt-128",
			"DATA": f.ds, "LR": "1e-3", "MINLR": "1e-4", "ITERS": "100", "WARMUP": "1", "MBS": "1", "GBS": "2", "SEQ": "64", "PAD": "64",
			"SAVE": "5", "TP": "1", "PP": "1", "EXTRA": "0"},
		tail: "--fp16 --recompute-method uniform --recompute-granularity full --group-query-attention --num-query-groups 2 --vocab-size 256",
	}, {
		name: "withGA 7B TP 4, decay = 1000 - 10", script: mistralLegacyWithGAScript, fixed: mistralLegacyWithGAFixed, size: "mistral7B", env: gpus(8),
		launch: dswLaunch(8, "finetune"),
		args:   []string{"dsw", "../..", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "sel", "true", "false", "true", "true", "100000", f.json, f.json, mistral7, "1000", "10", f.out},
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-4-pp-1-ac-sel-do-true-sp-true-tt--wt-",
			"TRAIN": f.json, "VALID": f.json, "LR": "1e-5", "MINLR": "1e-6", "DECAY": "990", "WARMUP": "10", "ITERS": "1000", "MBS": "1", "GBS": "8",
			"SEQ": "128", "PAD": "128", "SAVE": "100000", "TP": "4", "PP": "1", "EXTRA": "0"},
		tail: "--bf16 --load " + mistral7 + " --transformer-impl transformer_engine --recompute-activations --use-distributed-optimizer --sequence-parallel" + gqa,
	}})
}

// TestMistralEvaluateDryRun: Pai's Mistral evaluation scripts.
func TestMistralEvaluateDryRun(t *testing.T) {
	f, _, _, mistral7 := v2MoreFixture(t)
	gqa := " --group-query-attention --num-query-groups 8"
	runDryCases(t, f, []dryCase{{
		name: "legacy example: 7B TP 2 SP", script: mistralEvaluateScript, fixed: mistralEvaluateFixed, size: "mistral7B", env: gpus(2),
		launch: dswLaunch(2, "evaluate-raw"),
		args:   []string{"dsw", "../..", "7B", "1", "81", "81", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", f.json, mistral7},
		vals:   map[string]string{"DATA": f.json, "MBS": "1", "SEQ": "81", "PAD": "81", "EXTRA": "0", "TP": "2", "PP": "1"},
		tail:   "--bf16 --load " + mistral7 + " --recompute-activations --use-distributed-optimizer --sequence-parallel" + gqa,
	}, {
		name: "mcore example: 0.125B TP 2 on 8 GPUs, EP 4", script: mistralMcoreEvaluateScript, fixed: mistralMcoreEvaluateFixed, size: "0.125B", env: gpus(8),
		launch: dswLaunch(8, "evaluate-raw"),
		args:   []string{"dsw", "../..", "0.125B", "1", "81", "81", "0", "bf16", "2", "1", "sel", "false", "false", "true", "false", f.json, f.ckMeg},
		vals:   map[string]string{"DATA": f.json, "MBS": "1", "SEQ": "81", "PAD": "81", "EXTRA": "0", "TP": "2", "PP": "1", "EP": "4"},
		tail:   "--bf16 --load " + f.ckMeg + " --recompute-activations --sequence-parallel" + gqa,
	}, {
		name: "mcore 7B fp16 full recompute, EP 8", script: mistralMcoreEvaluateScript, fixed: mistralMcoreEvaluateFixed, size: "mistral7B", env: gpus(8),
		launch: dswLaunch(8, "evaluate-raw"),
		args:   []string{"dsw", "x", "7B", "2", "128", "128", "0", "fp16", "1", "1", "full", "true", "true", "false", "true", f.json, "none"},
		vals:   map[string]string{"DATA": f.json, "MBS": "2", "SEQ": "128", "PAD": "128", "EXTRA": "0", "TP": "1", "PP": "1", "EP": "8"},
		tail: "--fp16 --apply-query-key-layer-scaling --transformer-impl transformer_engine --recompute-num-layers 1 --recompute-method uniform " +
			"--recompute-granularity full --use-distributed-optimizer --use-flash-attn" + gqa,
	}})
	// The Hugging Face evaluation: one process on dsw, Pai's flags, then pr and load.
	for _, tc := range []struct {
		name, size, ck string
		shape          map[string]string
	}{
		{"example: Mistral-7B", "7B", mistral7, shape["mistral7B"]},
		{"Pai's Llama-2 13B", "13B", f.ck13, shape["13B"]},
	} {
		t.Run("huggingface "+tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", mistralHFEvaluateScript, nil, "dsw", "../..", tc.size, "1", "80", "80", "0", "bf16", f.json, tc.ck)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			want := dswLaunch(1, "evaluate-raw") + fill("--transformer-type huggingface --valid-data-path {DATA} --micro-batch-size 1 "+
				"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --seq-length 80 --max-position-embeddings 80 --log-interval 1 "+
				"--eval-interval 100 --eval-iters 10 --tensor-model-parallel-size 1 --pipeline-model-parallel-size 1 --no-load-optim "+
				"--num-workers 0 --dataset LLama-SFT --use-distributed-optimizer --max-padding-length 80 --extra-vocab-size 0 "+
				"--patch-tokenizer-type MistralTokenizer --bf16 --load {CK}", merge(tc.shape, map[string]string{"DATA": f.json, "CK": tc.ck}))
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), true))
		})
	}
}

// TestV2MoreBadInput: wrong arguments stop each script with a message naming them.
func TestV2MoreBadInput(t *testing.T) {
	f, qwen05, _, mistral7 := v2MoreFixture(t)
	missing := filepath.Join(f.dir, "alpaca_zh-qwen-train.json")
	qwenPT := []string{"dsw", "x", "0.5B", "1", "8", "1e-5", "1e-6", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", "100", f.ds, qwen05, "1024000", "0", f.out}
	qwenGA := []string{"dsw", "x", "0.5B", "1", "8", "1e-5", "1e-6", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", "100", f.json, f.json, qwen05, "100", "10", f.out}
	qwenFT := []string{"dsw", "x", "0.5B", "1", "1e-5", "1e-6", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", f.json, f.json, qwen05, "2", f.out}
	qwenEV := []string{"dsw", "x", "0.5B", "1", "128", "128", "293", "bf16", "1", "1", "sel", "true", "false", "false", "false", f.json, qwen05}
	qwenGen := []string{"dsw", "x", qwen05, "0.5B", "1", "1", "1024", "80", "293", "fp16", "0", "512", "512", f.jsonl, filepath.Join(f.dir, "out.txt"), "0.85", "1", "1"}
	misPT := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "sel", "true", "false", "false", "false", "100", f.ds, mistral7, "1024000", "0", f.out}
	misGA := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "4", "1", "sel", "true", "false", "false", "false", "100", f.json, f.json, mistral7, "100", "10", f.out}
	misEV := []string{"dsw", "x", "7B", "1", "81", "81", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", f.json, mistral7}
	misHF := []string{"dsw", "x", "7B", "1", "80", "80", "0", "bf16", f.json, mistral7}
	env := gpus(8)
	for script, base := range map[string][]string{qwenLegacyPretrainScript: qwenPT, qwenLegacyWithGAScript: qwenGA, qwenLegacyFinetuneScript: qwenFT,
		qwenEvaluateScript: qwenEV, qwenMcoreEvaluateScript: qwenEV, qwenGenerateScript: qwenGen, mistralLegacyPretrainScript: misPT,
		mistralLegacyWithGAScript: misGA, mistralEvaluateScript: misEV, mistralMcoreEvaluateScript: misEV, mistralHFEvaluateScript: misHF} {
		_, stderr, code := run(t, f, "bash", script, env, base...)
		require.Equal(t, 0, code, "%s: the base arguments must be valid: %s", script, stderr)
	}
	checkBad(t, f, qwenLegacyPretrainScript, qwenPT, env, []badCase{
		{"MoE size", map[int]string{3: "A2.7B"}, nil, "MODEL_SIZE (arg 3): A2.7B is Qwen1.5-MoE"},
		{"Llama-2 size", map[int]string{3: "13B"}, nil, "MODEL_SIZE (arg 3): '13B' is not one of: 0.5B 1.8B 4B 7B 14B 32B 72B tiny small"},
		{"no iterations", map[int]string{22: "1000"}, nil, "TRAIN_TOKENS (arg 22): 1000 / GLOBAL_BATCH_SIZE 8 / SEQ_LEN 128 gives 0 training iterations"},
		{"data missing", map[int]string{20: f.ds + "x"}, nil, "DATASET_PATH (arg 20): " + f.ds + "x.bin not found"},
		{"TP does not divide heads", map[int]string{12: "3"}, nil, "TP (arg 12): 3 does not divide the 16 attention heads of MODEL_SIZE 0.5B"},
		{"Llama-2 7B checkpoint for 0.5B", map[int]string{21: f.ck7}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + f.ck7 + "/config.json has num_hidden_layers 32, but MODEL_SIZE (arg 3) 0.5B has 24"},
	})
	checkBad(t, f, qwenLegacyWithGAScript, qwenGA, env, []badCase{
		{"valid data missing", map[int]string{21: missing}, nil, "VALID_DATASET_PATH (arg 21): " + missing + " not found"},
		{"warmup leaves no decay", map[int]string{24: "100"}, nil, "WARMUP_ITERS (arg 24): 100 leaves no decay iterations"},
		{"GBS by MBS × DP", map[int]string{5: "12"}, nil, "GLOBAL_BATCH_SIZE (arg 5): 12 is not a multiple of BATCH_SIZE (arg 4) 1 × data-parallel size 8"},
	})
	checkBad(t, f, qwenLegacyFinetuneScript, qwenFT, env, []badCase{
		{"train data missing", map[int]string{18: missing}, nil, "TRAIN_DATASET_PATH (arg 18): " + missing + " not found"},
		{"EPOCH", map[int]string{21: "0"}, nil, "EPOCH (arg 21): '0' is not a positive integer"},
		{"PP does not divide layers", map[int]string{12: "5"}, nil, "PP (arg 12): 5 does not divide the 24 layers of MODEL_SIZE 0.5B"},
	})
	checkBad(t, f, qwenEvaluateScript, qwenEV, env, []badCase{
		{"data is a prefix", map[int]string{16: f.ds}, nil, "DATASET_PATH (arg 16): " + f.ds + " is a .bin/.idx dataset; Pai's evaluation reads a raw JSON file (LLama-Pretrain-Raw)"},
		{"AC", map[int]string{11: "selective"}, nil, "AC (arg 11): 'selective' is not one of: full sel none"},
	})
	checkBad(t, f, qwenMcoreEvaluateScript, qwenEV, env, []badCase{
		{"32B: not in Pai's mcore evaluation", map[int]string{3: "32B"}, nil, "MODEL_SIZE (arg 3): '32B' is not one of: 0.5B 1.8B 4B 7B 14B 72B tiny small"},
		{"checkpoint missing", map[int]string{17: missing}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 17): " + missing + " not found (pass none to evaluate a random model)"},
	})
	checkBad(t, f, qwenGenerateScript, qwenGen, nil, []badCase{
		{"TOP_K and TOP_P", map[int]string{11: "5"}, nil, "TOP_K (arg 11) 5 and TOP_P (arg 16) 0.85: one of them must be 0"},
		{"TP does not divide 72B's heads", map[int]string{3: "none", 4: "72B", 5: "3"}, nil, "TP (arg 5): 3 does not divide the 64 attention heads of MODEL_SIZE 72B"},
		{"input missing", map[int]string{14: missing}, nil, "INPUT_FILE (arg 14): " + missing + " not found"},
	})
	checkBad(t, f, mistralLegacyPretrainScript, misPT, env, []badCase{
		{"Llama-2 size", map[int]string{3: "13B"}, nil, "MODEL_SIZE (arg 3): '13B' is not one of: 7B tiny small"},
		{"Llama-2 checkpoint for 7B", map[int]string{21: f.ck7}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + f.ck7 + "/config.json has intermediate_size 11008, but MODEL_SIZE (arg 3) 7B has 14336"},
		{"TP does not divide the query groups", map[int]string{12: "16", 5: "16"}, gpus(16), "TP (arg 12): 16 does not divide the 8 query groups of MODEL_SIZE 7B"},
	})
	checkBad(t, f, mistralLegacyWithGAScript, misGA, env, []badCase{
		{"train data missing", map[int]string{20: missing}, nil, "DATASET_PATH (arg 20): " + missing + " not found"},
		{"TRAIN_ITERS", map[int]string{23: "1e3"}, nil, "TRAIN_ITERS (arg 23): '1e3' is not a positive integer"},
	})
	checkBad(t, f, mistralEvaluateScript, misEV, env, []badCase{
		{"data is a prefix", map[int]string{16: f.ds}, nil, "DATASET_PATH (arg 16): " + f.ds + " is a .bin/.idx dataset; Pai's evaluation reads a raw JSON file (LLama-SFT)"},
		{"0.125B is the mcore script's", map[int]string{3: "0.125B"}, nil, "MODEL_SIZE (arg 3): '0.125B' is not one of: 7B tiny small"},
	})
	checkBad(t, f, mistralMcoreEvaluateScript, misEV, env, []badCase{
		{"EP does not divide the 8 experts", nil, gpus(6), "TP (arg 9) 2 × PP (arg 10) 1 on 1 × 6 processes gives data-parallel size 3, Pai's --expert-model-parallel-size, which does not divide the 8 experts"},
		{"a size Pai's script lacks", map[int]string{3: "8x7B"}, nil, "MODEL_SIZE (arg 3): '8x7B' is not one of: 0.125B 7B tiny small"},
		{"7B checkpoint for 0.125B", map[int]string{3: "0.125B"}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 17): " + mistral7 + "/config.json has num_hidden_layers 32, but MODEL_SIZE (arg 3) 0.125B has 2"},
	})
	checkBad(t, f, mistralHFEvaluateScript, misHF, nil, []badCase{
		{"a Megatron checkpoint", map[int]string{10: f.ckMeg}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 10): " + f.ckMeg + " has no config.json"},
		{"Llama-2's 13B with a Mistral folder", map[int]string{3: "13B"}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 10): " + mistral7 + "/config.json has num_hidden_layers 32, but MODEL_SIZE (arg 3) 13B has 40"},
		{"fp8", map[int]string{8: "fp8"}, nil, "PR (arg 8): 'fp8' is not one of: fp16 bf16"},
		{"size", map[int]string{3: "0.125B"}, nil, "MODEL_SIZE (arg 3): '0.125B' is not one of: 7B 13B 70B tiny small"},
	})
}

// TestV2MoreUsage: a wrong argument count prints the usage, which names every argument on
// its numbered line.
func TestV2MoreUsage(t *testing.T) {
	f := newFixture(t)
	pretrain := strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH")
	withGA := strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH")
	finetune := strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE TRAIN_DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH EPOCH OUTPUT_BASEPATH")
	evaluate := strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE DATASET_PATH PRETRAIN_CHECKPOINT_PATH")
	hf := strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR DATASET_PATH PRETRAIN_CHECKPOINT_PATH")
	generate := strings.Fields("ENV MEGATRON_PATCH_PATH CHECKPOINT_PATH MODEL_SIZE TP BS SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TOP_K INPUT_SEQ_LEN OUTPUT_SEQ_LEN INPUT_FILE OUTPUT_FILE TOP_P TEMPERATURE REPETITION_PENALTY")
	for script, names := range map[string][]string{
		qwenLegacyPretrainScript: pretrain, qwenLegacyWithGAScript: withGA, qwenLegacyFinetuneScript: finetune,
		qwenEvaluateScript: evaluate, qwenMcoreEvaluateScript: evaluate, qwenGenerateScript: generate,
		mistralLegacyPretrainScript: pretrain, mistralLegacyWithGAScript: withGA,
		mistralEvaluateScript: evaluate, mistralMcoreEvaluateScript: evaluate, mistralHFEvaluateScript: hf,
	} {
		for _, n := range []int{0, len(names) - 1, len(names) + 1} {
			t.Run(script+"/"+strconv.Itoa(n), func(t *testing.T) {
				stdout, stderr, code := run(t, f, "bash", script, nil, make([]string, n)...)
				assert.Equal(t, 2, code)
				assert.Empty(t, stdout)
				assert.Contains(t, stderr, filepath.Base(script)+": expected "+strconv.Itoa(len(names))+" arguments, got "+strconv.Itoa(n))
				assert.Contains(t, stderr, "usage: "+filepath.Base(script)+" "+strings.Join(names, " ")+"\n")
				for i, name := range names {
					assert.Regexp(t, regexp.MustCompile(`(?m)^ +`+strconv.Itoa(i+1)+` `+name+` `), stderr, "argument %d", i+1)
				}
				assert.Contains(t, stderr, "ignored")
				assert.Contains(t, stderr, "example: "+filepath.Base(script)+" ")
			})
		}
	}
}

// TestV2MoreRunWithSh: `sh script.sh`, as Pai's docs write it, prints the same command.
func TestV2MoreRunWithSh(t *testing.T) {
	f, _, _, mistral7 := v2MoreFixture(t)
	for script, args := range map[string][]string{
		qwenLegacyPretrainScript: {"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "293", "bf16", "1", "1", "sel", "true", "true", "true", "false", "100000", f.ds, f.ck7, "10000000000", "100000000", f.out},
		mistralEvaluateScript:    {"dsw", "x", "7B", "1", "81", "81", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", f.json, mistral7},
	} {
		viaBash, _, code := run(t, f, "bash", script, gpus(8), args...)
		require.Equal(t, 0, code)
		viaSh, stderr, code := run(t, f, "sh", script, gpus(8), args...)
		require.Equal(t, 0, code, "stderr: %s", stderr)
		assert.Equal(t, normalize(t, viaBash, true), normalize(t, viaSh, true), script)
	}
}

// TestQwen15LegacyRealRun runs Pai's legacy Qwen1.5 scripts with the real golaunch on the
// tiny model: the pretraining script's command from scratch with --save (the tokenizer given
// directly), then the script itself resuming from that checkpoint, and the evaluation,
// generation and withGA fine-tuning scripts on it (Qwen's legacy flags throughout: linear
// biases, RoPE base 1e6, --rotary-scale-factor 1).
func TestQwen15LegacyRealRun(t *testing.T) {
	f, _, ck, env, args := legacyPretrainCheckpoint(t, qwenLegacyPretrainScript)
	env["DRY_RUN"] = "0"
	stdout := runReal(t, f, qwenLegacyPretrainScript, env, args(ck, 5120)...)
	require.Contains(t, stdout, "--rotary-base 1000000 --rotary-scale-factor 1")
	require.Contains(t, stdout, "successfully loaded checkpoint from "+ck)
	require.Contains(t, stdout, "iteration       20/      20")
	require.Contains(t, stdout, "successfully saved checkpoint from iteration      20")
	logs, err := filepath.Glob(filepath.Join(f.out, "log", "dsw-pretrain-megatron-gpt3-tiny-*.log"))
	require.NoError(t, err)
	require.Len(t, logs, 1)

	var recs []string
	for i := range 20 {
		recs = append(recs, `{"instruction": "Add `+strconv.Itoa(i%9)+` and 2.", "input": "", "output": "It is `+strconv.Itoa(i%9+2)+`."}`)
	}
	sft := filepath.Join(f.dir, "alpaca.json")
	writeFile(t, sft, "["+strings.Join(recs, ",")+"]")
	stdout = runReal(t, f, qwenEvaluateScript, env, "dsw", "x", "tiny", "4", "96", "96", "0", "bf16", "1", "1", "sel", "false", "false", "false", "false", sft, ck)
	require.Contains(t, stdout, "total number of samples: 20")
	require.Regexp(t, `iteration +5/ +5 \| lm loss \(per data-parallel rank\): \S+ \|`, stdout)
	require.Contains(t, stdout, "done :-)")

	genOut := filepath.Join(f.dir, "gen", "out.txt")
	stdout = runReal(t, f, qwenGenerateScript, env, "dsw", "x", ck, "tiny", "1", "1", "128", "128", "0", "bf16", "1", "8", "8", f.jsonl, genOut, "0", "1", "1")
	require.Contains(t, stdout, "generate --micro-batch-size 1")
	lines := readLines(t, genOut)
	require.Len(t, lines, 1)
	require.True(t, strings.HasPrefix(lines[0], "<s> hello"), lines[0])

	// No --finetune: the run goes on from the checkpoint's iteration 10 to TRAIN_ITERS.
	stdout = runReal(t, f, qwenLegacyWithGAScript, env, "dsw", "x", "tiny", "1", "2", "1e-3", "1e-4", "96", "96", "0", "bf16", "1", "1", "full",
		"false", "false", "false", "false", "100", sft, sft, ck, "12", "1", f.out)
	require.Contains(t, stdout, "--recompute-num-layers 2")
	require.Contains(t, stdout, "successfully loaded checkpoint from "+ck)
	require.Contains(t, stdout, "iteration       12/      12")
}
