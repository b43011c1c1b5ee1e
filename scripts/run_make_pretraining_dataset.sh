#!/bin/bash
# Tokenize a cleaned corpus into Megatron's .bin/.idx with gomegatron's tools/preprocess:
# Pai-Megatron-Patch's toolkits/pretrain_data_preprocessing/run_make_pretraining_dataset.sh
# with the same arguments and preprocess_data.py flags. Both of Pai's argument orders work:
#   2024+ (5): MEGATRON_PATCH_PATH input_dir tokenizer output_dir load_dir
#   2023  (6): MEGATRON_PATH MEGATRON_PATCH_PATH input_dir tokenizer output_dir load_dir
# See scripts/README.md.
#
# bash run_make_pretraining_dataset.sh /workspace/Pai-Megatron-Patch /mnt/llama2-datasets/wudao/cleaned_zst/ llamabpe /mnt/llama2-datasets/wudao/ /mnt/llama2-ckpts/Llama-2-7b-hf
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail
START_TIME=$SECONDS

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} [MEGATRON_PATH] MEGATRON_PATCH_PATH input_data_dir tokenizer output_data_dir load_dir

Tokenize jsonl (.jsonl/.json, also .zst/.gz compressed: Pai's cleaned_zst/*.jsonl.zst, field
\"text\") into {output_data_dir}/wudao_<tokenizer>_text_document.bin/.idx (mistralbpe:
SlimPajama_mistralbpe_text_document, as Pai names it) with tools/preprocess
(Pai-Megatron-Patch's arguments, in order; 5 arguments, or 6 with Pai's 2023 MEGATRON_PATH first):
  [MEGATRON_PATH]      2023 order only: accepted and ignored
  MEGATRON_PATCH_PATH  accepted and ignored (gomegatron needs no Megatron or Pai checkout)
  input_data_dir       --input: a folder of jsonl files (or one file)
  tokenizer            llamabpe (LLamaTokenizer), qwenbpe (Qwen2Tokenizer), mistralbpe
                       (MistralTokenizer), falconbpe (FalconTokenizer), starcoderbpe
                       (StarcoderTokenizerFromHF) or bloombpe (BloomTokenizerFromHF), as Pai maps
                       them; its jiebabpe glmchinesebpe glm130bbpe galacticabpe are not supported
  output_data_dir      --output-prefix {output_data_dir}/wudao_<tokenizer> (created if missing)
  load_dir             --load: the Hugging Face model folder with the tokenizer
                       (tokenizer.json; llamabpe and mistralbpe also tokenizer.model)

Environment: DRY_RUN=1 prints the preprocess command and stops; PREPROCESS names the
preprocess binary (default: bin/preprocess built from tools/preprocess).

example: ${PAI_SCRIPT} /workspace/Pai-Megatron-Patch /mnt/llama2-datasets/wudao/cleaned_zst/ llamabpe /mnt/llama2-datasets/wudao/ /mnt/llama2-ckpts/Llama-2-7b-hf"

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
case $# in
5) off=0 ;;
6) off=1 ;;
*)
	printf '%s: expected 5 or 6 arguments, got %s\n\n' "${PAI_SCRIPT}" "$#" >&2
	pai_usage
	;;
esac
[ "$off" -eq 1 ] && shift # MEGATRON_PATH (2023 order), ignored
MEGATRON_PATCH_PATH=$1  # ignored
input_data_dir=$2
tokenizer=$3
output_data_dir=$4
load_dir=$5

# Pai's tokenizer names, their --patch-tokenizer-type and output name.
supported="llamabpe qwenbpe mistralbpe falconbpe starcoderbpe bloombpe"
prefix=wudao_${tokenizer}
case $tokenizer in
llamabpe) patch_tokenizer_type=LLamaTokenizer ;;
qwenbpe) patch_tokenizer_type=Qwen2Tokenizer ;;
mistralbpe) patch_tokenizer_type=MistralTokenizer prefix=SlimPajama_mistralbpe ;;
falconbpe) patch_tokenizer_type=FalconTokenizer ;;
starcoderbpe) patch_tokenizer_type=StarcoderTokenizerFromHF ;;
bloombpe) patch_tokenizer_type=BloomTokenizerFromHF ;;
jiebabpe)
	pai_die "tokenizer (arg $((3 + off))): 'jiebabpe' is not supported: Pai's JiebaBPETokenizer needs its own tokenizer.json downloaded from Alibaba's OSS and the jieba segmenter; supported: ${supported}"
	;;
glmchinesebpe | glm130bbpe)
	pai_die "tokenizer (arg $((3 + off))): '${tokenizer}' is not supported: Pai's GLM tokenizers are THUDM's remote code (glm-10b-chinese) or the icetk package (GLM-130B); supported: ${supported}"
	;;
galacticabpe)
	pai_die "tokenizer (arg $((3 + off))): 'galacticabpe' is not supported: Pai's OPTTokenizer (slow, use_fast=False) is not implemented; supported: ${supported}"
	;;
*) pai_die "tokenizer (arg $((3 + off))): '${tokenizer}' is not one of: ${supported}" ;;
esac

[ -e "$input_data_dir" ] || pai_die "input_data_dir (arg $((2 + off))): ${input_data_dir} not found"
pai_check_writable output_data_dir $((4 + off)) "$output_data_dir"
[ -d "$load_dir" ] || pai_die "load_dir (arg $((5 + off))): ${load_dir} is not a directory"
case $tokenizer in
llamabpe | mistralbpe)
	[ -f "$load_dir/tokenizer.json" ] || [ -f "$load_dir/tokenizer.model" ] ||
		pai_die "load_dir (arg $((5 + off))): ${load_dir} has neither tokenizer.json nor tokenizer.model"
	;;
*)
	[ -f "$load_dir/tokenizer.json" ] ||
		pai_die "load_dir (arg $((5 + off))): ${load_dir} has no tokenizer.json (${patch_tokenizer_type} reads the fast tokenizer's file)"
	;;
esac

# Pai's preprocess_data.py flags, unchanged: tools/preprocess accepts Pai's spellings.
command_args=(
	--input "${input_data_dir}"
	--language zh
	--output-prefix "${output_data_dir}/${prefix}"
	--dataset-impl mmap
	--patch-tokenizer-type "${patch_tokenizer_type}"
	--load "${load_dir}"
	--workers 16
	--append-eod
)

if [ "${DRY_RUN:-0}" != 0 ]; then
	pai_quote preprocess "${command_args[@]}"
	exit 0
fi

PREPROCESS_BIN=$(pai_tool preprocess PREPROCESS ./tools/preprocess)
mkdir -p "$output_data_dir"
pai_quote "$PREPROCESS_BIN" "${command_args[@]}"
"$PREPROCESS_BIN" "${command_args[@]}"

ELAPSED_TIME=$((SECONDS - START_TIME))
echo "$((ELAPSED_TIME / 60)) min $((ELAPSED_TIME % 60)) sec"
