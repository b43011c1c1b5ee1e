#!/bin/bash
# Supervised fine-tuning (epochs) of a Qwen1.5 model (Megatron legacy model) with gomegatron:
# Pai-Megatron-Patch's examples/qwen1_5/run_finetune_megatron_qwen.sh (v2, 22 arguments,
# commit 7097866) with the same arguments and Megatron flags, launching `golaunch … finetune`
# (Pai's epoch loop: --epochs, --keep-last, --finetune) instead of
# `torchrun … pretrain_mcore_qwen.py`. See scripts/README.md.
#
# bash run_finetune_megatron_qwen.sh dsw ../../ 7B 1 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi # `sh run_….sh` as in Pai's docs
set -euo pipefail

PAI_SCRIPT=$(basename "$0")
PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE TRAIN_DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH EPOCH OUTPUT_BASEPATH

Fine-tune a Qwen1.5 model (Megatron legacy model) for EPOCH passes with \`golaunch … finetune\` (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)
   4 BATCH_SIZE                --micro-batch-size
   5 LR                        --lr, e.g. 1e-5
   6 MIN_LR                    --min-lr, e.g. 1e-6
   7 SEQ_LEN                   --seq-length and --max-position-embeddings
   8 PAD_LEN                   --max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)
   9 EXTRA_VOCAB_SIZE          --extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)
  10 PR                        fp16 | bf16 | fp8
  11 TP                        --tensor-model-parallel-size
  12 PP                        --pipeline-model-parallel-size
  13 AC                        full | sel | none (activation recompute)
  14 DO                        true | false (--use-distributed-optimizer)
  15 FL                        true | false (--use-flash-attn)
  16 SP                        true | false (--sequence-parallel, only when TP > 1)
  17 TE                        true | false (--transformer-impl transformer_engine)
  18 TRAIN_DATASET_PATH        --train-data-path (Pai: --train-data): a JSON list of {instruction, input, output}
  19 VALID_DATASET_PATH        --valid-data-path (Pai: --valid-data): same format
  20 PRETRAIN_CHECKPOINT_PATH  --load (a converted checkpoint; Qwen2Tokenizer reads its tokenizer), or none
  21 EPOCH                     --epochs
  22 OUTPUT_BASEPATH           writes checkpoint/FT_NAME, tensorboard/FT_NAME_DATE and log/FT_NAME_DATE.log under it

Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/).

example: ${PAI_SCRIPT} dsw ../../ 7B 1 1e-5 1e-6 2048 2048 293 bf16 1 1 sel true true true false /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-7B-hf-to-mg-tp1-pp1/ 2 /mnt/output_patch_test"

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
pai_nargs 22 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_epoch_args "$@" # ENV … OUTPUT_BASEPATH; FT_NAME (Pai's "-finetune-megatron-llama-"), folders

pai_feature_options # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them

# Data paths are split on blanks, as Pai's unquoted expansions split them.
read -r -a train_paths <<<"$TRAIN_DATASET_PATH"
read -r -a valid_paths <<<"$VALID_DATASET_PATH"

# As in Pai's script, --load appears here unconditionally (--load none when there is no
# checkpoint) and again in load_options; the last one wins. Pai spells the data flags
# --train-data and --valid-data (its epoch loop's names, which golaunch finetune calls
# --train-data-path and --valid-data-path).
megatron_options=(
	--load "${PRETRAIN_CHECKPOINT_PATH}"
	--save "${FINETUNE_CHECKPOINT_PATH}"
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--num-layers "${NUM_LAYERS}"
	--hidden-size "${HIDDEN_SIZE}"
	--num-attention-heads "${NUM_ATTN_HEADS}"
	--seq-length "${SEQ_LEN}"
	--max-position-embeddings "${SEQ_LEN}"
	--ffn-hidden-size "${INTERMEDIATE_SIZE}"
	--keep-last
	--micro-batch-size "${BATCH_SIZE}"
	--epochs "${EPOCH}"
	--lr "${LR}"
	--min-lr "${MIN_LR}"
	--lr-decay-style cosine
	--weight-decay 0.1
	--clip-grad 1.0
	--adam-beta1 0.9
	--adam-beta2 0.95
	--init-method-std 0.01
	--num-workers 0
	--log-interval 1
	--eval-interval 1000
	--eval-iters 10
	--save-interval 1000000
	--tensorboard-queue-size 1
	--tensorboard-dir "${TENSORBOARD_DIR}"
	--log-timers-to-tensorboard
	--log-batch-size-to-tensorboard
	--log-validation-ppl-to-tensorboard
	--tensor-model-parallel-size "${TP}"
	--pipeline-model-parallel-size "${PP}"
	--finetune
	--no-load-optim
	--no-load-rng
	--seed 1234
	--max-padding-length "${PAD_LEN}"
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type Qwen2Tokenizer
	--dataset LLama-Pretrain-Raw
	--swiglu
	--normalization RMSNorm
	--use-llama2-rotary-position-embeddings
	--position-embedding-type rope
	--untie-embeddings-and-output-weights
	--rotary-base 1000000
	--rotary-scale-factor 1
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
