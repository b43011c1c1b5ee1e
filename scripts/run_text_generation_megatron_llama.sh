#!/bin/bash
# Offline text generation with a Llama-2 checkpoint in gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_text_generation_megatron_llama.sh (2023 layout, 18 arguments) with the
# same arguments and Megatron flags, launching `golaunch … generate` instead of
# `torchrun … generate_text_megatron_llama.py`. See scripts/README.md.
#
# bash run_text_generation_megatron_llama.sh dsw /workspace/PAI-Megatron-Patch /mnt/llama-ckpts/Ziya-LLaMA-13B-to-megatron-tp1-pp1 13B 1 1 1024 80 0 fp16 0 512 512 /mnt/llama-datasets/gen.jsonl /mnt/llama-datasets/cn_output.txt 0.85 1 1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_generate_usage "Generate text with \`golaunch … generate\`" \
	"dsw /workspace/PAI-Megatron-Patch /mnt/llama-ckpts/Ziya-LLaMA-13B-to-megatron-tp1-pp1 13B 1 1 1024 80 0 fp16 0 512 512 /mnt/llama-datasets/gen.jsonl /mnt/llama-datasets/cn_output.txt 0.85 1 1" \
	"7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)"

pai_nargs 18 $#

# Every argument is checked before anything is launched; one process per TP rank.
pai_generate_args "$@" # ENV … REPETITION_PENALTY; launcher, load, input and pr options, pai_generate_options

rapidformer_options=(
	"${pai_generate_options[@]}" # --micro-batch-size … --repetition-penalty, in Pai's order
	--disable-bias-linear
)

pai_generate_launch # Pai's option order (rapidformer, load, input, pr, gqa); DRY_RUN=1 prints the command
