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

# shellcheck source=../lib/pai.sh
. "$(dirname "$0")/../lib/pai.sh"
PAI_SCRIPT=$(basename "$0")
pai_set_usage "Fine-tune a Qwen1.5 model (Megatron-Core layout) for TRAIN_ITERS global batches with \`golaunch … finetune\`" \
	"dsw ../../ 0.5B 1 8 1e-5 1e-6 128 128 293 bf16 1 1 sel true false false false false 1 100000 /mnt/qwen-datasets/alpaca_zh-qwen-train.json /mnt/qwen-datasets/alpaca_zh-qwen-valid.json /mnt/qwen-ckpts/Qwen1.5-0.5B-hf-to-mcore-tp1-pp1 100000000 10000 /mnt/output_mcore_qwen" \
	ENV MEGATRON_PATCH_PATH \
	"MODEL_SIZE=0.5B | 1.8B | 4B | 7B | 14B | 32B (GQA, 8 groups) | 72B | tiny | small (CPU sizes)" \
	BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR \
	"SEQ_LEN=--seq-length (the samples' length is PAD_LEN)" \
	"PAD_LEN=--max-padding-length: samples are PAD_LEN + 1 tokens (--dataset LLama-Pretrain-Raw)" \
	"EXTRA_VOCAB_SIZE=--extra-vocab-size: 293 below 32B, 421 for 32B and 72B (Qwen1.5's padded rows)" \
	"PR=fp16 (with --apply-query-key-layer-scaling) | bf16 | fp8" \
	TP PP AC DO FL SP \
	"TE=true | false (--transformer-impl transformer_engine | local)" \
	MOE \
	"EP=--expert-model-parallel-size with MOE: 1 (may be left out, as in Pai's dense README example)" \
	SAVE_INTERVAL \
	"DATASET_PATH=--train-data-path: a JSON list of {instruction, input, output}" \
	VALID_DATASET_PATH \
	"PRETRAIN_CHECKPOINT_PATH=--load (a converted checkpoint), or none" \
	TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH

# Pai's dense README example leaves EP out (26 arguments): read as 1.
if [ $# -eq 26 ]; then set -- "${@:1:19}" 1 "${@:20}"; fi
pai_nargs 27 $#

# Every argument is checked before anything is created or launched.
PAI_SHAPE=pai_qwen15_shape pai_train_args "$@" # ENV … TE, arguments 1-18
MOE=${19}
EP=${20}
pai_moe "$MOE" 19 "--moe-router-topk 2 --num-experts 8 --moe-aux-loss-coeff 1e-2 --expert-model-parallel-size ${EP} --moe-router-load-balancing-type aux_loss"
pai_int_pos EP 20 "$EP"
pai_iter_run_args 21 "$@" # SAVE_INTERVAL … OUTPUT_BASEPATH; LR_WARMUP_ITERS, LR_DECAY_ITERS, train_paths, valid_paths

pai_feature_options mcore # AC PR DO FL TE SP TP PRETRAIN_CHECKPOINT_PATH → the option arrays, as Pai builds them
[ "$TE" = false ] && te_options=(--transformer-impl local) # Pai's Qwen1.5 scripts say so

# Pai's name: it reads TRAIN_TOKENS and WARMUP_ITERS, which this script never sets (its
# variable is LR_WARMUP_ITERS), so the name ends in "-tt--wt-".
NAME="${ENV}-finetune-megatron-qwen2-${MODEL_SIZE}-lr-${LR}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}-tp-${TP}-pp-${PP}-ac-${AC}-do-${DO}-sp-${SP}-tt--wt-"
pai_run_paths "${NAME}" # TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH, LOG_FILE, pai_log_options
pai_train_options cosine 0.008 --attention-dropout 0.0 --hidden-dropout 0.0 --dataloader-type cyclic # pai_optim_options, pai_shape_options
pai_llama_arch --norm-epsilon 1e-06 --use-rotary-position-embeddings --no-rope-fusion # pai_arch_options

megatron_options=(
	--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}"
	--train-data-path "${train_paths[@]}"
	--valid-data-path "${valid_paths[@]}"
	--test-data-path "${valid_paths[@]}"
	"${pai_optim_options[@]}" # --lr … --dataloader-type cyclic, --lr-decay-iters … --train-iters
	"${pai_shape_options[@]}" # --micro-batch-size … --seq-length
	--max-position-embeddings "${MAX_POSITION_EMBEDDINGS}"
	--max-padding-length "${PAD_LEN}"
	"${pai_log_options[@]}" # --log-interval 1 … --no-load-rng, in Pai's order
	--num-workers 8
	--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
	--patch-tokenizer-type LLamaTokenizer
	--dataset LLama-Pretrain-Raw
	"${pai_arch_options[@]}" # --swiglu … --untie-embeddings-and-output-weights
	--disable-bias-linear
	--add-qkv-bias
	--use-mcore-models
	--rotary-percent 1.0
	--rotary-base 1000000
	--rotary-seq-len-interpolation-factor 1
	--eod-mask-loss
)

pai_train_launch finetune # Pai's option order; DRY_RUN=1 prints the command
