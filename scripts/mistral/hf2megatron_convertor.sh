#!/bin/bash
# Hugging Face ⇄ Megatron (legacy model) checkpoint conversion of Mistral-7B with gomegatron:
# Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/mistral/hf2megatron_convertor.sh
# (v2, 8 arguments, commit 7097866) with the same arguments, running tools/convert instead of
# hf2megatron.py: the legacy model's keys that the run_*_megatron_mistral*.sh scripts load,
# fp16 as Pai stores it, the vocabulary unpadded. See scripts/README.md.
#
# bash hf2megatron_convertor.sh ../../.. /mnt/mistral-ckpts/Mistral-7B-v0.1 /mnt/mistral-ckpts/Mistral-7B-v0.1-hf-to-mg-tp4-pp1 4 1 mistral-7b 0 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh hf2megatron_convertor.sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_MODEL=Mistral
PAI_NAMES="mistral-7b (Pai's name), or mistral-tiny | mistral-small (CPU sizes); checked against config.json"
PAI_EXAMPLE="../../.. /mnt/mistral-ckpts/Mistral-7B-v0.1 /mnt/mistral-ckpts/Mistral-7B-v0.1-hf-to-mg-tp4-pp1 4 1 mistral-7b 0 false"

# pai_hf2megatron_model MN POS: Pai's hf2megatron.py converts Mistral-7B (stored fp16).
pai_hf2megatron_model() {
	case $1 in
	mistral-7b) pai_mistral_shape 7B "$2" ;;
	mistral-tiny | mistral-small) pai_mistral_shape "${1#mistral-}" "$2" ;;
	mixtral*) pai_die "MN (arg $2): '$1': Pai's legacy convertor has no Mixtral; convert it with mistral/hf2mcore_convertor.sh (Megatron-Core)" ;;
	*) pai_die "MN (arg $2): '$1' is not one of: mistral-7b mistral-tiny mistral-small" ;;
	esac
	DTYPE=fp16
}

pai_hf2megatron "$@"
