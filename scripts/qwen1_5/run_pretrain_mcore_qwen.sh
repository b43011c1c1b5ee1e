#!/bin/bash
# Continued pretraining of a Qwen1.5 model with gomegatron: Pai-Megatron-Patch's
# examples/qwen1_5/run_pretrain_mcore_qwen.sh (v2 Megatron-Core, 25 arguments, commit
# 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … pretrain_qwen.py`. See scripts/README.md.
#
# bash run_pretrain_mcore_qwen.sh dsw ../../ 0.5B 1 8 1e-5 1e-6 128 128 293 bf16 1 1 sel true false false false false 100000 /mnt/qwen-datasets/wudao_qwenbpe_text_document /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp1-pp1 100000000 10000 /mnt/output_mcore_qwen
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Qwen1.5 model (Megatron-Core layout) with \`golaunch … pretrain\`" \
	"dsw ../../ 0.5B 1 8 1e-5 1e-6 128 128 293 bf16 1 1 sel true false false false false 100000 /mnt/qwen-datasets/wudao_qwenbpe_text_document /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp1-pp1 100000000 10000 /mnt/output_mcore_qwen" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (--max-position-embeddings is 32768)" \
	"PAD_LEN=--max-padding-length (used by raw JSON data only)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)" \
	"PR=fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8" \
	TP PP AC DO FL SP \
	"TE=true | false (--transformer-impl transformer_engine | local)" \
	MOE SAVE_INTERVAL \
	"DATASET_PATH=--data-path: a .bin/.idx prefix (or a blend), split 99,1,0" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size 1 --moe-router-load-balancing-type aux_loss"
pai_token_run_args 20 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$TE" = false ] && te_options=(--transformer-impl local) # Pai's Qwen1.5 scripts say so

NAME="pretrain-mcore-qwen-${MODEL_SIZE}-lr-${LR}-minlr-${MIN_LR}-bs-${BATCH_SIZE}-gbs-${GLOBAL_BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-moe-${MOE}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options cosine 0.008 --attention-dropout 0.0 --hidden-dropout 0.0 # pai_optim_wd_first_options, pai_shape_options
pai_llama_arch --norm-epsilon 1e-06 --use-rotary-position-embeddings --no-rope-fusion # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--data-path "${dataset_paths[@]}"
	"${pai_optim_wd_first_options[@]}" # --lr … --hidden-dropout 0.0, --lr-decay-iters … --train-iters
	--split 99,1,0
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 8
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type Qwen2Tokenizer
	--dataset LLama-Pretrain-Idxmap
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
	--add-qkv-bias
	--use-mcore-models
	--rotary-percent 1.0
	--rotary-base 1000000
	--rotary-seq-len-interpolation-factor 1
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
