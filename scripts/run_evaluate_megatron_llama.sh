#!/bin/bash
# Evaluation of a Llama-2 checkpoint with gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_evaluate_megatron_llama.sh (17 arguments) with the same arguments and
# Megatron flags, launching `golaunch … evaluate-raw` instead of
# `torchrun … evaluate_megatron_llama.py`: the loss of each micro-batch of the raw JSON
# DATASET_PATH, one pass. See scripts/README.md.
#
# bash run_evaluate_megatron_llama.sh dsw ../.. 7B 1 80 80 0 bf16 2 1 sel true false true false /mnt/llama2-datasets/alpaca_data.json /mnt/llama2-ckpts/Llama-2-7b-hf-to-mg-tp2-pp1/
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
pai_evaluate legacy "$@"
