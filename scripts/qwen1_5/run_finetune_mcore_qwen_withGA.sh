#!/bin/bash
# Supervised fine-tuning with a global batch (gradient accumulation) of a Qwen1.5 model in
# the Megatron-Core layout with gomegatron: Pai-Megatron-Patch's
# examples/qwen1_5/run_finetune_mcore_qwen_withGA.sh (v2, 27 arguments, commit 7097866) with
# the same arguments and Megatron flags, launching `golaunch … finetune` (iteration-based:
# --train-iters, --dataloader-type cyclic) instead of `torchrun … pretrain_qwen.py`. See
# scripts/README.md.
#
# bash run_finetune_mcore_qwen_withGA.sh dsw ../../ 0.5B 1 8 1e-5 1e-6 128 128 293 bf16 1 1 sel true false false false false 1 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp1-pp1 100000000 10000 /mnt/output_mcore_qwen
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE MOE EP SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

Fine-tune a Qwen1.5 model (Megatron-Core layout) for TRAIN_ITERS global batches with \`golaunch … finetune\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)
   4 BATCH_SIZE                --micro-batch-size
   5 GLOBAL_BATCH_SIZE         --global-batch-size
   6 LR                        --lr, e.g. 1e-5
   7 MIN_LR                    --min-lr, e.g. 1e-6
   8 SEQ_LEN                   --seq-length (the samples' length is PAD_LEN)
   9 PAD_LEN                   --max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)
  10 EXTRA_VOCAB_SIZE          --extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)
  11 PR                        fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8
  12 TP                        --tensor-model-parallel-size
  13 PP                        --pipeline-model-parallel-size
  14 AC                        full | sel | none (activation recompute)
  15 DO                        true | false (--use-distributed-optimizer)
  16 FL                        true | false (--use-flash-attn)
  17 SP                        true | false (--sequence-parallel, only when TP > 1)
  18 TE                        true | false (--transformer-impl transformer_engine | local)
  19 MOE                       false, or true: Pai's mixture-of-experts options (Megatron-Core MoE layers)
  20 EP                        --expert-model-parallel-size with MOE: 1 (may be left out, as in Pai's dense README example)
  21 SAVE_INTERVAL             --save-interval
  22 DATASET_PATH              --train-data-path: a JSON list of {instruction, input, output}
  23 VALID_DATASET_PATH        --valid-data-path and --test-data-path: same format
  24 PRETRAIN_CHECKPOINT_PATH  --load (a converted checkpoint), or none
  25 TRAIN_ITERS               --train-iters
  26 WARMUP_ITERS              --lr-warmup-iters (--lr-decay-iters = TRAIN_ITERS - WARMUP_ITERS)
  27 OUTPUT_BASEPATH           writes checkpoint/NAME, tensorboard/NAME_DATE and log/NAME_DATE.log under it

Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw ../../ 0.5B 1 8 1e-5 1e-6 128 128 293 bf16 1 1 sel true false false false false 1 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp1-pp1 100000000 10000 /mnt/output_mcore_qwen"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
# Pai's dense README example leaves EP out (26 arguments): read as 1.
if [ $# -eq 26 ]; then set -- "${@:1:19}" 1 "${@:20}"; fi
pai_nargs 27 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
EP=${20}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size ${EP} --moe-router-load-balancing-type aux_loss"
pai_int_pos EP 20 "$EP"
pai_iter_run_args 21 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$TE" = false ] && te_options=(--transformer-impl local) # Pai's Qwen1.5 scripts say so

# Pai's name: it reads TRAIN_TOKENS and WARMUP_ITERS, which this script never sets (its
# variable is LR_WARMUP_ITERS), so the name ends in "-tt--wt-".
NAME="${ENV}-finetune-megatron-qwen2-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options

# Data paths are split on blanks, as Pai's unquoted expansions split them.
read -r -a train_paths <<<"$DATASET_PATH"
read -r -a valid_paths <<<"$VALID_DATASET_PATH"

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--test-data-path "${valid_paths[@]}"
	--lr "${LR}"
	--min-lr "${MIN_LR}"
	--lr-decay-style cosine
	--adam-beta1 0.9
	--adam-beta2 0.95
	--weight-decay 0.1
	--clip-grad 1.0
	--init-method-std 0.008
	--attention-dropout 0.0
	--hidden-dropout 0.0
	--dataloader-type cyclic
	--lr-decay-iters "${LR_DECAY_ITERS}"
	--lr-warmup-iters "${WARMUP_ITERS}"
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
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-Pretrain-Raw
	--swiglu
	--normalization RMSNorm
	--norm-epsilon 1e-06
	--use-rotary-position-embeddings
	--no-rope-fusion
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--disable-bias-linear
	--add-qkv-bias
	--use-mcore-models
	--rotary-percent 1.0
	--rotary-base 1000000
	--rotary-seq-len-interpolation-factor 1
	--eod-mask-loss
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
