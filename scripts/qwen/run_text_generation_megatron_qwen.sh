#!/bin/bash
# Offline text generation with a Qwen (1.0) checkpoint in gomegatron: Pai-Megatron-Patch's
# examples/qwen/run_text_generation_megatron_qwen.sh (18 arguments) with the same arguments
# and Megatron flags, launching `golaunch … generate` instead of
# `torchrun … generate_text_megatron_qwen.py`, one process per TP rank (Pai hard-codes two).
# Like Pai's, it passes no --repetition-penalty: REPETITION_PENALTY is checked and unused,
# and the default 1.2 applies. See scripts/README.md.
#
# bash run_text_generation_megatron_qwen.sh dsw ../../ /mnt/qwen-ckpts/qwen-7b-hf-to-mg-tp1-pp1/ 7B 1 1 1024 80 85 fp16 0 512 512 /mnt/workspace/gen.jsonl /mnt/workspace/cn_output.txt 0.85 1 1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_generate_usage "Generate text with a Qwen (1.0) model and \`golaunch … generate\`" \
	"dsw ../../ /mnt/qwen-ckpts/qwen-7b-hf-to-mg-tp1-pp1/ 7B 1 1 1024 80 85 fp16 0 512 512 /mnt/workspace/gen.jsonl /mnt/workspace/cn_output.txt 0.85 1 1" \
	"7B | 14B | tiny | small (CPU sizes)" "--extra-vocab-size (85 for 7B, 213 for 14B)" \
	"checked and unused, as in Pai's script (golaunch's default 1.2 applies)"

pai_nargs 18 $#

qwen1_generate_shape() { pai_qwen1_shape "$1" "$2" 7B 14B tiny small; }
# Every argument is checked before anything is launched; one process per TP rank.
PAI_SHAPE=qwen1_generate_shape pai_generate_args "$@" # ENV … REPETITION_PENALTY; launcher, load, input and pr options
pai_qwen1_arch # pai_arch_options

rapidformer_options=(
	"${pai_generate_head_options[@]}" # --micro-batch-size … --use-distributed-optimizer, in Pai's order
	--patch-tokenizer-type QwenTokenizer
	"${pai_arch_options[@]}" # --swiglu … --disable-bias-attn-fc
)

pai_generate_launch # Pai's option order (rapidformer, load, input, pr); DRY_RUN=1 prints the command
