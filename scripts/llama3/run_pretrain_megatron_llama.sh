#!/bin/bash
# Continued pretraining of a Llama-3 model with gomegatron: Pai-Megatron-Patch's
# examples/llama3/run_pretrain_megatron_llama.sh (v2, 24 arguments, commit 7097866) with the
# same arguments, derived values and Megatron flags, launching `golaunch … pretrain` instead
# of `torchrun … ../llama2/pretrain_megatron_llama.py`. See scripts/README.md.
#
# bash run_pretrain_megatron_llama.sh dsw ../../ 8B 1 8 1e-5 1e-6 128 128 256 bf16 4 1 sel true false false false 100000 /mnt/llama3-datasets/wudao_llama3bpe_content_document /mnt/llama3-ckpts/Meta-Llama-3-8B-to-megatron-tp4-pp1 100000000 10000 /mnt/output_megatron_llama3
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Pretrain a Llama-3 model with \`golaunch … pretrain\`" \
	"dsw ../../ 8B 1 8 1e-5 1e-6 128 128 256 bf16 4 1 sel true false false false 100000 /mnt/llama3-datasets/wudao_llama3bpe_content_document /mnt/llama3-ckpts/Meta-Llama-3-8B-to-megatron-tp4-pp1 100000000 10000 /mnt/output_megatron_llama3" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=8B (GQA, 8 groups) | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (--max-position-embeddings is 8192)" \
	"PAD_LEN=--max-padding-length (sample length of idxmap/raw datasets)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 256 for Llama-3 (its added special tokens)" \
	PR TP PP AC DO FL SP \
	"TE=true | false (--transformer-impl transformer_engine | local)" \
	SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path and --data-path: a .bin/.idx prefix (Pai's idxmap samples) or a raw .json file" \
	"PRETRAIN_CHECKPOINT_PATH=--load, or none to start from scratch" \
	TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_llama3_shape pai_train_args "$@" # ENV … TE, arguments 1-18
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS, dataset_paths

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$TE" = false ] && te_options=(--transformer-impl local) # Pai's Llama-3 scripts say so
MAX_POSITION_EMBEDDINGS=8192

NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_head_options
pai_train_options linear 0.006 # pai_optim_options, pai_shape_options
pai_llama_arch --use-rotary-position-embeddings # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--split 99,1,0
	--train-data-path "${dataset_paths[@]}"
	--data-path "${dataset_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --init-method-std 0.006, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_head_options[@]}" # --log-interval 1 … --pipeline-model-parallel-size, in Pai's order
	--dataset LLama-Pretrain-Idxmap
	--no-load-optim
	--no-load-rng
	--num-workers 8
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--rotary-base 500000
	--attention-dropout 0.0
	--hidden-dropout 0.0
	--disable-bias-linear
	--norm-epsilon 1e-05
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
