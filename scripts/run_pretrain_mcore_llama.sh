#!/bin/bash
# Continued pretraining of a Llama-2 model with gomegatron: Pai-Megatron-Patch's
# examples/llama2/run_pretrain_mcore_llama.sh (v2 Megatron-Core, 25 arguments, commit
# 7097866) with the same arguments, derived values and Megatron flags, launching
# `golaunch … pretrain` instead of `torchrun … pretrain_mcore_llama.py`. See scripts/README.md.
#
# bash run_pretrain_mcore_llama.sh dsw ../../ 13B 1 8 1e-5 1e-6 128 128 0 bf16 8 1 sel true false false false false 100000 /mnt/llama2-datasets/wudao_llamabpe_text_document /mnt/llama2-ckpts/Llama-2-13b-hf-to-mcore-tp8-pp1 100000000 10000 /mnt/output_mcore_llama2
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE MOE SAVE_INTERVAL DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH

Pretrain a Llama-2 model (Megatron-Core layout) with \`golaunch … pretrain\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)
   4 BATCH_SIZE                --micro-batch-size
   5 GLOBAL_BATCH_SIZE         --global-batch-size
   6 LR                        --lr, e.g. 1e-5
   7 MIN_LR                    --min-lr, e.g. 1e-6
   8 SEQ_LEN                   --seq-length (--max-position-embeddings is 4096)
   9 PAD_LEN                   --max-padding-length (used by raw JSON data only)
  10 EXTRA_VOCAB_SIZE          --extra-vocab-size (usually 0)
  11 PR                        fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8
  12 TP                        --tensor-model-parallel-size
  13 PP                        --pipeline-model-parallel-size
  14 AC                        full | sel | none (activation recompute)
  15 DO                        true | false (--use-distributed-optimizer)
  16 FL                        true | false (--use-flash-attn)
  17 SP                        true | false (--sequence-parallel, only when TP > 1)
  18 TE                        true | false (--transformer-impl transformer_engine)
  19 MOE                       false, or true: Pai's mixture-of-experts options (Megatron-Core MoE layers)
  20 SAVE_INTERVAL             --save-interval
  21 DATASET_PATH              --train-data-path and --data-path: a .bin/.idx prefix (or a blend), split 99,1,0
  22 PRETRAIN_CHECKPOINT_PATH  --load, or none to start from scratch
  23 TRAIN_TOKENS              training tokens: --train-iters = TRAIN_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN
  24 WARMUP_TOKENS             warmup tokens: --lr-warmup-iters = WARMUP_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN
  25 OUTPUT_BASEPATH           writes checkpoint/NAME, tensorboard/NAME_DATE and log/NAME_DATE.log under it

Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw ../../ 13B 1 8 1e-5 1e-6 128 128 0 bf16 8 1 sel true false false false false 100000 /mnt/llama2-datasets/wudao_llamabpe_text_document /mnt/llama2-ckpts/Llama-2-13b-hf-to-mcore-tp8-pp1 100000000 10000 /mnt/output_mcore_llama2"

# shellcheck source=lib/pai.sh
. "$(dirname "$0")/lib/pai.sh"
pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
pai_moe "$MOE" 19
pai_token_run_args 20 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; TRAIN_ITERS, LR_WARMUP_ITERS, LR_DECAY_ITERS
MAX_POSITION_EMBEDDINGS=4096 # every MODEL_SIZE of Pai's script

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

NAME="${ENV}-pretrain-mcore-llama-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-moe-${MOE}-tt-${TRAIN_TOKENS}-wt-${WARMUP_TOKENS}"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options

# DATASET_PATH is split on blanks, as Pai's unquoted expansion splits it (a blend "w1 p1 w2 p2").
read -r -a dataset_paths <<<"$DATASET_PATH"

# --use-mcore-models (last) is gomegatron's addition: Pai's mcore entry points build
# Megatron-Core's GPTModel and batches whatever the flags say; the flag selects the same.
megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${dataset_paths[@]}"
	--data-path "${dataset_paths[@]}"
	--lr "${LR}"
	--min-lr "${MIN_LR}"
	--lr-decay-style linear
	--adam-beta1 0.9
	--adam-beta2 0.95
	--weight-decay 0.1
	--clip-grad 1.0
	--init-method-std 0.006
	--attention-dropout 0.0
	--hidden-dropout 0.0
	--lr-decay-iters "${LR_DECAY_ITERS}"
	--lr-warmup-iters "${LR_WARMUP_ITERS}"
	--train-iters "${TRAIN_ITERS}"
	--split 99,1,0
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
	--num-workers 0
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-Pretrain-Idxmap
	--swiglu
	--normalization RMSNorm
	--use-rotary-position-embeddings
	--no-rope-fusion
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--disable-bias-linear
	--transformer-impl transformer_engine
	--use-mcore-models
)

pai_train_launch pretrain # Pai's option order; DRY_RUN=1 prints the command
