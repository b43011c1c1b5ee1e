#!/bin/bash
# Evaluation of a Baichuan 2 Hugging Face folder with gomegatron: Pai-Megatron-Patch's
# examples/baichuan2/run_evaluate_huggingface_baichuan.sh (10 arguments) with the same
# arguments and flags, launching `golaunch … evaluate-raw --transformer-type huggingface`
# instead of `torchrun … evaluate_huggingface_baichuan.py`: the folder's own model (W_pack,
# RoPE or ALiBi, NormHead) and BaichuanTokenizer, the loss of each micro-batch of the raw
# JSON DATASET_PATH (LLama-SFT samples), one pass. See scripts/README.md.
#
# bash run_evaluate_huggingface_baichuan.sh dsw /workspace/Pai-Megatron-Patch/ 7B 1 4096 4096 0 fp16 /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_MODEL="Baichuan 2" PAI_SHAPE=pai_baichuan2_shape PAI_SIZES="7B | 13B | tiny | small (CPU sizes)"
PAI_TOKENIZER=BaichuanTokenizer
PAI_EXAMPLE="dsw /workspace/Pai-Megatron-Patch/ 7B 1 4096 4096 0 fp16 /mnt/baichuan2-datasets/alpaca_zh.json /mnt/baichuan2-ckpts/Baichuan2-7B-Base"
pai_evaluate hf "$@"
