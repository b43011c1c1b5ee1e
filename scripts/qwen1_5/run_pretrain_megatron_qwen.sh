#!/bin/bash
# Continued pretraining of a Qwen1.5 model (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_pretrain_megatron_qwen.sh (v2, 24 arguments,
# commit 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … ../llama2/pretrain_megatron_llama.py`. See
# scripts/README.md.
#
# bash run_pretrain_megatron_qwen.sh dsw ../../ 7B 1 8 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false 100000 /mnt/qwen-datasets/wudao_llamabpe_text_document /mnt/qwen-ckpts/Qwen-2-7b-hf-to-mg-tp1-pp1/ 10000000000 100000000 /mnt/output_patch_test
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Qwen1.5 model (Megatron legacy model) with \`golaunch … pretrain\`" \
	"dsw ../../ 7B 1 8 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false 100000 /mnt/qwen-datasets/wudao_llamabpe_text_document /mnt/qwen-ckpts/Qwen-2-7b-hf-to-mg-tp1-pp1/ 10000000000 100000000 /mnt/output_patch_test" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length (sample length of idxmap/raw datasets)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)" \
	PR TP PP AC DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a .bin/.idx prefix (Pai's idxmap samples, split 98,2,0) or a raw .json file" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_head_options
pai_train_options linear 0.006 # pai_optim_options, pai_shape_options
pai_llama_arch --use-llama2-rotary-position-embeddings # pai_arch_options

# Pai's legacy Qwen1.5 script runs Llama-2's entry point with Llama-2's flags: linear biases
# (no --disable-bias-linear), Megatron's dropout, LLamaTokenizer; RoPE base 1e6.
megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--split 98,2,0
	--train-data-path "${dataset_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --init-method-std 0.006, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${SEQ_LEN}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_head_options[@]}" # --log-interval 1 … --pipeline-model-parallel-size, in Pai's order
	--dataset LLama-Pretrain-Idxmap
	--no-load-optim
	--no-load-rng
	--num-workers 8
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--rotary-base 1000000
	--rotary-scale-factor 1
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
