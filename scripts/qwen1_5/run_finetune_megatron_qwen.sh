#!/bin/bash
# Supervised fine-tuning (epochs) of a Qwen1.5 model (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_finetune_megatron_qwen.sh (v2, 22 arguments,
# commit 7097866) with the same arguments and Megatron flags, launching `golaunch … finetune`
# (Pai's epoch loop: --epochs, --keep-last, --finetune) instead of
# `torchrun … pretrain_mcore_qwen.py`. See scripts/README.md.
#
# bash run_finetune_megatron_qwen.sh dsw ../../ 7B 1 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Qwen1.5 model (Megatron legacy model) for EPOCH passes with \`golaunch … finetune\`" \
	"dsw ../../ 7B 1 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)" \
	PR TP PP AC DO FL SP TE \
	"TRAIN_DATASET_PATH=--train-data-path (Pai: --train-data): a JSON list of {instruction, input, output}" \
	"VALID_DATASET_PATH=--valid-data-path (Pai: --valid-data): same format" \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint; Qwen2Tokenizer reads its tokenizer), or none" \
	EPOCH \
	"OUTPUT_BASEPATH=writes checkpoint/FT_NAME, tensorboard/FT_NAME_DATE and log/FT_NAME_DATE.log under it"

pai_nargs 22 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_epoch_args "$@" # ENV … OUTPUT_BASEPATH; FT_NAME (Pai's "-finetune-megatron-llama-"), folders, pai_epoch_options

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
pai_llama_arch --use-llama2-rotary-position-embeddings # pai_arch_options

# Pai spells the data flags --train-data and --valid-data (its epoch loop's names, which
# golaunch finetune calls --train-data-path and --valid-data-path, as pai_epoch_options does).
megatron_options=(
	"${pai_epoch_options[@]}" # --load … --extra-vocab-size, in Pai's order
	--patch-tokenizer-type Qwen2Tokenizer
	--dataset LLama-Pretrain-Raw
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--rotary-base 1000000
	--rotary-scale-factor 1
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
