#!/bin/bash
# Evaluation of a Hugging Face Llama-2 folder with gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_evaluate_huggingface_llama.sh (10 arguments) with the same arguments
# and flags, launching `golaunch … evaluate-raw --transformer-type huggingface` instead of
# `torchrun … evaluate_huggingface_llama.py`: the folder's own model (from its config.json)
# over the raw JSON DATASET_PATH, each micro-batch's loss. See scripts/README.md.
#
# bash run_evaluate_huggingface_llama.sh dsw ../.. 7B 1 80 80 0 bf16 /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-ckpts/Llama-2-7b-hf/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
pai_evaluate hf "$@"
