#!/bin/bash
# Evaluation of a Qwen1.5 checkpoint in the Megatron-Core layout with gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_evaluate_mcore_qwen.sh (v2, 17 arguments, commit
# 7097866) with the same arguments and Megatron flags, launching `golaunch … evaluate-raw`
# instead of `torchrun … evaluate_mcore_qwen.py`: the loss of each micro-batch of the raw
# JSON DATASET_PATH, one pass. See scripts/README.md.
#
# bash run_evaluate_mcore_qwen.sh dsw ../.. 0.5B 1 2048 2048 293 bf16 1 1 sel true false false false /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/qwen1.5_0.5b_mcore_tp1_pp1_v1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"

# Pai's script has no 32B.
qwen_mcore_eval_shape() { pai_qwen15_shape "$1" "$2" 0.5B 1.8B 4B 7B 14B 72B tiny small; }
PAI_MODEL=Qwen1.5
PAI_SHAPE=qwen_mcore_eval_shape
PAI_SIZES="0.5B | 1.8B | 4B | 7B | 14B | 72B | tiny | small (CPU sizes)"
PAI_EXTRA_VOCAB="--extra-vocab-size: 293 below 32B, 421 for 72B (Qwen1.5's padded rows)"
PAI_EXAMPLE="dsw ../.. 0.5B 1 2048 2048 293 bf16 1 1 sel true false false false /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/qwen1.5_0.5b_mcore_tp1_pp1_v1"

# pai_eval_options: Pai's megatron_options, in its order: those of Llama-2's mcore evaluation,
# then --eod-mask-loss and the RoPE flags as Pai writes them (base 1e8; no --add-qkv-bias),
# then gomegatron's --use-mcore-models (Megatron-Core's key names and batches, as Pai's entry
# point builds Megatron-Core's GPTModel).
pai_eval_options() {
	pai_eval_llama_options mcore --eod-mask-loss --rotary-base 100000000 --rotary-percent 1 --rotary-seq-len-interpolation-factor 1
}

pai_evaluate mcore "$@"
