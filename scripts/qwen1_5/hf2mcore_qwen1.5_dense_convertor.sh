#!/bin/bash
# Hugging Face ⇄ Megatron-Core checkpoint conversion of a dense Qwen1.5 model with gomegatron:
# Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/qwen/hf2mcore_qwen1.5_dense_convertor.sh
# (v2, commit 7097866) with the same arguments, running tools/convert instead of
# hf2mcore_qwen1.5_dense_mha.py / _gqa.py: Transformer Engine's key names, QKV biases, the
# vocabulary unpadded. See scripts/README.md.
#
# bash hf2mcore_qwen1.5_dense_convertor.sh 0.5B /mnt/qwen-ckpts/Qwen1.5-0.5B /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp2-pp1 2 1 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh …` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} MODEL_SIZE SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP mg2hf [HF_CKPT_PATH]

Convert a dense Qwen1.5 checkpoint between Hugging Face and Megatron-Core with tools/convert (Pai-Megatron-Patch's arguments, in order):
   1 MODEL_SIZE        0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, bf16) | 72B | tiny | small; checked against the Hugging Face config
   2 SOURCE_CKPT_PATH  Hugging Face folder (mg2hf false) or Megatron checkpoint (mg2hf true)
   3 TARGET_CKPT_PATH  output folder (must be empty unless FORCE=1)
   4 TP                target tensor-parallel size
   5 PP                target pipeline-parallel size
   6 mg2hf             false: Hugging Face → Megatron-Core; true: Megatron → Hugging Face
   7 HF_CKPT_PATH      mg2hf only: the Hugging Face folder whose config.json and tokenizer files go with the output

Environment: DRY_RUN=1 prints the convert command and stops; CONVERT_BIN names the convertor
(default: bin/convert built from ./tools/convert); TARGET_PARAMS_DTYPE overrides the stored
dtype (Pai's: fp16, bf16 for 32B); FORCE=1 writes into a non-empty TARGET_CKPT_PATH.

example: ${PAI_SCRIPT} 0.5B /mnt/qwen-ckpts/Qwen1.5-0.5B /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp2-pp1 2 1 false"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
[ $# -eq 6 ] || [ $# -eq 7 ] || pai_nargs 7 $#

MODEL_SIZE=$1
SOURCE_CKPT_PATH=$2
TARGET_CKPT_PATH=$3
TP=$4
PP=$5
mg2hf=$6
HF_CKPT_PATH=${7:-}

# Every argument is checked before anything is written.
pai_qwen15_shape "$MODEL_SIZE" 1
pai_int_pos TP 4 "$TP"
pai_int_pos PP 5 "$PP"
pai_enum mg2hf 6 "$mg2hf" true false
if [ "$mg2hf" = false ]; then
	pai_check_checkpoint SOURCE_CKPT_PATH 2 "$SOURCE_CKPT_PATH" 1 ""
else
	[ -e "$SOURCE_CKPT_PATH" ] || pai_die "SOURCE_CKPT_PATH (arg 2): ${SOURCE_CKPT_PATH} not found"
	[ -n "$HF_CKPT_PATH" ] || pai_die "HF_CKPT_PATH (arg 7): mg2hf true needs the Hugging Face folder (its config.json and tokenizer)"
	pai_check_checkpoint HF_CKPT_PATH 7 "$HF_CKPT_PATH" 1 ""
fi
pai_check_writable TARGET_CKPT_PATH 3 "$TARGET_CKPT_PATH"

DTYPE=fp16 # hf2mcore_qwen1.5_dense_mha.py runs with --fp16; the 32B (GQA) converter stores bf16
[ "$MODEL_SIZE" = 32B ] && DTYPE=bf16

args=(--load_path "$SOURCE_CKPT_PATH"
	--save_path "$TARGET_CKPT_PATH"
	--target_tensor_model_parallel_size "$TP"
	--target_pipeline_model_parallel_size "$PP"
	--target_params_dtype "${TARGET_PARAMS_DTYPE:-$DTYPE}"
	--model_name qwen
	--megatron-format mcore
	--transformer-impl transformer_engine
	--make_vocab_size_divisible_by 1) # Pai keeps Qwen1.5's 151643 + EXTRA_VOCAB_SIZE rows
pai_convert_launch "$HF_CKPT_PATH"
