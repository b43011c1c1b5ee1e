#!/bin/bash
# Supervised fine-tuning of a Llama-2 model with gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_finetune_megatron_llama.sh (2023 layout, 22 arguments) with the same
# arguments and Megatron flags, launching `golaunch … finetune` instead of
# `torchrun … finetune_megatron_llama.py`. See scripts/README.md.
#
# bash run_finetune_megatron_llama.sh dsw ../.. 7B 1 1e-5 1e-6 120 120 0 bf16 1 1 sel true false true false /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-ckpts/Llama-2-7b-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Llama-2 model with \`golaunch … finetune\`" \
	"dsw ../.. 7B 1 1e-5 1e-6 120 120 0 bf16 1 1 sel true false true false /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-ckpts/Llama-2-7b-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length and --max-position-embeddings" \
	"PAD_LEN=--max-padding-length (samples are padded/truncated to it)" \
	EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE \
	"TRAIN_DATASET_PATH=--train-data-path: a JSON list of {instruction, input, output}" \
	"VALID_DATASET_PATH=--valid-data-path: same format" \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint), or none" \
	EPOCH \
	"OUTPUT_BASEPATH=writes checkpoint/FT_NAME, tensorboard/FT_NAME_DATE and log/FT_NAME_DATE.log under it"

pai_nargs 22 $#

# Every argument is checked before anything is created or launched.
pai_epoch_args "$@" # ENV … OUTPUT_BASEPATH; FT_NAME, TENSORBOARD_DIR, FINETUNE_CHECKPOINT_PATH, LOG_FILE, pai_epoch_options

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
pai_llama_arch --use-llama2-rotary-position-embeddings # pai_arch_options

megatron_options=(
	"${pai_epoch_options[@]}" # --load … --extra-vocab-size, in Pai's order
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-SFT
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
