#!/bin/bash
# Offline text generation with a Llama-2 checkpoint in gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_text_generation_megatron_llama.sh (2023 layout, 18 arguments) with the
# same arguments and Megatron flags, launching `golaunch … generate` instead of
# `torchrun … generate_text_megatron_llama.py`. See scripts/README.md.
#
# bash run_text_generation_megatron_llama.sh dsw /workspace/PAI-Megatron-Patch /mnt/llama-ckpts/Ziya-LLaMA-13B-to-megatron-tp1-pp1 13B 1 1 1024 80 0 fp16 0 512 512 /mnt/llama-datasets/gen.jsonl /mnt/llama-datasets/cn_output.txt 0.85 1 1
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH CHECKPOINT_PATH MODEL_SIZE TP BS SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TOP_K INPUT_SEQ_LEN OUTPUT_SEQ_LEN INPUT_FILE OUTPUT_FILE TOP_P TEMPERATURE REPETITION_PENALTY

Generate text with \`golaunch … generate\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                  dsw | dlc (either way one node, localhost, one process per TP rank)
   2 MEGATRON_PATCH_PATH  accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 CHECKPOINT_PATH      --load (a Megatron checkpoint folder), or none
   4 MODEL_SIZE           7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)
   5 TP                   --tensor-model-parallel-size (also the number of processes)
   6 BS                   --micro-batch-size (prompts per batch)
   7 SEQ_LEN              --seq-length and --max-position-embeddings
   8 PAD_LEN              --max-padding-length
   9 EXTRA_VOCAB_SIZE     --extra-vocab-size (usually 0)
  10 PR                   fp16 | bf16
  11 TOP_K                --top-k (0: off; 1: greedy); TOP_K or TOP_P must be 0
  12 INPUT_SEQ_LEN        --input-len
  13 OUTPUT_SEQ_LEN       --out-seq-length (tokens generated)
  14 INPUT_FILE           --text-generate-input-file: jsonl with a \"query\" per line, or none
  15 OUTPUT_FILE          --text-generate-output-file: one generated text per line
  16 TOP_P                --top-p (0: off)
  17 TEMPERATURE          --temperature
  18 REPETITION_PENALTY   --repetition-penalty (1.1-1.5 reduces repetition; Pai's default 1.2)

Environment: DRY_RUN=1 prints the golaunch command and stops; GOLAUNCH names the golaunch
binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw /workspace/PAI-Megatron-Patch /mnt/llama-ckpts/Ziya-LLaMA-13B-to-megatron-tp1-pp1 13B 1 1 1024 80 0 fp16 0 512 512 /mnt/llama-datasets/gen.jsonl /mnt/llama-datasets/cn_output.txt 0.85 1 1"

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
pai_nargs 18 $#

ENV=$1
MEGATRON_PATCH_PATH=$2 # ignored
CHECKPOINT_PATH=$3
MODEL_SIZE=$4
TP=$5
BS=$6
SEQ_LEN=$7
PAD_LEN=$8
EXTRA_VOCAB_SIZE=$9
PR=${10}
TOP_K=${11}
INPUT_SEQ_LEN=${12}
OUTPUT_SEQ_LEN=${13}
INPUT_FILE=${14}
OUTPUT_FILE=${15}
TOP_P=${16}
TEMPERATURE=${17}
REPETITION_PENALTY=${18}

# Every argument is checked before anything is launched.
pai_enum ENV 1 "$ENV" dsw dlc
pai_model_shape "$MODEL_SIZE" 4
if [ "$CHECKPOINT_PATH" != none ]; then
	pai_check_checkpoint CHECKPOINT_PATH 3 "$CHECKPOINT_PATH" 4
fi
pai_int_pos TP 5 "$TP"
pai_int_pos BS 6 "$BS"
pai_int_pos SEQ_LEN 7 "$SEQ_LEN"
pai_int_pos PAD_LEN 8 "$PAD_LEN"
pai_int_nonneg EXTRA_VOCAB_SIZE 9 "$EXTRA_VOCAB_SIZE"
pai_enum PR 10 "$PR" fp16 bf16
pai_int_nonneg TOP_K 11 "$TOP_K"
pai_int_nonneg INPUT_SEQ_LEN 12 "$INPUT_SEQ_LEN"
pai_int_pos OUTPUT_SEQ_LEN 13 "$OUTPUT_SEQ_LEN"
if [ "$INPUT_FILE" != none ]; then
	pai_check_file INPUT_FILE 14 "$INPUT_FILE"
	[ ! -d "$OUTPUT_FILE" ] || pai_die "OUTPUT_FILE (arg 15): ${OUTPUT_FILE} is a directory"
	case $OUTPUT_FILE in
	/*/*) pai_check_writable OUTPUT_FILE 15 "${OUTPUT_FILE%/*}" "$OUTPUT_FILE" ;;
	/*) pai_check_writable OUTPUT_FILE 15 / "$OUTPUT_FILE" ;;
	*/*) pai_check_writable OUTPUT_FILE 15 "${OUTPUT_FILE%/*}" "$OUTPUT_FILE" ;;
	*) pai_check_writable OUTPUT_FILE 15 . "$OUTPUT_FILE" ;;
	esac
fi
pai_float TOP_P 16 "$TOP_P"
awk -v p="$TOP_P" 'BEGIN { exit !(p <= 1) }' || pai_die "TOP_P (arg 16): ${TOP_P} is above 1"
if [ "$TOP_K" -gt 0 ] && ! pai_is_zero "$TOP_P"; then
	pai_die "TOP_K (arg 11) ${TOP_K} and TOP_P (arg 16) ${TOP_P}: one of them must be 0"
fi
pai_float TEMPERATURE 17 "$TEMPERATURE"
! pai_is_zero "$TEMPERATURE" || pai_die "TEMPERATURE (arg 17): must be above 0 (use TOP_K 1 for greedy decoding)"
pai_float REPETITION_PENALTY 18 "$REPETITION_PENALTY"
! pai_is_zero "$REPETITION_PENALTY" || pai_die "REPETITION_PENALTY (arg 18): must be above 0 (1 is off)"

# Pai hard-codes GPUS_PER_NODE=1, which only works for TP=1: one process per TP rank here.
MASTER_ADDR=localhost
MASTER_PORT=$(shuf -n 1 -i 10000-65535)
GPUS_PER_NODE=${TP}
NNODES=1
NODE_RANK=0
PP=1
pai_check_parallel 5 5
launcher_options=(--nproc_per_node "$GPUS_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK"
	--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")

load_options=()
[ "$CHECKPOINT_PATH" != none ] && load_options=(--load "$CHECKPOINT_PATH")
input_options=()
[ "$INPUT_FILE" != none ] && input_options=(--text-generate-output-file "${OUTPUT_FILE}" --text-generate-input-file "${INPUT_FILE}")
case $PR in
fp16) pr_options=(--fp16) ;;
bf16) pr_options=(--bf16) ;;
esac

rapidformer_options=(
	--micro-batch-size "${BS}"
	--num-layers "${NUM_LAYERS}"
	--hidden-size "${HIDDEN_SIZE}"
	--num-attention-heads "${NUM_ATTN_HEADS}"
	--ffn-hidden-size "${INTERMEDIATE_SIZE}"
	--seq-length "${SEQ_LEN}"
	--max-position-embeddings "${SEQ_LEN}"
	--tensor-model-parallel-size "${TP}"
	--pipeline-model-parallel-size 1
	--no-load-optim
	--no-load-rng
	--top-p "${TOP_P}"
	--temperature "${TEMPERATURE}"
	--top-k "${TOP_K}"
	--input-len "${INPUT_SEQ_LEN}"
	--out-seq-length "${OUTPUT_SEQ_LEN}"
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--max-padding-length "${PAD_LEN}"
	--use-distributed-optimizer
	--swiglu
	--use-llama2-rotary-position-embeddings
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--patch-tokenizer-type LLamaTokenizer
	--normalization RMSNorm
	--repetition-penalty "${REPETITION_PENALTY}"
	--disable-bias-linear
)

# Pai's order: rapidformer, load, input, pr, gqa.
command_args=(generate "${rapidformer_options[@]}" "${load_options[@]}" "${input_options[@]}" "${pr_options[@]}" "${gqa_options[@]}")

if [ "${DRY_RUN:-0}" != 0 ]; then
	pai_quote golaunch "${launcher_options[@]}" "${command_args[@]}"
	exit 0
fi

GOLAUNCH_BIN=$(pai_tool golaunch GOLAUNCH ./cmd/golaunch path)
export CUDA_DEVICE_MAX_CONNECTIONS=1
pai_quote "$GOLAUNCH_BIN" "${launcher_options[@]}" "${command_args[@]}"
"$GOLAUNCH_BIN" "${launcher_options[@]}" "${command_args[@]}"
