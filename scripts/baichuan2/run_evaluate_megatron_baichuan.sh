#!/bin/bash
# Evaluation of a Baichuan 2 checkpoint with gomegatron: Pai-Megatron-Patch's
# examples/baichuan2/run_evaluate_megatron_baichuan.sh (17 arguments) with the same
# arguments and Megatron flags, launching `golaunch … evaluate-raw` instead of
# `torchrun … evaluate_megatron_baichuan.py`: the loss of each micro-batch of the raw JSON
# DATASET_PATH, one pass. Like the pretraining script it adds --use-normhead (NORMHEAD=0
# omits it). See scripts/README.md.
#
# bash run_evaluate_megatron_baichuan.sh dsw ../.. 7B 1 2048 2048 0 bf16 1 1 sel true false true false /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_MODEL="Baichuan 2" PAI_SHAPE=pai_baichuan2_shape PAI_SIZES="7B (RoPE) | 13B (ALiBi) | tiny | small (CPU sizes)"
PAI_TOKENIZER=BaichuanTokenizer
PAI_EXAMPLE="dsw ../.. 7B 1 2048 2048 0 bf16 1 1 sel true false true false /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1/"
PAI_ENV_HELP="${PAI_ENV_HELP}
NORMHEAD=0 leaves out --use-normhead (for a checkpoint saved without Baichuan 2's NormHead)."

# pai_eval_options: Pai's model_options first, then its evaluation flags in its order.
pai_eval_options() {
	pai_normhead
	megatron_options=(
		"${baichuan_options[@]}"
		"${eval_raw_options[@]}" # --valid-data-path … --extra-vocab-size, in Pai's order
		--patch-tokenizer-type BaichuanTokenizer
		--swiglu
		--normalization RMSNorm
		--untie-embeddings-and-output-weights
		--disable-bias-linear
		"${normhead_options[@]}"
	)
}

pai_evaluate legacy "$@"
