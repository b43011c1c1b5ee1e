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

# Every argument is checked before anything is launched; one process per TP rank.
pai_generate_args "$@" # ENV … REPETITION_PENALTY; launcher, load, input and pr options

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

pai_generate_launch # Pai's option order (rapidformer, load, input, pr, gqa); DRY_RUN=1 prints the command
