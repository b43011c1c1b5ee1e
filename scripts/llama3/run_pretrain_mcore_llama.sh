#!/bin/bash
# Continued pretraining of a Llama-3 model with gomegatron: Pai-Megatron-Patch's
# examples/llama3/run_pretrain_mcore_llama.sh (v2 Megatron-Core, 25 arguments, commit
# 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … pretrain_llama.py`. See scripts/README.md.
#
# bash run_pretrain_mcore_llama.sh dsw ../../ 8B 1 8 1e-5 1e-6 128 128 256 bf16 4 1 sel true false false false false 100000 /mnt/llama3-datasets/wudao_llama3bpe_content_document /mnt/llama3-ckpts/Meta-Llama-3-8B-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_llama3
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Llama-3 model (Megatron-Core layout) with \`golaunch … pretrain\`" \
	"dsw ../../ 8B 1 8 1e-5 1e-6 128 128 256 bf16 4 1 sel true false false false false 100000 /mnt/llama3-datasets/wudao_llama3bpe_content_document /mnt/llama3-ckpts/Meta-Llama-3-8B-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_llama3" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=8B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (--max-position-embeddings is 8192)" \
	"PAD_LEN=--max-padding-length (used by raw JSON data only)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 256 for Llama-3 (its added special tokens)" \
	"PR=fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8" \
	TP PP AC DO FL SP \
	"TE=true | false (--transformer-impl transformer_engine | local)" \
	MOE SAVE_INTERVAL \
	"DATASET_PATH=--data-path: a .bin/.idx prefix (or a blend), split 99,1,0" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_llama3_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size 1 --moe-router-load-balancing-type aux_loss"
pai_token_run_args 20 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths
MAX_POSITION_EMBEDDINGS=8192

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$TE" = false ] && te_options=(--transformer-impl local) # Pai's Llama-3 scripts say so

NAME="pretrain-mcore-llama3-${MODEL_SIZE}-lr-${LR}-minlr-${MIN_LR}-bs-${BATCH_SIZE}-gbs-${GLOBAL_BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-moe-${MOE}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options cosine 0.008 --attention-dropout 0.0 --hidden-dropout 0.0 # pai_optim_wd_first_options, pai_shape_options
pai_llama_arch --norm-epsilon 1e-05 --use-rotary-position-embeddings --no-rope-fusion # pai_arch_options

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
	--patch-tokenizer-type LLama3Tokenizer
	--dataset LLama-Pretrain-Idxmap
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
	--use-mcore-models
	--rotary-base 500000
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
