#!/bin/bash
# Supervised fine-tuning with a global batch (gradient accumulation) of a Qwen1.5 model
# (Megatron legacy model) with gomegatron: Pai-Megatron-Patch's
# examples/qwen1_5/run_finetune_megatron_qwen_withGA.sh (v2, 25 arguments, commit 7097866)
# with the same arguments and Megatron flags, launching `golaunch … finetune`
# (iteration-based: --train-iters, --dataloader-type cyclic) instead of
# `torchrun … ../llama2/finetune_megatron_llama_withGA.py`. See scripts/README.md.
#
# bash run_finetune_megatron_qwen_withGA.sh dsw ../../ 1.8B 1 96 1e-5 1e-6 2048 2048 293 bf16 2 2 sel true false true false 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp2 1000 10 /mnt/output_megatron_qwen
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Qwen1.5 model (Megatron legacy model) for TRAIN_ITERS global batches with \`golaunch … finetune\`" \
	"dsw ../../ 1.8B 1 96 1e-5 1e-6 2048 2048 293 bf16 2 2 sel true false true false 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp2 1000 10 /mnt/output_megatron_qwen" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings (the samples' length is PAD_LEN)" \
	"PAD_LEN=--max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)" \
	PR TP PP \
	"AC=full (every layer: --recompute-num-layers NUM_LAYERS) | sel | none (activation recompute)" \
	DO FL SP TE SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a JSON list of {instruction, input, output}" \
	VALID_DATASET_PATH \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint), or none" \
	TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
pai_iter_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS, train_paths, valid_paths

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$AC" = full ] && activation_checkpoint_options+=(--recompute-num-layers "${NUM_LAYERS}") # Pai's script says so

# Pai's name: it reads TRAIN_TOKENS and WARMUP_TOKENS, which this script never sets, so the
# name ends in "-tt--wt-".
NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_head_options
pai_train_options linear 0.006 --dataloader-type cyclic # pai_optim_options, pai_shape_options
pai_llama_arch --use-llama2-rotary-position-embeddings # pai_arch_options

# Pai's legacy Qwen1.5 script runs Llama-2's entry point with Llama-2's flags: linear biases
# (no --disable-bias-linear), Megatron's dropout, LLamaTokenizer; RoPE base 1e6.
megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--split 98,2,0
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--test-data-path "${valid_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --dataloader-type cyclic, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${SEQ_LEN}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_head_options[@]}" # --log-interval 1 … --pipeline-model-parallel-size, in Pai's order
	--dataset LLama-Pretrain-Raw
	--no-save-optim
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

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
