#!/bin/bash
# Continued pretraining of a Llama-2 model with gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_pretrain_megatron_llama.sh (2023 layout, 24 arguments) with the same
# arguments, derived values and Megatron flags, launching `golaunch … pretrain` instead of
# `torchrun … pretrain_megatron_llama.py`. See scripts/README.md.
#
# bash run_pretrain_megatron_llama.sh dsw /workspace/Pai-Megatron-Patch 7B 1 8 1e-5 1e-6 2048 2048 0 bf16 1 1 sel true true true false 100000 /mnt/llama2-datasets/wudao_llamabpe_text_document /mnt/llama2-ckpts/Llama-2-7b-hf-to-mg-tp1-pp1/ 10000000000 100000000 /mnt/output_patch_test
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Llama-2 model with \`golaunch … pretrain\`" \
	"dsw /workspace/Pai-Megatron-Patch 7B 1 8 1e-5 1e-6 2048 2048 0 bf16 1 1 sel true true true false 100000 /mnt/llama2-datasets/wudao_llamabpe_text_document /mnt/llama2-ckpts/Llama-2-7b-hf-to-mg-tp1-pp1/ 10000000000 100000000 /mnt/output_patch_test" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length (sample length of idxmap/raw datasets)" \
	EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a .bin/.idx prefix or a raw .json file" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
pai_train_args "$@" # ENV … TE, arguments 1-18
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options linear 0.006 # pai_optim_options, pai_shape_options
pai_llama_arch --use-llama2-rotary-position-embeddings # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${dataset_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --init-method-std 0.006, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${SEQ_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 0
	--seed 1234
	--max-padding-length "${PAD_LEN}"
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-Pretrain-Raw
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
