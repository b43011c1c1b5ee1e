#!/bin/bash
# Supervised fine-tuning with a global batch (gradient accumulation) of a Llama-2 model with
# gomegatron: Pai-Megatron-Patch's examples/llama2/run_finetune_megatron_llama_withGA.sh (v2,
# 25 arguments, commit 7097866) with the same arguments and Megatron flags, launching
# `golaunch … finetune` (iteration-based: --train-iters, --dataloader-type cyclic) instead
# of `torchrun … finetune_megatron_llama_withGA.py`. See scripts/README.md.
#
# bash run_finetune_megatron_llama_withGA.sh dsw ../../ 13B 1 32 1e-5 1e-6 128 128 0 bf16 8 1 sel true false false false 100 /mnt/llama2-datasets/alpaca_zh-llama2-train.json /mnt/llama2-datasets/alpaca_zh-llama2-valid.json /mnt/llama2-ckpts/Llama-2-13b-hf-to-megatron-tp8-pp1 1000 10 /mnt/output_megatron_llama2/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Llama-2 model for TRAIN_ITERS global batches with \`golaunch … finetune\`" \
	"dsw ../../ 13B 1 32 1e-5 1e-6 128 128 0 bf16 8 1 sel true false false false 100 /mnt/llama2-datasets/alpaca_zh-llama2-train.json /mnt/llama2-datasets/alpaca_zh-llama2-valid.json /mnt/llama2-ckpts/Llama-2-13b-hf-to-megatron-tp8-pp1 1000 10 /mnt/output_megatron_llama2/" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (the samples' length is PAD_LEN)" \
	"PAD_LEN=--max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)" \
	EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a JSON list of {instruction, input, output}" \
	VALID_DATASET_PATH \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint), or none" \
	TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
pai_train_args "$@" # ENV … TE, arguments 1-18
pai_iter_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS, train_paths, valid_paths

MAX_POSITION_EMBEDDINGS=2048 # every MODEL_SIZE of Pai's script

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

# Pai's name: it reads TRAIN_TOKENS and WARMUP_ITERS, which this script never sets, so the
# name ends in "-tt--wt-".
NAME="${ENV}-finetune-megatron-llama2-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options linear 0.006 --dataloader-type cyclic # pai_optim_options, pai_shape_options
pai_llama_arch --use-rotary-position-embeddings # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--split 99,1,0
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--test-data-path "${valid_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --dataloader-type cyclic, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 0
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-Pretrain-Raw
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
	--eod-mask-loss
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
