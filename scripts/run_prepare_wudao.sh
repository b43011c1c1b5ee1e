#!/bin/bash
# Clean raw WuDaoCorpora 2.0 into Pai's compressed jsonl pieces with gomegatron's
# tools/preprocess: Pai-Megatron-Patch's toolkits/pretrain_data_preprocessing/run_prepare_wudao.sh
# (v2, commit 7097866). Pai's script takes no arguments (its data_dir is edited in place);
# here data_dir may be given (default Pai's). The steps are Pai's, with tools/preprocess
# --wudao in place of preprocess_wudao2.py -k text -p 32 plus the merge:
#   {dataset_dir}/wudao/merged_wudao_cleaned.json   the cleaned records, one jsonl line each
#   {dataset_dir}/split/NN.jsonl                     NUM_PIECE pieces (split -l lines/NUM_PIECE)
#   {dataset_dir}/cleaned_zst/NN.jsonl.zst           each piece compressed (zstd)
# then the pieces and the merged file are removed; dataset_dir is data_dir's parent. The
# result is run_make_pretraining_dataset.sh's input. See scripts/README.md.
#
# bash run_prepare_wudao.sh /mnt/mixtral-datasets/wudao_200g
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
PAI_ENV_HELP="${PAI_PREPROCESS_ENV_HELP}
NUM_PIECE: the number of pieces (default 10, as Pai's)." pai_set_usage \
	"Clean raw WuDaoCorpora 2.0 into {dataset_dir}/cleaned_zst/NN.jsonl.zst with tools/preprocess --wudao, split and zstd" \
	"/mnt/mixtral-datasets/wudao_200g" \
	"data_dir=optional (Pai's script has none: data_dir is written in): the folder of raw WuDao *.json files, default Pai's /mnt/mixtral-datasets/wudao_200g; its parent is dataset_dir"
if [ $# -gt 1 ]; then
	printf '%s: expected at most 1 argument, got %s\n\n' "${PAI_SCRIPT}" "$#" >&2
	pai_usage
fi
data_dir=${1:-/mnt/mixtral-datasets/wudao_200g}
NUM_PIECE=${NUM_PIECE:-10}

# Every setting is checked before anything is created or run.
pai_wudao_clean_args 1 "$data_dir" "$(dirname "$data_dir")/wudao/merged_wudao_cleaned.json"
[[ $NUM_PIECE =~ ^[1-9][0-9]{0,8}$ ]] || pai_die "NUM_PIECE='${NUM_PIECE}' (environment) is not a positive integer"
dataset_dir=$(dirname "$data_dir")
merged=${dataset_dir}/wudao/merged_wudao_cleaned.json
split_dir=${dataset_dir}/split
pai_check_writable data_dir 1 "$dataset_dir/wudao" "${dataset_dir} (data_dir's parent)"
[ ! -e "$split_dir" ] || pai_die "data_dir (arg 1): ${split_dir} exists (Pai's script splits into it and removes it afterwards)"
[ ! -e "$merged" ] || pai_die "data_dir (arg 1): ${merged} exists (Pai's script writes it and removes it afterwards)"
pai_need_tools split zstd

if [ "${DRY_RUN:-0}" != 0 ]; then
	pai_quote preprocess "${wudao_clean_args[@]}"
	printf '# then: split -l <lines / %s> into %s/NN.jsonl, zstd each into %s/cleaned_zst/NN.jsonl.zst, remove %s and %s\n' \
		"$NUM_PIECE" "$split_dir" "$dataset_dir" "$split_dir" "$merged"
	exit 0
fi
pai_out_dir=${dataset_dir}/wudao
(pai_preprocess_run "${wudao_clean_args[@]}")

NUM=$(sed -n '$=' "$merged")
NUM=${NUM:-0}
lines=$((NUM / NUM_PIECE))
((lines > 0)) || lines=1 # Pai's split -l 0 fails on fewer records than pieces
echo "${NUM} records, ${lines} per piece (NUM_PIECE ${NUM_PIECE})"
mkdir "$split_dir"
pai_split_zst "$merged" "$lines" "$split_dir/" "${dataset_dir}/cleaned_zst"
rm -rf "$split_dir"
rm "$merged"
