#!/bin/bash
# Continued pretraining of a Mistral model with gomegatron: Pai-Megatron-Patch's
# examples/mistral/run_pretrain_mcore_mistral.sh (v2 Megatron-Core, 25 arguments, commit
# 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … pretrain_mcore_mistral.py`. See
# scripts/README.md.
#
# bash run_pretrain_mcore_mistral.sh dsw ../../ 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false true false false 100000 /mnt/mistral-datasets/wudao_mistralbpe_content_document /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_mistral
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Mistral model (Megatron-Core layout) with \`golaunch … pretrain\`" \
	"dsw ../../ 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false true false false 100000 /mnt/mistral-datasets/wudao_mistralbpe_content_document /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_mistral" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B (GQA, 8 groups, sliding window 4096) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (--max-position-embeddings is 32768)" \
	"PAD_LEN=--max-padding-length (used by raw JSON data only)" \
	EXTRA_VOCAB_SIZE \
	"PR=fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8" \
	TP PP AC DO FL SP \
	"TE=true | false (--transformer-impl transformer_engine; Pai passes it in the fixed options too)" \
	MOE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path and --data-path: a .bin/.idx prefix (or a blend), split 99,1,0" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_mistral_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size 1 --moe-router-load-balancing-type aux_loss"
pai_token_run_args 20 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$AC" = full ] && activation_checkpoint_options=(--recompute-num-layers 1 "${activation_checkpoint_options[@]}")

NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options cosine 0.006 # pai_optim_options, pai_shape_ffn_first_options
pai_mistral_mcore_arch # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${dataset_paths[@]}"
	--data-path "${dataset_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --init-method-std 0.006, --lr-decay-iters … --train-iters
	--split 99,1,0
	"${pai_shape_ffn_first_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	--sliding-window "${SLW}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 0
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type MistralTokenizer
	--dataset LLama-Pretrain-Idxmap
	"${pai_arch_options[@]}" # --swiglu … --no-position-embedding
	--use-mcore-models
	--no-rope-fusion
	--distributed-timeout-minutes 6000
	--transformer-impl transformer_engine
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
