#!/bin/bash
# Evaluation of a Mixtral checkpoint (Mistral with Pai's 8 experts, top-2) in the
# Megatron-Core layout with gomegatron: Pai-Megatron-Patch's
# examples/mistral/run_evaluate_mcore_mistral.sh (v2, 17 arguments, commit 7097866) with the
# same arguments and Megatron flags, launching `golaunch … evaluate-raw` instead of
# `torchrun … evaluate_mcore_mistral.py`: the loss of each micro-batch of the raw JSON
# DATASET_PATH, one pass. See scripts/README.md.
#
# bash run_evaluate_mcore_mistral.sh dsw ../.. 7B 1 81 81 0 bf16 2 1 sel false false true false /mnt/llama2-datasets/alpaca_data.json /mnt/mixtral-ckpts/Mixtral-8x7B-v0.1-to-mcore-tp2-pp1-ep4
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"

# Pai's script also has 0.125B: Mistral-7B's layer, 2 layers.
mixtral_eval_shape() { pai_mistral_shape "$1" "$2" 0.125B 7B tiny small; }
PAI_MODEL="Mixtral (Mistral with Pai's 8 experts, top-2; --expert-model-parallel-size = the data-parallel size)"
PAI_SHAPE=mixtral_eval_shape
PAI_SIZES="0.125B (7B's layer, 2 layers) | 7B (GQA, 8 groups) | tiny | small (CPU sizes)"
PAI_SEQ_LEN_HELP="--seq-length (--max-position-embeddings is 32768)"
PAI_DATASET=LLama-SFT
PAI_EXAMPLE="dsw ../.. 7B 1 81 81 0 bf16 2 1 sel false false true false /mnt/llama2-datasets/alpaca_data.json /mnt/mixtral-ckpts/Mixtral-8x7B-v0.1-to-mcore-tp2-pp1-ep4"

# pai_eval_options: Pai's megatron_options, in its order: 8 experts at expert parallelism EP =
# the data-parallel size (Pai's TOTAL_GPUS / TP / PP), which must divide them (as Megatron
# asserts); full recompute adds --recompute-num-layers 1.
pai_eval_options() {
	local ep=$((NNODES * GPUS_PER_NODE / TP / PP))
	((8 % ep == 0)) ||
		pai_die "TP (arg 9) ${TP} × PP (arg 10) ${PP} on ${NNODES} × ${GPUS_PER_NODE} processes gives data-parallel size ${ep}, Pai's --expert-model-parallel-size, which does not divide the 8 experts"
	[ "$AC" != full ] || activation_checkpoint_options=(--recompute-num-layers 1 "${activation_checkpoint_options[@]}")
	pai_mistral_mcore_arch
	megatron_options=(
		"${eval_head[@]}" # --valid-data-path … --seq-length
		--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
		--ffn-hidden-size "${INTERMEDIATE_SIZE}"
		"${eval_layout[@]}" # --log-interval 1 … --num-workers 0
		--max-padding-length "${PAD_LEN}"
		--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
		--patch-tokenizer-type MistralTokenizer
		--dataset LLama-SFT
		"${pai_arch_options[@]}" # --swiglu … --no-position-embedding
		--num-experts 8
		--moe-router-topk 2
		--use-mcore-models
		--no-rope-fusion
		--expert-model-parallel-size "${ep}"
		--transformer-impl transformer_engine
	)
}

pai_evaluate mcore "$@"
