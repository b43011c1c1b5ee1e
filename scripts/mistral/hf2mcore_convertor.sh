#!/bin/bash
# Hugging Face ⇄ Megatron-Core checkpoint conversion of Mistral and Mixtral models with
# gomegatron: Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/mistral/
# hf2mcore_convertor.sh (v2, 12 or 13 arguments, commit 7097866) with the same arguments,
# running tools/convert instead of hf2mcore.py (Mistral-7B, upcycled to experts with
# NUM_EXPERTS > 0) and hf2mcore_mixtral.py (Mixtral-8x7B): Transformer Engine's layer spec,
# the vocabulary unpadded. Megatron → Hugging Face writes a Mistral, or a Mixtral for a
# mixture-of-experts checkpoint, its experts split over EP expert-parallel ranks. See
# scripts/README.md.
#
# bash hf2mcore_convertor.sh 7B /mnt/mistral-ckpts/Mistral-7B-v0.1 ../../../ /mnt/mistral-ckpts/Mistral-7B-v0.1 /mnt/mistral-ckpts/Mistral-7B-v0.1-to-mcore-tp4-pp1 4 1 0 0 0 0 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh hf2mcore_convertor.sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} MODEL_SIZE HG_CKPT_PATH MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP EXTRA_VOCAB_SIZE NUM_EXPERTS EXPERTS_TOPK EP mg2hf [WS]

Convert a Mistral or Mixtral checkpoint between Hugging Face and Megatron-Core with tools/convert (Pai-Megatron-Patch's arguments, in order):
   1 MODEL_SIZE         7B (Mistral-7B) | 8x7B (Mixtral-8x7B, bf16) | tiny | small (CPU sizes); checked against the Hugging Face config
   2 HG_CKPT_PATH       the Hugging Face folder: its config.json and tokenizer files go with an mg2hf output
   3 MEGATRON_PATH      accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   4 SOURCE_CKPT_PATH   Hugging Face folder (mg2hf false) or Megatron checkpoint (mg2hf true)
   5 TARGET_CKPT_PATH   output folder (must be empty unless FORCE=1)
   6 TP                 target tensor-parallel size
   7 PP                 target pipeline-parallel size
   8 EXTRA_VOCAB_SIZE   rows appended to the vocabulary
   9 NUM_EXPERTS        0: as the source (dense Mistral, or Mixtral's experts); N > 0: a Mistral is upcycled
                        to N experts, each a copy of its MLP (router N(0, 0.02)); a Mixtral must have N
  10 EXPERTS_TOPK       MoE only: experts per token, 1 … NUM_EXPERTS (0 keeps a Mixtral's num_experts_per_tok)
  11 EP                 MoE only: expert-parallel size, dividing NUM_EXPERTS (0 or 1 for a dense model)
  12 mg2hf              false: Hugging Face → Megatron-Core; true: Megatron → Hugging Face
  13 WS                 8x7B only, optional: Pai's world size; accepted and ignored

Environment: DRY_RUN=1 prints the convert command and stops; CONVERT_BIN names the convertor
(default: bin/convert built from ./tools/convert); TARGET_PARAMS_DTYPE overrides the stored
dtype (Pai's: fp16, bf16 for 8x7B); FORCE=1 writes into a non-empty TARGET_CKPT_PATH.

example: ${PAI_SCRIPT} 8x7B /mnt/mistral-ckpts/Mixtral-8x7B-v0.1 ../../../ /mnt/mistral-ckpts/Mixtral-8x7B-v0.1 /mnt/mistral-ckpts/Mixtral-8x7B-v0.1-to-mcore-tp4-pp1 4 1 0 8 2 1 false"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
[ $# -eq 12 ] || [ $# -eq 13 ] || pai_nargs 13 $#

MODEL_SIZE=$1
HG_CKPT_PATH=$2
MEGATRON_PATH=$3 # ignored
SOURCE_CKPT_PATH=$4
TARGET_CKPT_PATH=$5
TP=$6
PP=$7
EXTRA_VOCAB_SIZE=$8
NUM_EXPERTS=$9
EXPERTS_TOPK=${10}
EP=${11}
mg2hf=${12}
WS=${13:-}

# Every argument is checked before anything is written.
MODEL_NAME=mistral
DTYPE=fp16 # hf2mcore.py runs with --fp16; hf2mcore_mixtral.py stores bf16
case $MODEL_SIZE in
8x7B)
	pai_mistral_shape 7B 1 # Mixtral-8x7B's attention and each expert are Mistral-7B's shapes
	MODEL_NAME=mixtral DTYPE=bf16
	;;
*) pai_mistral_shape "$MODEL_SIZE" 1 ;;
esac
[ -z "$WS" ] || [ "$MODEL_SIZE" = 8x7B ] || pai_die "WS (arg 13): Pai's world size is an 8x7B argument only"
[ -z "$WS" ] || pai_int_pos WS 13 "$WS"
pai_int_pos TP 6 "$TP"
pai_int_pos PP 7 "$PP"
pai_int_nonneg EXTRA_VOCAB_SIZE 8 "$EXTRA_VOCAB_SIZE"
pai_int_nonneg NUM_EXPERTS 9 "$NUM_EXPERTS"
pai_int_nonneg EXPERTS_TOPK 10 "$EXPERTS_TOPK"
pai_int_nonneg EP 11 "$EP"
pai_enum mg2hf 12 "$mg2hf" true false
if ((NUM_EXPERTS == 0)) && [ "$MODEL_SIZE" != 8x7B ]; then
	((EP <= 1)) || pai_die "EP (arg 11): ${EP} applies to mixture-of-experts models; NUM_EXPERTS (arg 9) is 0 (dense): pass 0 or 1"
else
	if ((NUM_EXPERTS > 0)); then
		((EXPERTS_TOPK >= 1 && EXPERTS_TOPK <= NUM_EXPERTS)) ||
			pai_die "EXPERTS_TOPK (arg 10): ${EXPERTS_TOPK} must be between 1 and NUM_EXPERTS (arg 9) ${NUM_EXPERTS}"
	fi
	((EP >= 1 && NUM_EXPERTS % EP == 0)) ||
		pai_die "EP (arg 11): ${EP} must be a positive divisor of NUM_EXPERTS (arg 9) ${NUM_EXPERTS} (each expert-parallel rank's experts go to mp_rank_XX_EEE)"
fi
pai_check_checkpoint HG_CKPT_PATH 2 "$HG_CKPT_PATH" 1 ""
if [ "$mg2hf" = false ]; then
	pai_check_checkpoint SOURCE_CKPT_PATH 4 "$SOURCE_CKPT_PATH" 1 ""
else
	[ -e "$SOURCE_CKPT_PATH" ] || pai_die "SOURCE_CKPT_PATH (arg 4): ${SOURCE_CKPT_PATH} not found"
fi
pai_check_writable TARGET_CKPT_PATH 5 "$TARGET_CKPT_PATH"

args=(--load_path "$SOURCE_CKPT_PATH"
	--save_path "$TARGET_CKPT_PATH"
	--target_tensor_model_parallel_size "$TP"
	--target_pipeline_model_parallel_size "$PP"
	--target_params_dtype "${TARGET_PARAMS_DTYPE:-$DTYPE}"
	--model_name "$MODEL_NAME"
	--extra_num_vocabs "$EXTRA_VOCAB_SIZE"
	--megatron-format mcore
	--transformer-impl transformer_engine
	--make_vocab_size_divisible_by 1 # Pai's padded_vocab_size is the vocabulary + EXTRA_VOCAB_SIZE
	--megatron-path "$MEGATRON_PATH")
if ((NUM_EXPERTS > 0)); then # Pai's expert_options
	args+=(--moe-router-topk "$EXPERTS_TOPK" --num-experts "$NUM_EXPERTS" --target_expert_model_parallel_size "$EP")
elif ((EXPERTS_TOPK > 0)); then
	args+=(--moe-router-topk "$EXPERTS_TOPK")
fi
pai_convert_launch "$HG_CKPT_PATH"
