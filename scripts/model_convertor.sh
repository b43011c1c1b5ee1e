#!/bin/bash
# Hugging Face ⇄ Megatron checkpoint conversion with Pai-Megatron-Patch's positional
# arguments (toolkits/model_checkpoints_convertor/llama/model_convertor.sh):
#
#   bash scripts/model_convertor.sh MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP MODEL_NAME EXTRA_VOCAB_SIZE mg2hf
#
#   MEGATRON_PATH     accepted for compatibility (the Go convertor needs no Megatron-LM)
#   SOURCE_CKPT_PATH  HF folder (hf → megatron) or Megatron checkpoint, e.g. …/release (mg2hf)
#   TARGET_CKPT_PATH  output folder (must be empty unless FORCE=1)
#   TP, PP            target tensor / pipeline parallel sizes
#   MODEL_NAME        llama2-7b, llama-13b, … (checked against the source's architecture)
#   EXTRA_VOCAB_SIZE  rows appended to the vocabulary
#   mg2hf             true: Megatron → HF; false: HF → Megatron
#
# The vocabulary is not padded (Pai's convertor keeps padded_vocab_size = orig_vocab_size,
# and golaunch sizes it the same with Pai's --patch-tokenizer-type).
#
# Environment: TARGET_PARAMS_DTYPE (default fp16, as Pai passes), MEGATRON_FORMAT (legacy,
# the language_model.encoder… keys Pai's convertor writes, by default; or mcore), FORCE=1
# adds --force, CONVERT_BIN names a built convertor
# (default: `go run ./tools/convert` from this repository), DRY_RUN=1 prints the command.
set -euo pipefail

if [ $# -lt 8 ]; then
    echo "usage: $0 MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP MODEL_NAME EXTRA_VOCAB_SIZE mg2hf" >&2
    exit 2
fi
MEGATRON_PATH=$1
SOURCE_CKPT_PATH=$2
TARGET_CKPT_PATH=$3
TP=$4
PP=$5
MN=$6
EXTRA_VOCAB_SIZE=$7
mg2hf=$8

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${CONVERT_BIN:-}" ]; then
    CMD=("$CONVERT_BIN")
else
    CMD=(go run -C "$REPO" ./tools/convert)
fi

ARGS=(--load_path "$SOURCE_CKPT_PATH"
      --save_path "$TARGET_CKPT_PATH"
      --target_params_dtype "${TARGET_PARAMS_DTYPE:-fp16}"
      --megatron-path "$MEGATRON_PATH"
      --target_tensor_model_parallel_size "$TP"
      --target_pipeline_model_parallel_size "$PP"
      --model_name "$MN"
      --extra_num_vocabs "$EXTRA_VOCAB_SIZE"
      --make_vocab_size_divisible_by 1
      --megatron-format "${MEGATRON_FORMAT:-legacy}")
if [ "$mg2hf" = true ]; then
    ARGS+=(--convert_checkpoint_from_megatron_to_transformers)
elif [ "$mg2hf" != false ]; then
    echo "$0: mg2hf must be true or false, got '$mg2hf'" >&2
    exit 2
fi
if [ "${FORCE:-0}" = 1 ]; then
    ARGS+=(--force)
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "${CMD[@]}" "${ARGS[@]}"
    exit 0
fi
exec "${CMD[@]}" "${ARGS[@]}"
