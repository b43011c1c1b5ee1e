#!/bin/bash
# Supervised fine-tuning with a global batch (gradient accumulation) of a Qwen1.5 model
# (Megatron legacy model) with gomegatron: Pai-Megatron-Patch's
# examples/qwen1_5/run_finetune_megatron_qwen_withGA.sh (v2, 25 arguments, commit 7097866)
# with the same arguments and Megatron flags, launching `golaunch … finetune`
# (iteration-based: --train-iters, --dataloader-type cyclic) instead of
# `torchrun … ../llama2/finetune_megatron_llama_withGA.py`. See scripts/README.md.
#
# bash run_finetune_megatron_qwen_withGA.sh dsw ../../ 1.8B 1 96 1e-5 1e-6 2048 2048 293 bf16 2 2 sel true false true false 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp2 1000 10 /mnt/output_megatron_qwen
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

Fine-tune a Qwen1.5 model (Megatron legacy model) for TRAIN_ITERS global batches with \`golaunch … finetune\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)
   4 BATCH_SIZE                --micro-batch-size
   5 GLOBAL_BATCH_SIZE         --global-batch-size
   6 LR                        --lr, e.g. 1e-5
   7 MIN_LR                    --min-lr, e.g. 1e-6
   8 SEQ_LEN                   --seq-length and --max-position-embeddings (the samples' length is PAD_LEN)
   9 PAD_LEN                   --max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)
  10 EXTRA_VOCAB_SIZE          --extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)
  11 PR                        fp16 | bf16 | fp8
  12 TP                        --tensor-model-parallel-size
  13 PP                        --pipeline-model-parallel-size
  14 AC                        full (every layer: --recompute-num-layers NUM_LAYERS) | sel | none (activation recompute)
  15 DO                        true | false (--use-distributed-optimizer)
  16 FL                        true | false (--use-flash-attn)
  17 SP                        true | false (--sequence-parallel, only when TP > 1)
  18 TE                        true | false (--transformer-impl transformer_engine)
  19 SAVE_INTERVAL             --save-interval
  20 DATASET_PATH              --train-data-path: a JSON list of {instruction, input, output}
  21 VALID_DATASET_PATH        --valid-data-path and --test-data-path: same format
  22 PRETRAIN_CHECKPOINT_PATH  --load (a converted checkpoint), or none
  23 TRAIN_ITERS               --train-iters
  24 WARMUP_ITERS              --lr-warmup-iters (--lr-decay-iters = TRAIN_ITERS - WARMUP_ITERS)
  25 OUTPUT_BASEPATH           writes checkpoint/NAME, tensorboard/NAME_DATE and log/NAME_DATE.log under it

Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw ../../ 1.8B 1 96 1e-5 1e-6 2048 2048 293 bf16 2 2 sel true false true false 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-1.8B-Chat-hf-to-mg-tp2-pp2 1000 10 /mnt/output_megatron_qwen"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
pai_nargs 25 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
pai_iter_run_args 19 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$AC" = full ] && activation_checkpoint_options+=(--recompute-num-layers "${NUM_LAYERS}") # Pai's script says so

# Pai's name: it reads TRAIN_TOKENS and WARMUP_TOKENS, which this script never sets, so the
# name ends in "-tt--wt-".
NAME="${ENV}-pretrain-megatron-gpt3-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE

# Data paths are split on blanks, as Pai's unquoted expansions split them.
read -r -a train_paths <<<"$DATASET_PATH"
read -r -a valid_paths <<<"$VALID_DATASET_PATH"

# Pai's legacy Qwen1.5 script runs Llama-2's entry point with Llama-2's flags: linear biases
# (no --disable-bias-linear), Megatron's dropout, LLamaTokenizer; RoPE base 1e6.
megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--split 98,2,0
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--test-data-path "${valid_paths[@]}"
	--lr "${LR}"
	--min-lr "${MIN_LR}"
	--lr-decay-style linear
	--adam-beta1 0.9
	--adam-beta2 0.95
	--weight-decay 0.1
	--clip-grad 1.0
	--init-method-std 0.006
	--dataloader-type cyclic
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
	--max-position-embeddings "${SEQ_LEN}"
	--max-padding-length "${PAD_LEN}"
	--log-interval 1
	--eval-interval 10000
	--eval-iters 10
	--save-interval "${SAVE_INTERVAL}"
	--tensorboard-queue-size 1
	--tensorboard-dir "${TENSORBOARD_DIR}"
	--log-timers-to-tensorboard
	--log-batch-size-to-tensorboard
	--log-validation-ppl-to-tensorboard
	--tensor-model-parallel-size "${TP}"
	--pipeline-model-parallel-size "${PP}"
	--dataset LLama-Pretrain-Raw
	--no-save-optim
	--no-load-optim
	--no-load-rng
	--num-workers 8
	--seed 1234
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--swiglu
	--normalization RMSNorm
	--use-llama2-rotary-position-embeddings
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--rotary-base 1000000
	--rotary-scale-factor 1
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
