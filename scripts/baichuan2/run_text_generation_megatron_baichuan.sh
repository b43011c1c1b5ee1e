#!/bin/bash
# Offline text generation with a Baichuan 2 checkpoint in gomegatron: Pai-Megatron-Patch's
# examples/baichuan2/run_text_generation_megatron_baichuan.sh (18 arguments) with the same
# arguments and Megatron flags, launching `golaunch … generate` instead of
# `torchrun … generate_text_megatron_baichuan.py`, one process per TP rank (Pai hard-codes
# two). The model, NormHead included, is the checkpoint's. See scripts/README.md.
#
# bash run_text_generation_megatron_baichuan.sh dsw /workspace/Pai-Megatron-Patch /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1 7B 1 1 1024 80 0 fp16 0 512 512 /mnt/workspace/gen.jsonl /mnt/workspace/cn_output.txt 0.85 1 1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_generate_usage "Generate text with a Baichuan 2 model and \`golaunch … generate\`" \
	"dsw /workspace/Pai-Megatron-Patch /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1 7B 1 1 1024 80 0 fp16 0 512 512 /mnt/workspace/gen.jsonl /mnt/workspace/cn_output.txt 0.85 1 1" \
	"7B (RoPE) | 13B (ALiBi) | tiny | small (CPU sizes)"

pai_nargs 18 $#

# Every argument is checked before anything is launched; one process per TP rank.
PAI_SHAPE=pai_baichuan2_shape pai_generate_args "$@" # ENV … REPETITION_PENALTY; baichuan_options, launcher, load, input and pr options

rapidformer_options=(
	"${pai_generate_head_options[@]}" # --micro-batch-size … --use-distributed-optimizer, in Pai's order
	--swiglu
	--untie-embeddings-and-output-weights
	--normalization RMSNorm
	--patch-tokenizer-type BaichuanTokenizer
	--no-query-key-layer-scaling
	--repetition-penalty "${REPETITION_PENALTY}"
	--disable-bias-linear
)
gqa_options=("${gqa_options[@]}" "${baichuan_options[@]}") # Pai's model_options come last

pai_generate_launch # Pai's option order (rapidformer, load, input, pr, model); DRY_RUN=1 prints the command
