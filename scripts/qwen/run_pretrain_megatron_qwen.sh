#!/bin/bash
# Continued pretraining of a Qwen (1.0) model with gomegatron: Pai-Megatron-Patch's
# examples/qwen/run_pretrain_megatron_qwen.sh (24 arguments) with the same arguments,
# derived values and Megatron flags, launching `golaunch … pretrain` instead of
# `torchrun … pretrain_megatron_qwen.py`. See scripts/README.md.
#
# bash run_pretrain_megatron_qwen.sh dsw ../.. 1.8B 1 8 1e-5 1e-6 2048 2048 85 bf16 1 1 sel true false false false 100000 /mnt/qwen-datasets/wudao_qwenbpe_content_document /mnt/qwen-ckpts/Qwen-1_8B 100000000 10000 /mnt/output_megatron_qwen/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Qwen (1.0) model with \`golaunch … pretrain\`" \
	"dsw ../.. 1.8B 1 8 1e-5 1e-6 2048 2048 85 bf16 1 1 sel true false false false 100000 /mnt/qwen-datasets/wudao_qwenbpe_content_document /mnt/qwen-ckpts/Qwen-1_8B 100000000 10000 /mnt/output_megatron_qwen/" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=1.8B | 7B | 14B | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length (sample length of idxmap datasets)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: rows past QwenTokenizer's 151851 (85 for 1.8B/7B, 213 for 14B)" \
	PR TP PP AC DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a .bin/.idx prefix (Pai's idxmap samples, split 98,2,0)" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen1_shape pai_train_args "$@" # ENV … TE, arguments 1-18; rope_options
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-megatron-qwen-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_head_options
pai_train_options linear 0.006 # pai_optim_options, pai_shape_options
pai_pretrain_231007_options # --save … --extra-vocab-size
pai_qwen1_arch # pai_arch_options

megatron_options=(
	"${pai_pretrain_231007_options[@]}" # --save … --extra-vocab-size, in Pai's order
	--patch-tokenizer-type QwenTokenizer
	--dataset LLama-Pretrain-Idxmap
	"${pai_arch_options[@]}" # --swiglu … --disable-bias-attn-fc
)
gqa_options=("${rope_options[@]}") # Pai's rope_options come last

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
