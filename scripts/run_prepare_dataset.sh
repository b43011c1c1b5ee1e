#!/bin/bash
# Clean raw WuDaoCorpora 2.0 into compressed jsonl pieces with gomegatron's tools/preprocess:
# Pai-Megatron-Patch's toolkits/pretrain_data_preprocessing/run_prepare_dataset.sh (v2, commit
# 7097866), whose paths are written into the script; here they may be given (defaults Pai's).
# The steps are Pai's, with tools/preprocess --wudao in place of clean_raw_text.py -p 32
# plus the merge:
#   {output_dir}/merged_wudao_cleaned.json   the cleaned records, one jsonl line each
#   {output_dir}/NN.jsonl                    pieces of 6000000 lines (split -l 6000000)
#   {output_dir}/NN.jsonl.zst                each piece compressed (zstd)
# See scripts/README.md.
#
# bash run_prepare_dataset.sh WuDaoCorpus2.0_base_200G /cpfs01/user/paigpt/wudao
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
PAI_ENV_HELP=$PAI_PREPROCESS_ENV_HELP pai_set_usage \
	"Clean raw WuDaoCorpora 2.0 into {output_dir}/NN.jsonl.zst with tools/preprocess --wudao, split and zstd" \
	"WuDaoCorpus2.0_base_200G /cpfs01/user/paigpt/wudao" \
	"data_dir=optional (Pai's script has none: its paths are written in): the folder of raw WuDao *.json files, default Pai's WuDaoCorpus2.0_base_200G" \
	"output_dir=optional: where the merged jsonl and its pieces go (default Pai's /cpfs01/user/paigpt/wudao)"
if [ $# -gt 2 ]; then
	printf '%s: expected at most 2 arguments, got %s\n\n' "${PAI_SCRIPT}" "$#" >&2
	pai_usage
fi
data_dir=${1:-WuDaoCorpus2.0_base_200G}
output_dir=${2:-/cpfs01/user/paigpt/wudao}

# Every setting is checked before anything is created or run.
merged=${output_dir}/merged_wudao_cleaned.json
pai_wudao_clean_args 1 "$data_dir" "$merged"
pai_check_writable output_dir 2 "$output_dir"
pai_need_tools split zstd

if [ "${DRY_RUN:-0}" != 0 ]; then
	pai_quote preprocess "${wudao_clean_args[@]}"
	printf '# then: split -l 6000000 into %s/NN.jsonl, zstd each into %s/NN.jsonl.zst\n' "$output_dir" "$output_dir"
	exit 0
fi
pai_out_dir=$output_dir
(pai_preprocess_run "${wudao_clean_args[@]}")
pai_split_zst "$merged" 6000000 "${output_dir}/" "$output_dir" keep
