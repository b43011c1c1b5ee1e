#!/bin/bash
# Continued pretraining of a Mistral model (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/mistral/run_pretrain_megatron_mistral.sh (v2, 24 arguments,
# commit 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … pretrain_megatron_mistral.py`. See
# scripts/README.md.
#
# bash run_pretrain_megatron_mistral.sh dsw ../.. 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false false false 10000 /mnt/mistral-datasets/wudao_mistralbpe_content_document /mnt/mistral-ckpts/Mistral-7B-v0.1-hf-to-megatron-tp4-pp1/ 100000000 10000 /mnt/output_megatron_mistral
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

Pretrain a Mistral model (Megatron legacy model) with \`golaunch … pretrain\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                7B (GQA, 8 groups, sliding window 4096) | tiny | small (CPU sizes)
   4 BATCH_SIZE                --micro-batch-size
   5 GLOBAL_BATCH_SIZE         --global-batch-size
   6 LR                        --lr, e.g. 1e-5
   7 MIN_LR                    --min-lr, e.g. 1e-6
   8 SEQ_LEN                   --seq-length (--max-position-embeddings is 32768)
   9 PAD_LEN                   --max-padding-length (sample length of idxmap/raw datasets)
  10 EXTRA_VOCAB_SIZE          --extra-vocab-size (usually 0)
  11 PR                        fp16 | bf16 | fp8
  12 TP                        --tensor-model-parallel-size
  13 PP                        --pipeline-model-parallel-size
  14 AC                        full | sel | none (activation recompute)
  15 DO                        true | false (--use-distributed-optimizer)
  16 FL                        true | false (--use-flash-attn)
  17 SP                        true | false (--sequence-parallel, only when TP > 1)
  18 TE                        true | false (--transformer-impl transformer_engine)
  19 SAVE_INTERVAL             --save-interval
  20 DATASET_PATH              --train-data-path: a .bin/.idx prefix (Pai's idxmap samples) or a raw .json file
  21 PRETRAIN_CHECKPOINT_PATH  --load, or none to start from scratch
  22 TRAIN_TOKENS              training tokens: --train-iters = TRAIN_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN
  23 WARMUP_TOKENS             warmup tokens: --lr-warmup-iters = WARMUP_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN
  24 OUTPUT_BASEPATH           writes checkpoint/NAME, tensorboard/NAME_DATE and log/NAME_DATE.log under it

Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw ../.. 7B 1 8 1e-5 1e-6 128 128 0 bf16 4 1 sel true false false false 10000 /mnt/mistral-datasets/wudao_mistralbpe_content_document /mnt/mistral-ckpts/Mistral-7B-v0.1-hf-to-megatron-tp4-pp1/ 100000000 10000 /mnt/output_megatron_mistral"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
pai_nargs 24 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_mistral_shape pai_train_args "$@" # ENV … TE, arguments 1-18
pai_token_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options

# DATASET_PATH is split on blanks, as Pai's unquoted expansion splits it (a blend "w1 p1 w2 p2").
read -r -a dataset_paths <<<"$DATASET_PATH"

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${dataset_paths[@]}"
	--lr "${LR}"
	--min-lr "${MIN_LR}"
	--lr-decay-style linear
	--adam-beta1 0.9
	--adam-beta2 0.95
	--weight-decay 0.1
	--clip-grad 1.0
	--init-method-std 0.006
	--lr-decay-iters "${LR_DECAY_ITERS}"
	--lr-warmup-iters "${LR_WARMUP_ITERS}"
	--train-iters "${TRAIN_ITERS}"
	--micro-batch-size "${BATCH_SIZE}"
	--global-batch-size "${GLOBAL_BATCH_SIZE}"
	--num-layers "${NUM_LAYERS}"
	--hidden-size "${HIDDEN_SIZE}"
	--num-attention-heads "${NUM_ATTN_HEADS}"
	--ffn-hidden-size "${INTERMEDIATE_SIZE}"
	--seq-length "${SEQ_LEN}"
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 8
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type MistralTokenizer
	--dataset LLama-Pretrain-Idxmap
	--sliding-window "${SLW}"
	--swiglu
	--normalization RMSNorm
	--use-mistral-rotary-position-embeddings
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--disable-bias-linear
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
