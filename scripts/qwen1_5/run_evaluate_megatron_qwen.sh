#!/bin/bash
# Evaluation of a Qwen1.5 checkpoint (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_evaluate_megatron_qwen.sh (v2, 17 arguments,
# commit 7097866) with the same arguments and Megatron flags, launching
# `golaunch … evaluate-raw` instead of `torchrun … ../llama2/evaluate_megatron_llama.py`: the
# loss of each micro-batch of the raw JSON DATASET_PATH, one pass. See scripts/README.md.
#
# bash run_evaluate_megatron_qwen.sh dsw ../../ 7B 1 1024 1024 293 bf16 4 1 sel true false true false /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-Chat-hf-to-mg-tp4-pp1/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"

PAI_MODEL=Qwen1.5
PAI_SHAPE=pai_qwen15_shape
PAI_SIZES="0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)"
PAI_EXTRA_VOCAB="--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)"
PAI_EXAMPLE="dsw ../../ 7B 1 1024 1024 293 bf16 4 1 sel true false true false /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-Chat-hf-to-mg-tp4-pp1/"

# pai_eval_options: Pai's megatron_options, in its order (Llama-2's entry point: linear
# biases, no --disable-bias-linear; RoPE base 1e6).
pai_eval_options() {
	pai_llama_arch --use-rotary-position-embeddings
	megatron_options=(
		"${eval_raw_options[@]}" # --valid-data-path … --extra-vocab-size, in Pai's order
		--patch-tokenizer-type LLamaTokenizer
		"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
		--rotary-base 1000000
		--rotary-scale-factor 1
	)
}

pai_evaluate legacy "$@"
