#!/bin/bash
# Tokenize jsonl into Megatron-Core's .bin/.idx with gomegatron's tools/preprocess:
# Pai-Megatron-Patch's toolkits/pretrain_data_preprocessing/run_make_pretraining_dataset_megatron.sh
# (v2, 5 arguments, commit 7097866) with the same arguments and preprocess_data_megatron.py
# flags (tools/preprocess accepts them all). See scripts/README.md.
#
# bash run_make_pretraining_dataset_megatron.sh /mnt/qwen-datasets/wudao/merged_wudao_cleaned.json Qwen2Tokenizer text /mnt/qwen-datasets/ /mnt/qwen-ckpts/Qwen1.5-0.5B
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail
START_TIME=$SECONDS

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
PAI_ENV_HELP=$PAI_PREPROCESS_ENV_HELP pai_set_usage "Tokenize jsonl into {output_data_dir}/mmap_<model>_datasets_<key>_document.bin/.idx with tools/preprocess" \
	"/mnt/qwen-datasets/wudao/merged_wudao_cleaned.json Qwen2Tokenizer text /mnt/qwen-datasets/ /mnt/qwen-ckpts/Qwen1.5-0.5B" \
	"input_data_dir=--input: a jsonl file (.jsonl/.json, also .zst/.gz), a folder of them or a glob" \
	"tokenizer=Qwen2Tokenizer (mmap_qwen2_datasets) | LLamaTokenizer (mmap_llama_datasets); DeepSeekV2Tokenizer is not supported" \
	"json_keys=--json-keys: the field(s) to tokenize, blank-separated (Qwen2Tokenizer; LLamaTokenizer reads text, as Pai's)" \
	"output_data_dir=--output-prefix {output_data_dir}/mmap_<model>_datasets (created if missing)" \
	"load_dir=--load: the Hugging Face model folder with the tokenizer (tokenizer.json)"
pai_nargs 5 $#
input_data_dir=$1
tokenizer=$2
json_keys=$3
output_data_dir=$4
load_dir=$5

# Every argument is checked before anything is created or run.
case $tokenizer in
Qwen2Tokenizer | LLamaTokenizer) ;;
DeepSeekV2Tokenizer)
	pai_die "tokenizer (arg 2): DeepSeekV2Tokenizer is not supported: tools/preprocess has no DeepSeek-V2 tokenizer (Pai's encodes without its BOS); supported: Qwen2Tokenizer LLamaTokenizer"
	;;
*) pai_die "tokenizer (arg 2): '${tokenizer}' is not one of: Qwen2Tokenizer LLamaTokenizer (Pai's script does nothing for it)" ;;
esac
if [ ! -e "$input_data_dir" ] && ! compgen -G "$input_data_dir" >/dev/null; then
	pai_die "input_data_dir (arg 1): ${input_data_dir} not found (a jsonl file, a folder of them or a glob)"
fi
read -r -a keys <<<"$json_keys"
[ ${#keys[@]} -gt 0 ] || pai_die "json_keys (arg 3): empty (the jsonl field to tokenize, e.g. text)"
pai_check_writable output_data_dir 4 "$output_data_dir"
[ -d "$load_dir" ] || pai_die "load_dir (arg 5): ${load_dir} is not a directory"
if [ "$tokenizer" = Qwen2Tokenizer ]; then
	[ -f "$load_dir/tokenizer.json" ] || pai_die "load_dir (arg 5): ${load_dir} has no tokenizer.json (Qwen2Tokenizer reads the fast tokenizer's file)"
else
	[ -f "$load_dir/tokenizer.json" ] || [ -f "$load_dir/tokenizer.model" ] ||
		pai_die "load_dir (arg 5): ${load_dir} has neither tokenizer.json nor tokenizer.model"
fi

# Pai's preprocess_data_megatron.py flags, in its order.
case $tokenizer in
Qwen2Tokenizer)
	command_args=(--input "${input_data_dir}" --output-prefix "${output_data_dir}/mmap_qwen2_datasets"
		--patch-tokenizer-type Qwen2Tokenizer --json-keys "${keys[@]}" --load "${load_dir}" --workers 2 --partitions 2
		--keep-sequential-samples --append-eod)
	;;
LLamaTokenizer)
	command_args=(--input "${input_data_dir}" --output-prefix "${output_data_dir}/mmap_llama_datasets"
		--patch-tokenizer-type LLamaTokenizer --load "${load_dir}" --workers 16 --partitions 1
		--keep-sequential-samples --append-eod)
	;;
esac
pai_out_dir=$output_data_dir
pai_preprocess_run "${command_args[@]}"
pai_elapsed
