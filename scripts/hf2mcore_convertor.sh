#!/bin/bash
# Hugging Face ⇄ Megatron-Core checkpoint conversion of a Llama model with gomegatron:
# Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/llama/hf2mcore_convertor.sh (v2,
# 13 arguments, commit 7097866) with the same arguments, running tools/convert instead of
# hf2mcore.py: the mcore checkpoint with Transformer Engine's layer spec
# (linear_qkv.layer_norm_weight, …) that run_*_mcore_llama*.sh load. With NUM_EXPERTS > 0 the
# dense model is upcycled to a mixture of experts as hf2mcore.py does (every expert a copy of
# the MLP, or of a 1/NUM_EXPERT_SPLITS slice of it; the router N(0, 0.02)), and mg2hf writes
# such a checkpoint as a Hugging Face Mixtral. See scripts/README.md.
#
# bash hf2mcore_convertor.sh 7B /mnt/llama2-ckpts/Llama-2-7b-hf ../../../ /mnt/llama2-ckpts/Llama-2-7b-hf /mnt/llama2-ckpts/Llama-2-7b-hf-to-mcore-tp4-pp1 4 1 0 0 0 0 0 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh hf2mcore_convertor.sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} MODEL_SIZE HG_CKPT_PATH MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP EXTRA_VOCAB_SIZE NUM_EXPERTS EXPERTS_TOPK EP NUM_EXPERT_SPLITS mg2hf

Convert a Llama checkpoint between Hugging Face and Megatron-Core with tools/convert (Pai-Megatron-Patch's arguments, in order):
   1 MODEL_SIZE         7B | 13B | 70B (GQA, bf16) | 8B (Llama-3) | tiny | small (CPU sizes); checked against the Hugging Face config
   2 HG_CKPT_PATH       the Hugging Face folder: its config.json and tokenizer files go with an mg2hf output
   3 MEGATRON_PATH      accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   4 SOURCE_CKPT_PATH   Hugging Face folder (mg2hf false) or Megatron checkpoint (mg2hf true)
   5 TARGET_CKPT_PATH   output folder (must be empty unless FORCE=1)
   6 TP                 target tensor-parallel size
   7 PP                 target pipeline-parallel size (Pai's hf2mcore.py refuses PP > 1; tools/convert does it)
   8 EXTRA_VOCAB_SIZE   rows appended to the vocabulary
   9 NUM_EXPERTS        0: dense; N > 0: upcycle every MLP to N experts (mg2hf: the checkpoint's expert count)
  10 EXPERTS_TOPK       MoE only: experts per token, 1 … NUM_EXPERTS (1: the upcycled model computes the dense one)
  11 EP                 MoE only: expert-parallel size, dividing NUM_EXPERTS (0 or 1 for a dense model)
  12 NUM_EXPERT_SPLITS  MoE only: 0 or 1 copies the whole MLP into every expert; S > 1 gives expert e
                        slice e mod S of the FFN (INTERMEDIATE_SIZE / S wide); may be left out, as in Pai's READMEs
  13 mg2hf              false: Hugging Face → Megatron-Core; true: Megatron → Hugging Face (Mixtral when MoE)

Environment: DRY_RUN=1 prints the convert command and stops; CONVERT_BIN names the convertor
(default: bin/convert built from ./tools/convert); TARGET_PARAMS_DTYPE overrides the stored
dtype (Pai's: fp16, bf16 for 70B); FORCE=1 writes into a non-empty TARGET_CKPT_PATH.

example: ${PAI_SCRIPT} 7B /mnt/llama2-ckpts/Llama-2-7b-hf ../../../ /mnt/llama2-ckpts/Llama-2-7b-hf /mnt/llama2-ckpts/Llama-2-7b-hf-to-mcore-tp4-pp1 4 1 0 0 0 0 0 false"

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
# Pai's READMEs also show twelve arguments, without NUM_EXPERT_SPLITS: read as 0.
if [ $# -eq 12 ]; then set -- "${@:1:11}" 0 "${12}"; fi
pai_nargs 13 $#

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
NUM_EXPERT_SPLITS=${12}
mg2hf=${13}

# Every argument is checked before anything is written.
case $MODEL_SIZE in
8B)
	pai_llama3_shape 8B 1
	MODEL_NAME=llama3-8b
	;;
*)
	pai_model_shape "$MODEL_SIZE" 1
	MODEL_NAME=llama
	case $MODEL_SIZE in 7B | 13B | 70B) MODEL_NAME=llama2-$(tr '[:upper:]' '[:lower:]' <<<"$MODEL_SIZE") ;; esac
	;;
esac
pai_int_pos TP 6 "$TP"
pai_int_pos PP 7 "$PP"
pai_int_nonneg EXTRA_VOCAB_SIZE 8 "$EXTRA_VOCAB_SIZE"
pai_int_nonneg NUM_EXPERTS 9 "$NUM_EXPERTS"
pai_int_nonneg EXPERTS_TOPK 10 "$EXPERTS_TOPK"
pai_int_nonneg EP 11 "$EP"
pai_int_nonneg NUM_EXPERT_SPLITS 12 "$NUM_EXPERT_SPLITS"
pai_enum mg2hf 13 "$mg2hf" true false
if ((NUM_EXPERTS == 0)); then
	((EP <= 1)) || pai_die "EP (arg 11): ${EP} applies to mixture-of-experts models; NUM_EXPERTS (arg 9) is 0 (dense): pass 0 or 1"
	((NUM_EXPERT_SPLITS == 0)) || pai_die "NUM_EXPERT_SPLITS (arg 12): ${NUM_EXPERT_SPLITS} applies to mixture-of-experts models; NUM_EXPERTS (arg 9) is 0 (dense): pass 0"
else
	((EXPERTS_TOPK >= 1 && EXPERTS_TOPK <= NUM_EXPERTS)) ||
		pai_die "EXPERTS_TOPK (arg 10): ${EXPERTS_TOPK} must be between 1 and NUM_EXPERTS (arg 9) ${NUM_EXPERTS}"
	((EP >= 1 && NUM_EXPERTS % EP == 0)) ||
		pai_die "EP (arg 11): ${EP} must be a positive divisor of NUM_EXPERTS (arg 9) ${NUM_EXPERTS} (each expert-parallel rank's experts go to mp_rank_XX_EEE)"
	SPLITS=$((NUM_EXPERT_SPLITS > 1 ? NUM_EXPERT_SPLITS : 1)) # Pai's hf2mcore.py divides by 0 on 0
	[ "$mg2hf" = true ] || ((INTERMEDIATE_SIZE % SPLITS == 0)) ||
		pai_die "NUM_EXPERT_SPLITS (arg 12): ${NUM_EXPERT_SPLITS} does not divide MODEL_SIZE ${MODEL_SIZE}'s FFN hidden size ${INTERMEDIATE_SIZE}"
fi
pai_check_checkpoint HG_CKPT_PATH 2 "$HG_CKPT_PATH" 1 ""
if [ "$mg2hf" = false ]; then
	pai_check_checkpoint SOURCE_CKPT_PATH 4 "$SOURCE_CKPT_PATH" 1 ""
else
	[ -e "$SOURCE_CKPT_PATH" ] || pai_die "SOURCE_CKPT_PATH (arg 4): ${SOURCE_CKPT_PATH} not found"
fi
pai_check_writable TARGET_CKPT_PATH 5 "$TARGET_CKPT_PATH"

DTYPE=fp16 # hf2mcore.py runs with --fp16; hf2mcore_70b.py stores bf16
[ "$MODEL_SIZE" = 70B ] && DTYPE=bf16

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
if ((NUM_EXPERTS > 0)); then # Pai's expert_options; the split only shapes an upcycled model
	args+=(--moe-router-topk "$EXPERTS_TOPK" --num-experts "$NUM_EXPERTS" --expert-model-parallel-size 1 --target_expert_model_parallel_size "$EP")
	if [ "$mg2hf" = false ]; then args+=(--num_expert_split_size "$SPLITS"); fi
fi
pai_convert_launch "$HG_CKPT_PATH"
