#!/bin/bash
# Hugging Face ⇄ Megatron (legacy model) checkpoint conversion of Baichuan 2 with gomegatron:
# Pai-Megatron-Patch's toolkits/model_checkpoints_convertor/baichuan2/model_convertor.sh (8
# arguments) with the same arguments, running tools/convert instead of
# checkpoint_reshaping_and_interoperability.py: W_pack split into the legacy model's
# query_key_value, fp16 as Pai stores it, the vocabulary unpadded. Baichuan 2's NormHead is
# recorded (args use_normhead), which the training and generation scripts here pass.
#
# bash model_convertor.sh /root/Megatron-LM-23.04/ /mnt/baichuan2-ckpts/Baichuan2-7B-Base/ /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1 1 1 baichuan2-7b 0 false
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh model_convertor.sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_MODEL="Baichuan 2"
PAI_NAMES="baichuan2-7b | baichuan2-13b, or baichuan2-tiny | baichuan2-small (CPU sizes), checked against config.json"
PAI_EXAMPLE="/root/Megatron-LM-23.04/ /mnt/baichuan2-ckpts/Baichuan2-7B-Base/ /mnt/baichuan2-ckpts/Baichuan2-7B-Base-to-mg-tp1-pp1 1 1 baichuan2-7b 0 false"

# pai_hf2megatron_model MN POS: Pai's convertor knows baichuan2-7b and baichuan2-13b and
# stores fp16.
pai_hf2megatron_model() {
	DTYPE=fp16
	case $1 in
	baichuan2-7b | baichuan2-13b) pai_baichuan2_shape "$(tr b B <<<"${1#baichuan2-}")" "$2" ;;
	baichuan2-tiny | baichuan2-small) pai_baichuan2_shape "${1#baichuan2-}" "$2" ;;
	*) pai_die "MN (arg $2): '$1' is not one of: baichuan2-7b baichuan2-13b baichuan2-tiny baichuan2-small" ;;
	esac
}

pai_hf2megatron "$@"
