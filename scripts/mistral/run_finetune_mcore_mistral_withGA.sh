#!/bin/bash
# Supervised fine-tuning with a global batch (gradient accumulation) of a Mistral model in
# the Megatron-Core layout with gomegatron: Pai-Megatron-Patch's
# examples/mistral/run_finetune_mcore_mistral_withGA.sh (v2, 26 arguments, commit 7097866)
# with the same arguments and Megatron flags, launching `golaunch … finetune`
# (iteration-based: --train-iters) instead of `torchrun … pretrain_mcore_mistral.py`. See
# scripts/README.md.
#
# bash run_finetune_mcore_mistral_withGA.sh dsw ../../ 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false true false false 100000 /mnt/mistral-datasets/alpaca_zh-mistral-train.json /mnt/mistral-datasets/alpaca_zh-mistral-valid.json /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_mistral
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Mistral model (Megatron-Core layout) for TRAIN_ITERS global batches with \`golaunch … finetune\`" \
	"dsw ../../ 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false true false false 100000 /mnt/mistral-datasets/alpaca_zh-mistral-train.json /mnt/mistral-datasets/alpaca_zh-mistral-valid.json /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mcore-tp4-pp1 100000000 10000 /mnt/output_mcore_mistral" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (the samples' length is PAD_LEN)" \
	"PAD_LEN=--max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)" \
	EXTRA_VOCAB_SIZE \
	"PR=fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8" \
	TP PP AC DO FL SP TE MOE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a JSON list of {instruction, input, output}" \
	VALID_DATASET_PATH \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint), or none" \
	TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

pai_nargs 26 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_mistral_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size 1 --moe-router-load-balancing-type aux_loss"
pai_iter_run_args 20 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS, train_paths, valid_paths

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$AC" = full ] && activation_checkpoint_options=(--recompute-num-layers 1 "${activation_checkpoint_options[@]}")
EP=$((GPUS_PER_NODE * NNODES / TP / PP)) # Pai passes the data-parallel size, which a dense model ignores

# Pai's name: it reads TRAIN_TOKENS and WARMUP_TOKENS, which this script never sets, so the
# name ends in "-tt--wt-".
NAME="${ENV}-finetune-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options cosine 0.006 # pai_optim_options, pai_shape_ffn_first_options
pai_mistral_mcore_arch # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${train_paths[@]}"
	--data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --init-method-std 0.006, --lr-decay-iters … --train-iters
	--split 99,1,0
	"${pai_shape_ffn_first_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 0
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type MistralTokenizer
	--dataset LLama-Pretrain-Raw
	"${pai_arch_options[@]}" # --swiglu … --no-position-embedding
	--use-mcore-models
	--no-rope-fusion
	--expert-model-parallel-size "${EP}"
	--distributed-timeout-minutes 6000
	--transformer-impl transformer_engine
	--eod-mask-loss
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
