#!/bin/bash
# Continued pretraining of a Baichuan 2 model with gomegatron: Pai-Megatron-Patch's
# examples/baichuan2/run_pretrain_megatron_baichuan.sh (24 arguments) with the same
# arguments, derived values and Megatron flags, launching `golaunch … pretrain` instead of
# `torchrun … pretrain_megatron_baichuan.py`. It adds --use-normhead (Baichuan 2's output
# layer, which Pai's script leaves out; NORMHEAD=0 omits it). See scripts/README.md.
#
# bash run_pretrain_megatron_baichuan.sh dsw /workspace/Pai-Megatron-Patch/ 7B 1 8 1e-5 1e-6 2048 2048 0 bf16 2 1 sel true true true false 100000 /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp2-pp1 100000000 10000 /mnt/output_baichuan2
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
PAI_ENV_HELP="${PAI_ENV_HELP}
NORMHEAD=0 leaves out --use-normhead (for a checkpoint saved without Baichuan 2's NormHead)." \
	pai_set_usage "Pretrain a Baichuan 2 model with \`golaunch … pretrain\`" \
	"dsw /workspace/Pai-Megatron-Patch/ 7B 1 8 1e-5 1e-6 2048 2048 0 bf16 2 1 sel true true true false 100000 /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp2-pp1 100000000 10000 /mnt/output_baichuan2" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B (RoPE) | 13B (ALiBi) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length (sample length of idxmap/raw datasets)" \
	EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a raw .json file (LLama-Pretrain-Raw, split 98,2,0) or a .bin/.idx prefix" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_baichuan2_shape pai_train_args "$@" # ENV … TE, arguments 1-18; baichuan_options
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths
pai_normhead

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-megatron-baichuan-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_head_options
pai_train_options linear 0.006 # pai_optim_options, pai_shape_options
pai_pretrain_231007_options # --save … --extra-vocab-size

# Pai's command: model_options, megatron_options, then ac do pr sp flash load te and
# model_options again (written twice in Pai's run_cmd).
megatron_options=(
	"${baichuan_options[@]}"
	"${pai_pretrain_231007_options[@]}" # --save … --extra-vocab-size, in Pai's order
	--patch-tokenizer-type BaichuanTokenizer
	--dataset LLama-Pretrain-Raw
	--swiglu
	--normalization RMSNorm
	--no-query-key-layer-scaling
	--untie-embeddings-and-output-weights
	--disable-bias-linear
	"${activation_checkpoint_options[@]}" "${do_options[@]}" "${pr_options[@]}" "${sp_options[@]}"
	"${flash_options[@]}" "${load_options[@]}" "${te_options[@]}"
	"${baichuan_options[@]}"
	"${normhead_options[@]}"
)
pr_options=() load_options=() te_options=() activation_checkpoint_options=() do_options=() flash_options=() sp_options=()

pai_train_launch pretrain # DRY_RUN=1 prints the command
