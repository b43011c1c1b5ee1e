#!/bin/bash
# Evaluation of a Mistral checkpoint (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/mistral/run_evaluate_megatron_mistral.sh (v2, 17 arguments,
# commit 7097866) with the same arguments and Megatron flags, launching
# `golaunch … evaluate-raw` instead of `torchrun … evaluate_megatron_mistral.py`: the loss of
# each micro-batch of the raw JSON DATASET_PATH, one pass. See scripts/README.md.
#
# bash run_evaluate_megatron_mistral.sh dsw ../.. 7B 1 81 81 0 bf16 2 1 sel true false true false /mnt/llama2-datasets/alpaca_data.json /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mg-tp2-pp1/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"

PAI_MODEL=Mistral
PAI_SHAPE=pai_mistral_shape
PAI_SIZES="7B (GQA, 8 groups, sliding window 4096) | tiny | small (CPU sizes)"
PAI_SEQ_LEN_HELP="--seq-length (--max-position-embeddings is 32768)"
PAI_DATASET=LLama-SFT
PAI_EXAMPLE="dsw ../.. 7B 1 81 81 0 bf16 2 1 sel true false true false /mnt/llama2-datasets/alpaca_data.json /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mg-tp2-pp1/"

# pai_eval_options: Pai's megatron_options, in its order.
pai_eval_options() {
	pai_llama_arch --use-mistral-rotary-position-embeddings
	megatron_options=(
		"${eval_head[@]}" # --valid-data-path … --seq-length
		--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
		--ffn-hidden-size "${INTERMEDIATE_SIZE}"
		"${eval_layout[@]}" # --log-interval 1 … --num-workers 0
		--max-padding-length "${PAD_LEN}"
		--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
		--patch-tokenizer-type MistralTokenizer
		--dataset LLama-SFT
		--sliding-window "${SLW}"
		"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
		--disable-bias-linear
	)
}

pai_evaluate legacy "$@"
