#!/bin/bash
# Offline text generation with a Qwen1.5 checkpoint (Megatron legacy model) in gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_text_generation_megatron_qwen.sh (v2, 18
# arguments, commit 7097866) with the same arguments and Megatron flags, launching
# `golaunch … generate` instead of `torchrun … ../llama2/generate_text_megatron_llama.py`.
# See scripts/README.md.
#
# bash run_text_generation_megatron_qwen.sh dsw ../../ /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp1 1.8B 2 1 1024 80 0 fp16 0 512 512 /mnt/qwen-datasets/gen.jsonl /mnt/qwen-datasets/cn_output.txt 0.85 1 1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_generate_usage "Generate text with a Qwen1.5 model and \`golaunch … generate\`" \
	"dsw ../../ /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp1 1.8B 2 1 1024 80 0 fp16 0 512 512 /mnt/qwen-datasets/gen.jsonl /mnt/qwen-datasets/cn_output.txt 0.85 1 1" \
	"0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	"--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)"

pai_nargs 18 $#

# Every argument is checked before anything is launched; one process per TP rank (Pai
# hard-codes 4 processes).
PAI_SHAPE=pai_qwen15_shape pai_generate_args "$@" # ENV … REPETITION_PENALTY; launcher, load, input and pr options, pai_generate_options

# Pai's Qwen1.5 script keeps Llama-2's flags (linear biases: no --disable-bias-linear) and
# sets RoPE base 1e6.
rapidformer_options=(
	"${pai_generate_options[@]}" # --micro-batch-size … --repetition-penalty, in Pai's order
	--rotary-base 1000000
	--rotary-scale-factor 1
)

pai_generate_launch # Pai's option order (rapidformer, load, input, pr, gqa); DRY_RUN=1 prints the command
