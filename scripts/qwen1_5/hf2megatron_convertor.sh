#!/bin/bash
# Hugging Face ⇄ Megatron (legacy model) checkpoint conversion of Qwen1.5 with gomegatron:
# Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/qwen/hf2megatron_convertor.sh
# (v2, 8 arguments, commit 7097866) with the same arguments, running tools/convert instead of
# hf2megatron_qwen1.5.py: the legacy model's keys (QKV biases) that the
# run_*_megatron_qwen*.sh scripts load, bf16 as Pai stores it, the vocabulary unpadded.
# Pai's other branch, Qwen1.0 (hf2megatron_qwen1.0.py: MN without "qwen1.5": qwen-7b,
# qwen-14b, qwen-72b), converts QWenLMHeadModel folders in fp16, as Pai's does.
#
# bash hf2megatron_convertor.sh ../../../Megatron-LM-231007/ /mnt/qwen-ckpts/Qwen1.5-7B-Chat/ /mnt/qwen-ckpts/Qwen1.5-7B-Chat-hf2mg41/ 4 1 qwen1.5-7b 0 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh hf2megatron_convertor.sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_MODEL=Qwen1.5
PAI_NAMES="qwen1.5 (any size: config.json's) | qwen1.5-0.5b | qwen1.5-1.8b | qwen1.5-4b | qwen1.5-7b | qwen1.5-14b | qwen1.5-32b | qwen1.5-72b, or qwen1.5-tiny | qwen1.5-small (CPU sizes), checked against config.json; Qwen1.0: qwen-7b | qwen-14b | qwen-72b (config.json's shape, fp16)"
PAI_EXAMPLE="../../../Megatron-LM-231007/ /mnt/qwen-ckpts/Qwen1.5-7B-Chat/ /mnt/qwen-ckpts/Qwen1.5-7B-Chat-hf2mg41/ 4 1 qwen1.5-7b 0 false"

# pai_hf2megatron_model MN POS: Pai runs hf2megatron_qwen1.5.py (bf16) for a name with
# "qwen1.5" in it, else hf2megatron_qwen1.0.py (fp16).
pai_hf2megatron_model() {
	local size
	DTYPE=bf16
	case $1 in
	qwen1.5) # Pai's header example: any Qwen1.5, its shape config.json's
		NUM_LAYERS='' HIDDEN_SIZE='' NUM_ATTN_HEADS='' INTERMEDIATE_SIZE='' NUM_QUERY_GROUPS=''
		;;
	*qwen1.5*)
		size=${1##*qwen1.5-}
		case $size in
		0.5b | 1.8b | 4b | 7b | 14b | 32b | 72b) pai_qwen15_shape "${size%b}B" "$2" ;;
		tiny | small) pai_qwen15_shape "$size" "$2" ;;
		a2.7b) pai_die "MN (arg $2): '$1' is Qwen1.5-MoE, which Pai's legacy convertor does not convert either" ;;
		*) pai_die "MN (arg $2): '$1' is not one of: qwen1.5-0.5b qwen1.5-1.8b qwen1.5-4b qwen1.5-7b qwen1.5-14b qwen1.5-32b qwen1.5-72b qwen1.5-tiny qwen1.5-small" ;;
		esac
		;;
	qwen-7b | qwen-14b | qwen-72b) # Qwen1.0 (QWenLMHeadModel): its shape config.json's
		NUM_LAYERS='' HIDDEN_SIZE='' NUM_ATTN_HEADS='' INTERMEDIATE_SIZE='' NUM_QUERY_GROUPS=''
		DTYPE=fp16
		;;
	*) pai_die "MN (arg $2): '$1' is not one of: qwen1.5 qwen1.5-0.5b qwen1.5-1.8b qwen1.5-4b qwen1.5-7b qwen1.5-14b qwen1.5-32b qwen1.5-72b qwen1.5-tiny qwen1.5-small (Qwen1.5), qwen-7b qwen-14b qwen-72b (Qwen1.0)" ;;
	esac
}

pai_hf2megatron "$@"
