#!/bin/bash
# Evaluation of a Hugging Face Mistral folder with gomegatron: Pai-Megatron-Patch's
# examples/mistral/run_evaluate_huggingface_mistral.sh (v2, 10 arguments, commit 7097866) with
# the same arguments and flags, launching `golaunch … evaluate-raw --transformer-type
# huggingface` instead of `torchrun … evaluate_huggingface_mistral.py`: the folder's own model
# (from its config.json) over the raw JSON DATASET_PATH, each micro-batch's loss. See
# scripts/README.md.
#
# bash run_evaluate_huggingface_mistral.sh dsw ../.. 7B 1 80 80 0 bf16 /mnt/llama2-datasets/alpaca_data.json /mnt/mistral-ckpts/Mistral-7B-v0.1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"

# Pai's script keeps Llama-2's 13B and 70B beside 7B (the printed shape flags are the same
# for Llama-2's 7B and Mistral's); the folder's config.json is checked against them.
mistral_hf_shape() { pai_mistral_shape "$1" "$2" 7B 13B 70B tiny small; }
PAI_MODEL=Mistral
PAI_SHAPE=mistral_hf_shape
PAI_SIZES="7B (Mistral-7B) | 13B | 70B (Llama-2's shapes, as Pai's script has them) | tiny | small (CPU sizes)"
PAI_TOKENIZER=MistralTokenizer
PAI_EXAMPLE="dsw ../.. 7B 1 80 80 0 bf16 /mnt/llama2-datasets/alpaca_data.json /mnt/mistral-ckpts/Mistral-7B-v0.1"

pai_evaluate hf "$@"
