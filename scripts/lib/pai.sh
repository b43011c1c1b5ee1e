# shellcheck shell=bash
# Shared helpers of the Pai-Megatron-Patch style scripts in scripts/ (sourced, not run).
#
# The scripts keep Pai-Megatron-Patch's positional arguments and flag mapping; these
# helpers check every argument before anything is launched or created (a wrong value
# stops the script with exit status 2 and a message naming the argument and its
# position), pick the launcher layout (ENV=dsw / ENV=dlc) and print or run the command.
# Others hold the runs of Megatron flags that Pai's scripts write alike (pai_epoch_options,
# pai_train_options, pai_log_options, pai_llama_arch, pai_generate_options, …), so that a
# script lists Pai's flags in Pai's order with only what is its own written out.
#
# A script sets PAI_SCRIPT (its name, for messages) and PAI_USAGE (its usage text, built by
# pai_set_usage) before calling them.

# PAI_REPO is the repository root (scripts/lib/../..), where golaunch is built if needed.
PAI_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# PAI_ENV_HELP is the usage's paragraph on the environment of the training and evaluation
# scripts; PAI_GENERATE_ENV_HELP is the generation scripts' (one process per TP rank).
PAI_ENV_HELP="Environment: DRY_RUN=1 prints the golaunch command and stops; GPUS_PER_NODE (dsw) sets the
processes per node (default: CUDA_VISIBLE_DEVICES entries, else nvidia-smi -L GPUs, else 1);
GOLAUNCH names the golaunch binary (default: golaunch on PATH, else built into bin/)."
PAI_GENERATE_ENV_HELP="Environment: DRY_RUN=1 prints the golaunch command and stops; GOLAUNCH names the golaunch
binary (default: golaunch on PATH, else built into bin/)."
# PAI_CONVERT_ENV_HELP is the usage's paragraph on the environment of Pai's legacy-model
# convertors (pai_hf2megatron); PAI_PREPROCESS_ENV_HELP is the data scripts'.
PAI_CONVERT_ENV_HELP="Environment: DRY_RUN=1 prints the convert command and stops; CONVERT_BIN names the convertor
(default: bin/convert built from ./tools/convert); TARGET_PARAMS_DTYPE overrides the stored dtype;
MEGATRON_FORMAT=mcore writes Megatron-Core keys instead of the legacy model's; FORCE=1 writes into a
non-empty TARGET_CKPT_PATH."
PAI_PREPROCESS_ENV_HELP="Environment: DRY_RUN=1 prints the preprocess command and stops; PREPROCESS names the
preprocess binary (default: bin/preprocess built from ./tools/preprocess)."

# pai_set_usage SUMMARY EXAMPLE ARG… sets PAI_USAGE for a script's positional arguments, in
# order: the usage line, SUMMARY, one numbered line per ARG, the environment paragraph
# (${PAI_ENV_HELP}, which a script may replace for the call) and the EXAMPLE arguments. An ARG
# is NAME=DESCRIPTION, or a bare NAME whose description is the one Pai's scripts share
# (pai_arg_help).
pai_set_usage() {
	local summary=$1 example=$2 arg name width=0 i=0 names='' rows='' row
	shift 2
	for arg in "$@"; do
		name=${arg%%=*}
		if ((${#name} + 2 > width)); then width=$((${#name} + 2)); fi
	done
	for arg in "$@"; do
		name=${arg%%=*}
		if [ "$name" = "$arg" ]; then pai_arg_help "$name"; else pai_help=${arg#*=}; fi
		i=$((i + 1))
		names+=" ${name}"
		printf -v row '%4d %-*s%s\n' "$i" "$width" "$name" "$pai_help"
		rows+=$row
	done
	PAI_USAGE="usage: ${PAI_SCRIPT}${names}

${summary} (Pai-Megatron-Patch's arguments, in order):
${rows}
${PAI_ENV_HELP}

example: ${PAI_SCRIPT} ${example}"
}

# pai_arg_help NAME sets pai_help to the usage's description of the argument NAME where Pai's
# scripts share it (a script that says otherwise passes NAME=DESCRIPTION to pai_set_usage).
pai_arg_help() {
	case $1 in
	ENV) pai_help="dsw (this machine) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)" ;;
	MEGATRON_PATCH_PATH) pai_help="accepted and ignored (gomegatron needs no Megatron or Pai checkout)" ;;
	BATCH_SIZE) pai_help="--micro-batch-size" ;;
	GLOBAL_BATCH_SIZE) pai_help="--global-batch-size" ;;
	LR) pai_help="--lr, e.g. 1e-5" ;;
	MIN_LR) pai_help="--min-lr, e.g. 1e-6" ;;
	EXTRA_VOCAB_SIZE) pai_help="--extra-vocab-size (usually 0)" ;;
	PR) pai_help="fp16 | bf16 | fp8" ;;
	TP) pai_help="--tensor-model-parallel-size" ;;
	PP) pai_help="--pipeline-model-parallel-size" ;;
	AC) pai_help="full | sel | none (activation recompute)" ;;
	DO) pai_help="true | false (--use-distributed-optimizer)" ;;
	FL) pai_help="true | false (--use-flash-attn)" ;;
	SP) pai_help="true | false (--sequence-parallel, only when TP > 1)" ;;
	TE) pai_help="true | false (--transformer-impl transformer_engine)" ;;
	MOE) pai_help="false, or true: Pai's mixture-of-experts options (Megatron-Core MoE layers)" ;;
	SAVE_INTERVAL) pai_help="--save-interval" ;;
	VALID_DATASET_PATH) pai_help="--valid-data-path and --test-data-path: same format" ;;
	TRAIN_TOKENS) pai_help="training tokens: --train-iters = TRAIN_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN" ;;
	WARMUP_TOKENS) pai_help="warmup tokens: --lr-warmup-iters = WARMUP_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN" ;;
	TRAIN_ITERS) pai_help="--train-iters" ;;
	WARMUP_ITERS) pai_help="--lr-warmup-iters (--lr-decay-iters = TRAIN_ITERS - WARMUP_ITERS)" ;;
	EPOCH) pai_help="--epochs" ;;
	OUTPUT_BASEPATH) pai_help="writes checkpoint/NAME, tensorboard/NAME_DATE and log/NAME_DATE.log under it" ;;
	CHECKPOINT_PATH) pai_help="--load (a Megatron checkpoint folder), or none" ;;
	BS) pai_help="--micro-batch-size (prompts per batch)" ;;
	TOP_K) pai_help="--top-k (0: off; 1: greedy); TOP_K or TOP_P must be 0" ;;
	INPUT_SEQ_LEN) pai_help="--input-len" ;;
	OUTPUT_SEQ_LEN) pai_help="--out-seq-length (tokens generated)" ;;
	INPUT_FILE) pai_help="--text-generate-input-file: jsonl with a \"query\" per line, or none" ;;
	OUTPUT_FILE) pai_help="--text-generate-output-file: one generated text per line" ;;
	TOP_P) pai_help="--top-p (0: off)" ;;
	TEMPERATURE) pai_help="--temperature" ;;
	REPETITION_PENALTY) pai_help="--repetition-penalty (1.1-1.5 reduces repetition; Pai's default 1.2)" ;;
	*)
		printf '%s: pai_set_usage: %s needs a description (NAME=DESCRIPTION)\n' "${PAI_SCRIPT}" "$1" >&2
		exit 1
		;;
	esac
}

# pai_die prints "<script>: <message>" on stderr and exits 2 (bad input).
pai_die() {
	printf '%s: %s\n' "${PAI_SCRIPT}" "$*" >&2
	exit 2
}

# pai_usage prints the usage on stderr and exits 2.
pai_usage() {
	printf '%s\n' "${PAI_USAGE}" >&2
	exit 2
}

# pai_nargs WANT GOT: a wrong argument count prints the usage.
pai_nargs() {
	if [ "$2" -ne "$1" ]; then
		printf '%s: expected %s arguments, got %s\n\n' "${PAI_SCRIPT}" "$1" "$2" >&2
		pai_usage
	fi
}

# pai_int_pos NAME POS VALUE: VALUE must be a positive integer without leading zeros
# (bash arithmetic would read 08 as octal).
pai_int_pos() {
	[[ $3 =~ ^[1-9][0-9]{0,17}$ ]] || pai_die "$1 (arg $2): '$3' is not a positive integer"
}

# pai_int_nonneg NAME POS VALUE: VALUE must be 0 or a positive integer.
pai_int_nonneg() {
	[[ $3 =~ ^(0|[1-9][0-9]{0,17})$ ]] ||
		pai_die "$1 (arg $2): '$3' is not a non-negative integer (write 10000000000, not 1e10)"
}

# pai_float NAME POS VALUE: VALUE must be a non-negative decimal number (1e-5, 0.85, 1).
pai_float() {
	[[ $3 =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] || pai_die "$1 (arg $2): '$3' is not a number"
}

# pai_is_zero VALUE: whether a number checked by pai_float is zero (0, 0.0, 0e5, .0).
pai_is_zero() {
	[[ $1 =~ ^0*\.?0*([eE][-+]?[0-9]+)?$ ]]
}

# pai_enum NAME POS VALUE ALLOWED…: VALUE must be one of ALLOWED.
pai_enum() {
	local name=$1 pos=$2 value=$3 a
	shift 3
	for a in "$@"; do
		[ "$value" = "$a" ] && return 0
	done
	pai_die "${name} (arg ${pos}): '${value}' is not one of: $*"
}

# pai_model_shape SIZE POS sets NUM_LAYERS HIDDEN_SIZE NUM_ATTN_HEADS INTERMEDIATE_SIZE,
# NUM_QUERY_GROUPS (0 for multi-head attention) and gqa_options (an array), as Pai's
# scripts do for 7B/13B/70B (Llama-2 shapes, 70B with 8 query groups). tiny and small are
# gomegatron's CPU sizes (layers presets tiny-llama and small-llama); they have no
# tokenizer of their own, so their gqa_options also carry --vocab-size.
pai_model_shape() {
	gqa_options=()
	NUM_QUERY_GROUPS=0
	case $1 in
	7B) NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=11008 ;;
	13B) NUM_LAYERS=40 HIDDEN_SIZE=5120 NUM_ATTN_HEADS=40 INTERMEDIATE_SIZE=13824 ;;
	70B)
		NUM_LAYERS=80 HIDDEN_SIZE=8192 NUM_ATTN_HEADS=64 INTERMEDIATE_SIZE=28672 NUM_QUERY_GROUPS=8
		gqa_options=(--group-query-attention --num-query-groups 8)
		;;
	tiny)
		NUM_LAYERS=2 HIDDEN_SIZE=64 NUM_ATTN_HEADS=4 INTERMEDIATE_SIZE=172 NUM_QUERY_GROUPS=2
		gqa_options=(--group-query-attention --num-query-groups 2 --vocab-size 256)
		;;
	small)
		NUM_LAYERS=4 HIDDEN_SIZE=256 NUM_ATTN_HEADS=8 INTERMEDIATE_SIZE=688 NUM_QUERY_GROUPS=4
		gqa_options=(--group-query-attention --num-query-groups 4 --vocab-size 32000)
		;;
	*) pai_die "MODEL_SIZE (arg $2): '$1' is not one of: 7B 13B 70B tiny small" ;;
	esac
}

# pai_train_args ARGS… assigns and checks the first 18 arguments that Pai's training scripts
# with a global batch share, in their order: ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE
# GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE.
# MODEL_SIZE goes through ${PAI_SHAPE:-pai_model_shape}.
pai_train_args() {
	ENV=$1 MEGATRON_PATCH_PATH=$2 MODEL_SIZE=$3 BATCH_SIZE=$4 GLOBAL_BATCH_SIZE=$5 LR=$6 MIN_LR=$7 SEQ_LEN=$8 PAD_LEN=$9
	EXTRA_VOCAB_SIZE=${10} PR=${11} TP=${12} PP=${13} AC=${14} DO=${15} FL=${16} SP=${17} TE=${18}
	pai_enum ENV 1 "$ENV" dsw dlc
	"${PAI_SHAPE:-pai_model_shape}" "$MODEL_SIZE" 3
	pai_int_pos BATCH_SIZE 4 "$BATCH_SIZE"
	pai_int_pos GLOBAL_BATCH_SIZE 5 "$GLOBAL_BATCH_SIZE"
	pai_float LR 6 "$LR"
	pai_float MIN_LR 7 "$MIN_LR"
	pai_int_pos SEQ_LEN 8 "$SEQ_LEN"
	pai_int_pos PAD_LEN 9 "$PAD_LEN"
	pai_int_nonneg EXTRA_VOCAB_SIZE 10 "$EXTRA_VOCAB_SIZE"
	pai_enum PR 11 "$PR" fp16 bf16 fp8
	pai_int_pos TP 12 "$TP"
	pai_int_pos PP 13 "$PP"
	pai_enum AC 14 "$AC" full sel none
	pai_enum DO 15 "$DO" true false
	pai_enum FL 16 "$FL" true false
	pai_enum SP 17 "$SP" true false
	pai_enum TE 18 "$TE" true false
}

# pai_token_run_args FIRST ARGS… assigns and checks the six arguments that end Pai's
# pretraining scripts, from position FIRST: SAVE_INTERVAL DATASET_PATH
# PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH; then picks the
# launcher layout, checks the parallel layout and derives Pai's iteration counts (truncating
# integer division, left to right). dataset_paths is DATASET_PATH split on blanks, as Pai's
# unquoted expansion splits it (a blend "w1 p1 w2 p2").
pai_token_run_args() {
	local i=$1
	shift
	SAVE_INTERVAL=${!i} DATASET_PATH=${*:i+1:1} PRETRAIN_CHECKPOINT_PATH=${*:i+2:1}
	TRAIN_TOKENS=${*:i+3:1} WARMUP_TOKENS=${*:i+4:1} OUTPUT_BASEPATH=${*:i+5:1}
	pai_int_pos SAVE_INTERVAL "$i" "$SAVE_INTERVAL"
	pai_check_data DATASET_PATH $((i + 1)) "$DATASET_PATH"
	if [ "$PRETRAIN_CHECKPOINT_PATH" != none ]; then
		pai_check_checkpoint PRETRAIN_CHECKPOINT_PATH $((i + 2)) "$PRETRAIN_CHECKPOINT_PATH" 3
	fi
	pai_int_nonneg TRAIN_TOKENS $((i + 3)) "$TRAIN_TOKENS"
	pai_int_nonneg WARMUP_TOKENS $((i + 4)) "$WARMUP_TOKENS"
	pai_check_writable OUTPUT_BASEPATH $((i + 5)) "$OUTPUT_BASEPATH"
	pai_distributed "$ENV"
	pai_check_parallel 12 13 5 4
	TRAIN_ITERS=$((TRAIN_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN))
	LR_WARMUP_ITERS=$((WARMUP_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN))
	LR_DECAY_ITERS=$((TRAIN_TOKENS / GLOBAL_BATCH_SIZE / SEQ_LEN))
	((TRAIN_ITERS > 0)) ||
		pai_die "TRAIN_TOKENS (arg $((i + 3))): ${TRAIN_TOKENS} / GLOBAL_BATCH_SIZE ${GLOBAL_BATCH_SIZE} / SEQ_LEN ${SEQ_LEN} gives 0 training iterations"
	read -r -a dataset_paths <<<"$DATASET_PATH"
}

# pai_iter_run_args FIRST ARGS… is the same for the seven arguments that end Pai's *_withGA
# fine-tuning scripts: SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH
# PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH, with
# LR_DECAY_ITERS = TRAIN_ITERS - WARMUP_ITERS (LR_WARMUP_ITERS is WARMUP_ITERS). train_paths
# and valid_paths are the data paths split on blanks, as Pai's unquoted expansions split them.
pai_iter_run_args() {
	local i=$1
	shift
	SAVE_INTERVAL=${!i} DATASET_PATH=${*:i+1:1} VALID_DATASET_PATH=${*:i+2:1} PRETRAIN_CHECKPOINT_PATH=${*:i+3:1}
	TRAIN_ITERS=${*:i+4:1} WARMUP_ITERS=${*:i+5:1} OUTPUT_BASEPATH=${*:i+6:1}
	pai_int_pos SAVE_INTERVAL "$i" "$SAVE_INTERVAL"
	pai_check_data DATASET_PATH $((i + 1)) "$DATASET_PATH"
	pai_check_data VALID_DATASET_PATH $((i + 2)) "$VALID_DATASET_PATH"
	if [ "$PRETRAIN_CHECKPOINT_PATH" != none ]; then
		pai_check_checkpoint PRETRAIN_CHECKPOINT_PATH $((i + 3)) "$PRETRAIN_CHECKPOINT_PATH" 3
	fi
	pai_int_pos TRAIN_ITERS $((i + 4)) "$TRAIN_ITERS"
	pai_int_nonneg WARMUP_ITERS $((i + 5)) "$WARMUP_ITERS"
	((WARMUP_ITERS < TRAIN_ITERS)) ||
		pai_die "WARMUP_ITERS (arg $((i + 5))): ${WARMUP_ITERS} leaves no decay iterations (--lr-decay-iters = TRAIN_ITERS ${TRAIN_ITERS} - WARMUP_ITERS)"
	pai_check_writable OUTPUT_BASEPATH $((i + 6)) "$OUTPUT_BASEPATH"
	pai_distributed "$ENV"
	pai_check_parallel 12 13 5 4
	LR_WARMUP_ITERS=$WARMUP_ITERS
	LR_DECAY_ITERS=$((TRAIN_ITERS - WARMUP_ITERS))
	read -r -a train_paths <<<"$DATASET_PATH"
	read -r -a valid_paths <<<"$VALID_DATASET_PATH"
}

# pai_epoch_args ARGS… assigns and checks the 22 arguments of Pai's epoch-based fine-tuning
# scripts (run_finetune_megatron_*.sh), in their order: ENV MEGATRON_PATCH_PATH MODEL_SIZE
# BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE
# TRAIN_DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH EPOCH OUTPUT_BASEPATH
# (MODEL_SIZE through ${PAI_SHAPE:-pai_model_shape}); picks the launcher layout, checks the
# parallel layout and sets Pai's FT_NAME (its double dash before "do" included) and the run's
# folders: TENSORBOARD_DIR, FINETUNE_CHECKPOINT_PATH and LOG_FILE.
#
# It also sets pai_epoch_options, the megatron_options that every such Pai script starts
# with, in its order: --load … --extra-vocab-size (data, shape, epochs, optimizer, logging
# and layout); a script adds its tokenizer, dataset and model flags. As in Pai's scripts,
# --load is there unconditionally (--load none when there is no checkpoint) and again in
# load_options; the last one wins. The data paths are split on blanks, as Pai's unquoted
# expansions split them.
pai_epoch_args() {
	ENV=$1 MEGATRON_PATCH_PATH=$2 MODEL_SIZE=$3 BATCH_SIZE=$4 LR=$5 MIN_LR=$6 SEQ_LEN=$7 PAD_LEN=$8 EXTRA_VOCAB_SIZE=$9
	PR=${10} TP=${11} PP=${12} AC=${13} DO=${14} FL=${15} SP=${16} TE=${17} TRAIN_DATASET_PATH=${18}
	VALID_DATASET_PATH=${19} PRETRAIN_CHECKPOINT_PATH=${20} EPOCH=${21} OUTPUT_BASEPATH=${22}
	pai_enum ENV 1 "$ENV" dsw dlc
	"${PAI_SHAPE:-pai_model_shape}" "$MODEL_SIZE" 3
	pai_int_pos BATCH_SIZE 4 "$BATCH_SIZE"
	pai_float LR 5 "$LR"
	pai_float MIN_LR 6 "$MIN_LR"
	pai_int_pos SEQ_LEN 7 "$SEQ_LEN"
	pai_int_pos PAD_LEN 8 "$PAD_LEN"
	pai_int_nonneg EXTRA_VOCAB_SIZE 9 "$EXTRA_VOCAB_SIZE"
	pai_enum PR 10 "$PR" fp16 bf16 fp8
	pai_int_pos TP 11 "$TP"
	pai_int_pos PP 12 "$PP"
	pai_enum AC 13 "$AC" full sel none
	pai_enum DO 14 "$DO" true false
	pai_enum FL 15 "$FL" true false
	pai_enum SP 16 "$SP" true false
	pai_enum TE 17 "$TE" true false
	pai_check_data TRAIN_DATASET_PATH 18 "$TRAIN_DATASET_PATH"
	pai_check_data VALID_DATASET_PATH 19 "$VALID_DATASET_PATH"
	if [ "$PRETRAIN_CHECKPOINT_PATH" != none ]; then
		pai_check_checkpoint PRETRAIN_CHECKPOINT_PATH 20 "$PRETRAIN_CHECKPOINT_PATH" 3
	fi
	pai_int_pos EPOCH 21 "$EPOCH"
	pai_check_writable OUTPUT_BASEPATH 22 "$OUTPUT_BASEPATH"
	pai_distributed "$ENV"
	pai_check_parallel 11 12

	FT_NAME="${ENV}-finetune-megatron-llama-${MODEL_SIZE}-lr-${LR}-ep-${EPOCH}-bs-${BATCH_SIZE}-seqlen-${SEQ_LEN}-pr-${PR}--do-${DO}-tp-${TP}-ac-${AC}-sp-${SP}"
	current_time=$(date "+%Y.%m.%d-%H.%M.%S")
	TENSORBOARD_DIR="${OUTPUT_BASEPATH}/tensorboard/${FT_NAME}_${current_time}"
	FINETUNE_CHECKPOINT_PATH="${OUTPUT_BASEPATH}/checkpoint/${FT_NAME}"
	LOG_FILE="${OUTPUT_BASEPATH}/log/${FT_NAME}_${current_time}.log"

	local train_paths valid_paths
	read -r -a train_paths <<<"$TRAIN_DATASET_PATH"
	read -r -a valid_paths <<<"$VALID_DATASET_PATH"
	pai_epoch_options=(
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
	)
}

# pai_run_paths NAME sets the run's folders and files as Pai's scripts name them: the date
# suffix, TENSORBOARD_DIR, SAVED_PRETRAIN_CHECKPOINT_PATH and LOG_FILE under OUTPUT_BASEPATH;
# and pai_log_options, the run of logging and layout flags every global-batch script has in
# the middle of its fixed options (--log-interval 1 … --no-load-rng). pai_log_head_options is
# that run without its closing --no-load-optim --no-load-rng, for Pai's legacy Llama-3 and
# Qwen1.5 scripts, which put --dataset (and --no-save-optim) before them.
pai_run_paths() {
	current_time=$(date "+%Y.%m.%d-%H.%M.%S")
	TENSORBOARD_DIR="${OUTPUT_BASEPATH}/tensorboard/$1_${current_time}"
	SAVED_PRETRAIN_CHECKPOINT_PATH="${OUTPUT_BASEPATH}/checkpoint/$1"
	LOG_FILE="${OUTPUT_BASEPATH}/log/$1_${current_time}.log"
	pai_log_head_options=(--log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval "${SAVE_INTERVAL}"
		--tensorboard-queue-size 1 --tensorboard-dir "${TENSORBOARD_DIR}" --log-timers-to-tensorboard
		--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size "${TP}"
		--pipeline-model-parallel-size "${PP}")
	pai_log_options=("${pai_log_head_options[@]}" --no-load-optim --no-load-rng)
}

# pai_pretrain_231007_options sets pai_pretrain_231007_options, the run of flags Pai's
# Megatron-LM-231007 pretraining scripts (Baichuan 2, Qwen 1.0) start their megatron_options
# with: --save … --split 98,2,0 --train-data-path, pai_optim_options and pai_shape_options
# (call pai_run_paths and pai_train_options first), logging with evaluation every 100
# iterations, and --num-workers 8 … --extra-vocab-size.
pai_pretrain_231007_options() {
	pai_pretrain_231007_options=(
		--save "${SAVED_PRETRAIN_CHECKPOINT_PATH}" --split 98,2,0 --train-data-path "${dataset_paths[@]}"
		"${pai_optim_options[@]}" "${pai_shape_options[@]}" --max-position-embeddings "${SEQ_LEN}"
		--log-interval 1 --eval-interval 100 "${pai_log_head_options[@]:4}" --no-load-optim --no-load-rng
		--num-workers 8 --seed 1234 --max-padding-length "${PAD_LEN}" --extra-vocab-size "${EXTRA_VOCAB_SIZE}")
}

# pai_train_options DECAY_STYLE INIT_STD [FLAG…] sets the runs of flags that Pai's
# global-batch scripts (pretraining and *_withGA fine-tuning, every model) write alike, for
# their megatron_options:
#   pai_optim_options  --lr LR --min-lr MIN_LR --lr-decay-style DECAY_STYLE --adam-beta1 0.9
#                      --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 --init-method-std
#                      INIT_STD, the FLAGs (what a script has in between: --dataloader-type
#                      cyclic, the dropouts), --lr-decay-iters LR_DECAY_ITERS --lr-warmup-iters
#                      LR_WARMUP_ITERS --train-iters TRAIN_ITERS;
#   pai_optim_wd_first_options  the same with --weight-decay 0.1 before the Adam betas, as
#                      Pai's v2 Llama-3 and Qwen1.5 mcore pretraining scripts write it;
#   pai_shape_options  --micro-batch-size BATCH_SIZE --global-batch-size GLOBAL_BATCH_SIZE
#                      --num-layers --hidden-size --num-attention-heads --ffn-hidden-size
#                      --seq-length SEQ_LEN: the batch, then the model's shape (Pai's Mistral
#                      mcore scripts put --ffn-hidden-size first: pai_shape_ffn_first_options).
pai_train_options() {
	local style=$1 std=$2
	shift 2
	local lr=(--lr "${LR}" --min-lr "${MIN_LR}" --lr-decay-style "${style}")
	local adam=(--adam-beta1 0.9 --adam-beta2 0.95)
	local iters=("$@" --lr-decay-iters "${LR_DECAY_ITERS}" --lr-warmup-iters "${LR_WARMUP_ITERS}" --train-iters "${TRAIN_ITERS}")
	pai_optim_options=("${lr[@]}" "${adam[@]}" --weight-decay 0.1 --clip-grad 1.0 --init-method-std "${std}" "${iters[@]}")
	pai_optim_wd_first_options=("${lr[@]}" --weight-decay 0.1 "${adam[@]}" --clip-grad 1.0 --init-method-std "${std}" "${iters[@]}")
	local batch=(--micro-batch-size "${BATCH_SIZE}" --global-batch-size "${GLOBAL_BATCH_SIZE}" --num-layers "${NUM_LAYERS}"
		--hidden-size "${HIDDEN_SIZE}")
	pai_shape_options=("${batch[@]}" --num-attention-heads "${NUM_ATTN_HEADS}" --ffn-hidden-size "${INTERMEDIATE_SIZE}"
		--seq-length "${SEQ_LEN}")
	pai_shape_ffn_first_options=("${batch[@]}" --ffn-hidden-size "${INTERMEDIATE_SIZE}" --num-attention-heads "${NUM_ATTN_HEADS}"
		--seq-length "${SEQ_LEN}")
}

# pai_llama_arch [FLAG…] sets pai_arch_options, the model flags of Pai's Llama-family scripts
# (Llama-2, Llama-3, Qwen1.5, Mistral's legacy model), in Pai's order: --swiglu --normalization
# RMSNorm, the FLAGs (what the script writes in between: its rotary embedding flags, and
# --norm-epsilon in the Llama-3 and Qwen1.5 mcore scripts), --position-embedding-type rope
# --untie-embeddings-and-output-weights. What follows (--disable-bias-linear, RoPE base, …)
# is the script's.
pai_llama_arch() {
	pai_arch_options=(--swiglu --normalization RMSNorm "$@" --position-embedding-type rope --untie-embeddings-and-output-weights)
}

# pai_mistral_mcore_arch sets pai_arch_options to the model flags of Pai's Mistral
# Megatron-Core scripts (pretraining, fine-tuning and evaluation), in its order: SwiGLU,
# RoPE, no linear biases, RMSNorm, unfused softmax, no learned position embedding.
pai_mistral_mcore_arch() {
	pai_arch_options=(--swiglu --use-rotary-position-embeddings --position-embedding-type rope
		--untie-embeddings-and-output-weights --disable-bias-linear --disable-bias-linear-fc --disable-bias-attn-fc
		--normalization RMSNorm --no-masked-softmax-fusion --no-position-embedding)
}

# pai_llama3_shape SIZE POS sets the shape variables as pai_model_shape does for Pai's
# Llama-3 scripts: 8B (32 layers, hidden 4096, 32 heads, 8 query groups, FFN 14336), or
# gomegatron's CPU sizes tiny and small.
pai_llama3_shape() {
	case $1 in
	8B)
		NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=14336 NUM_QUERY_GROUPS=8
		gqa_options=(--group-query-attention --num-query-groups 8)
		;;
	tiny | small) pai_model_shape "$1" "$2" ;;
	*) pai_die "MODEL_SIZE (arg $2): '$1' is not one of: 8B tiny small" ;;
	esac
}

# pai_qwen15_shape SIZE POS [SIZES…] sets the shape variables and MAX_POSITION_EMBEDDINGS as
# Pai's Qwen1.5 scripts do: 0.5B 1.8B 4B 7B 14B 32B (GQA, 8 groups) 72B, or gomegatron's tiny
# and small; SIZES narrows the list to a script's (Pai's run_evaluate_mcore_qwen.sh has no
# 32B). A2.7B, Qwen1.5-MoE, is refused: Pai runs it with its own MoE flags
# (--enable-shared-expert, --shared-moe-ffn-hidden-size), whose semantics the spec does not
# give; golaunch trains a converted Qwen1.5-MoE with Megatron-Core's flags instead.
pai_qwen15_shape() {
	local size=$1 pos=$2
	shift 2
	[ "$size" != A2.7B ] ||
		pai_die "MODEL_SIZE (arg ${pos}): A2.7B is Qwen1.5-MoE, which Pai trains with its own MoE flags (--enable-shared-expert, --shared-moe-ffn-hidden-size); convert the Hugging Face folder with tools/convert and train it with golaunch pretrain --use-checkpoint-args (Megatron-Core's --moe-router-pre-softmax, --moe-shared-expert-intermediate-size, --moe-shared-expert-gate)"
	[ $# -gt 0 ] || set -- 0.5B 1.8B 4B 7B 14B 32B 72B tiny small
	pai_enum MODEL_SIZE "$pos" "$size" "$@"
	gqa_options=()
	NUM_QUERY_GROUPS=0
	MAX_POSITION_EMBEDDINGS=32768
	case $size in
	0.5B) NUM_LAYERS=24 HIDDEN_SIZE=1024 NUM_ATTN_HEADS=16 INTERMEDIATE_SIZE=2816 ;;
	1.8B) NUM_LAYERS=24 HIDDEN_SIZE=2048 NUM_ATTN_HEADS=16 INTERMEDIATE_SIZE=5504 ;;
	4B) NUM_LAYERS=40 HIDDEN_SIZE=2560 NUM_ATTN_HEADS=20 INTERMEDIATE_SIZE=6912 ;;
	7B) NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=11008 ;;
	14B) NUM_LAYERS=40 HIDDEN_SIZE=5120 NUM_ATTN_HEADS=40 INTERMEDIATE_SIZE=13696 ;;
	32B)
		NUM_LAYERS=64 HIDDEN_SIZE=5120 NUM_ATTN_HEADS=40 INTERMEDIATE_SIZE=27392 NUM_QUERY_GROUPS=8
		gqa_options=(--group-query-attention --num-query-groups 8)
		;;
	72B) NUM_LAYERS=80 HIDDEN_SIZE=8192 NUM_ATTN_HEADS=64 INTERMEDIATE_SIZE=24576 ;;
	tiny | small) pai_model_shape "$size" "$pos" ;;
	esac
}

# pai_baichuan2_shape SIZE POS sets the shape variables as Pai's Baichuan 2 scripts do, and
# baichuan_options, their model_options: 7B (32 layers, hidden 4096, 32 heads, FFN 11008,
# RoPE), 13B (40 layers, hidden 5120, 40 heads, FFN 13696, ALiBi), or gomegatron's CPU sizes
# tiny and small (RoPE; multi-head like Baichuan's W_pack, the vocabulary the tokenizer's).
pai_baichuan2_shape() {
	pai_enum MODEL_SIZE "$2" "$1" 7B 13B tiny small
	gqa_options=()
	NUM_QUERY_GROUPS=0
	baichuan_options=(--use-rotary-position-embeddings --position-embedding-type rope)
	case $1 in
	7B) NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=11008 ;;
	13B)
		NUM_LAYERS=40 HIDDEN_SIZE=5120 NUM_ATTN_HEADS=40 INTERMEDIATE_SIZE=13696
		baichuan_options=(--use-alibi-mask --position-embedding-type none)
		;;
	tiny) NUM_LAYERS=2 HIDDEN_SIZE=64 NUM_ATTN_HEADS=4 INTERMEDIATE_SIZE=172 ;;
	small) NUM_LAYERS=4 HIDDEN_SIZE=256 NUM_ATTN_HEADS=8 INTERMEDIATE_SIZE=688 ;;
	esac
}

# pai_qwen1_shape SIZE POS [SIZES…] sets the shape variables as Pai's Qwen (1.0) scripts do,
# and rope_options: 1.8B, 7B, 14B, 72B (RoPE positions interpolated 4×, as Pai's
# pretraining script passes), or gomegatron's CPU sizes tiny and small (multi-head, the
# vocabulary the tokenizer's). SIZES is the list a script accepts (default all of them; Pai's
# generation script has 7B and 14B).
pai_qwen1_shape() {
	local size=$1 pos=$2
	shift 2
	[ $# -gt 0 ] || set -- 1.8B 7B 14B 72B tiny small
	pai_enum MODEL_SIZE "$pos" "$size" "$@"
	gqa_options=()
	rope_options=()
	NUM_QUERY_GROUPS=0
	PAI_FFN_FACTOR=2 # QWenLMHeadModel's config.json: intermediate_size = 2 × --ffn-hidden-size
	case $size in
	1.8B) NUM_LAYERS=24 HIDDEN_SIZE=2048 NUM_ATTN_HEADS=16 INTERMEDIATE_SIZE=5504 ;;
	7B) NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=11008 ;;
	14B) NUM_LAYERS=40 HIDDEN_SIZE=5120 NUM_ATTN_HEADS=40 INTERMEDIATE_SIZE=13696 ;;
	72B)
		NUM_LAYERS=80 HIDDEN_SIZE=8192 NUM_ATTN_HEADS=64 INTERMEDIATE_SIZE=24576
		rope_options=(--rotary-seq-len-interpolation-factor 4)
		;;
	tiny) NUM_LAYERS=2 HIDDEN_SIZE=64 NUM_ATTN_HEADS=4 INTERMEDIATE_SIZE=172 ;;
	small) NUM_LAYERS=4 HIDDEN_SIZE=256 NUM_ATTN_HEADS=8 INTERMEDIATE_SIZE=688 ;;
	esac
}

# pai_qwen1_arch sets pai_arch_options, the model flags Pai's Qwen (1.0) scripts end with:
# SwiGLU, RMSNorm, RoPE, untied output, eps 1e-6, biases on the QKV projection only.
pai_qwen1_arch() {
	pai_arch_options=(--swiglu --normalization RMSNorm --use-rotary-position-embeddings --position-embedding-type rope
		--untie-embeddings-and-output-weights --norm-epsilon 1e-6 --disable-bias-linear-fc --disable-bias-attn-fc)
}

# pai_normhead sets normhead_options to --use-normhead: Baichuan 2's output layer (NormHead),
# which the converted checkpoints hold and record. Pai's Baichuan 2 scripts omit it, so a
# checkpoint they saved has none; NORMHEAD=0 in the environment leaves it out for those.
pai_normhead() {
	normhead_options=(--use-normhead)
	case ${NORMHEAD:-1} in
	1) ;;
	0) normhead_options=() ;;
	*) pai_die "NORMHEAD='${NORMHEAD}' (environment) is not one of: 1 0" ;;
	esac
}

# pai_mistral_shape SIZE POS [SIZES…] sets the shape variables, MAX_POSITION_EMBEDDINGS and
# SLW (the sliding window) as Pai's Mistral scripts do: 7B (GQA, 8 groups, FFN 14336), or
# tiny/small. SIZES is the list a script accepts (default 7B tiny small); Pai's evaluation
# scripts add their own: 0.125B, 7B's layer with 2 layers (run_evaluate_mcore_mistral.sh),
# and Llama-2's 13B and 70B (run_evaluate_huggingface_mistral.sh).
pai_mistral_shape() {
	local size=$1 pos=$2
	shift 2
	[ $# -gt 0 ] || set -- 7B tiny small
	pai_enum MODEL_SIZE "$pos" "$size" "$@"
	MAX_POSITION_EMBEDDINGS=32768 SLW=4096
	case $size in
	7B | 0.125B)
		NUM_LAYERS=32 HIDDEN_SIZE=4096 NUM_ATTN_HEADS=32 INTERMEDIATE_SIZE=14336 NUM_QUERY_GROUPS=8
		gqa_options=(--group-query-attention --num-query-groups 8)
		[ "$size" = 7B ] || NUM_LAYERS=2
		;;
	13B | 70B | tiny | small) pai_model_shape "$size" "$pos" ;;
	*) pai_die "MODEL_SIZE (arg ${pos}): no Mistral shape for '${size}'" ;;
	esac
}

# pai_gpu_count prints the local GPU count: the entries of CUDA_VISIBLE_DEVICES when it is
# set, else the lines of `nvidia-smi -L`, else 1 (a CPU machine runs one process unless
# GPUS_PER_NODE says otherwise).
pai_gpu_count() {
	local n=0 ids
	if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
		IFS=, read -r -a ids <<<"${CUDA_VISIBLE_DEVICES}"
		n=${#ids[@]}
	elif command -v nvidia-smi >/dev/null 2>&1; then
		n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
	fi
	[ "$n" -gt 0 ] 2>/dev/null || n=1
	printf '%s\n' "$n"
}

# pai_env_var NAME WHAT [REGEX]: a variable ENV=dlc needs must be set (and match REGEX).
pai_env_var() {
	[ -n "${!1:-}" ] || pai_die "ENV (arg 1): dlc needs the environment variable $1 ($2), which PAI-DLC sets; use ENV=dsw on a single machine"
	[ -z "${3:-}" ] || [[ ${!1} =~ $3 ]] || pai_die "ENV (arg 1): dlc: $1='${!1}' is not a valid number ($2)"
}

# pai_distributed ENV sets MASTER_ADDR MASTER_PORT NNODES NODE_RANK GPUS_PER_NODE as Pai's
# scripts do, and launcher_options (golaunch flags in torchrun's spelling).
#   dsw: one node, localhost, a random port in 10000-65535; GPUS_PER_NODE from the
#        environment if set, else the local GPU count (pai_gpu_count). Pai hard-codes 8.
#   dlc: PAI-DLC's node-level variables: NNODES=$WORLD_SIZE NODE_RANK=$RANK
#        GPUS_PER_NODE=$KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR/MASTER_PORT inherited.
pai_distributed() {
	case $1 in
	dsw)
		MASTER_ADDR=localhost
		MASTER_PORT=$(shuf -n 1 -i 10000-65535)
		NNODES=1
		NODE_RANK=0
		if [ -n "${GPUS_PER_NODE:-}" ]; then
			[[ $GPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] || pai_die "GPUS_PER_NODE='${GPUS_PER_NODE}' (environment) is not a positive integer"
		else
			GPUS_PER_NODE=$(pai_gpu_count)
		fi
		;;
	dlc)
		pai_env_var WORLD_SIZE "the number of nodes" '^[1-9][0-9]*$'
		pai_env_var RANK "this node's rank" '^(0|[1-9][0-9]*)$'
		pai_env_var KUBERNETES_CONTAINER_RESOURCE_GPU "GPUs per node" '^[1-9][0-9]*$'
		pai_env_var MASTER_ADDR "node 0's address"
		pai_env_var MASTER_PORT "node 0's port" '^[1-9][0-9]*$'
		((RANK < WORLD_SIZE)) || pai_die "ENV (arg 1): dlc: RANK=${RANK} is not below WORLD_SIZE=${WORLD_SIZE}"
		NNODES=${WORLD_SIZE}
		NODE_RANK=${RANK}
		GPUS_PER_NODE=${KUBERNETES_CONTAINER_RESOURCE_GPU}
		;;
	*) pai_die "ENV (arg 1): '$1' is not one of: dsw dlc" ;;
	esac
	launcher_options=(--nproc_per_node "$GPUS_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK"
		--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
}

# pai_check_parallel TP_POS PP_POS [GBS_POS MBS_POS]: the model and the processes must
# split as Megatron asserts: heads and query groups by TP, layers by PP, the world size
# (NNODES × GPUS_PER_NODE) by TP × PP, and the global batch by micro batch × DP.
# Messages name the model MODEL_SIZE, or PAI_SIZE_NAME (a script whose size argument has
# another name; pai_check_checkpoint too).
pai_check_parallel() {
	local world=$((NNODES * GPUS_PER_NODE)) dp
	((NUM_ATTN_HEADS % TP == 0)) ||
		pai_die "TP (arg $1): ${TP} does not divide the ${NUM_ATTN_HEADS} attention heads of ${PAI_SIZE_NAME:-MODEL_SIZE} ${MODEL_SIZE}"
	if ((NUM_QUERY_GROUPS > 0 && NUM_QUERY_GROUPS % TP != 0)); then
		pai_die "TP (arg $1): ${TP} does not divide the ${NUM_QUERY_GROUPS} query groups of ${PAI_SIZE_NAME:-MODEL_SIZE} ${MODEL_SIZE}"
	fi
	((NUM_LAYERS % PP == 0)) ||
		pai_die "PP (arg $2): ${PP} does not divide the ${NUM_LAYERS} layers of ${PAI_SIZE_NAME:-MODEL_SIZE} ${MODEL_SIZE}"
	((world % (TP * PP) == 0)) ||
		pai_die "TP (arg $1) × PP (arg $2) = $((TP * PP)) does not divide the ${world} processes (NNODES ${NNODES} × GPUS_PER_NODE ${GPUS_PER_NODE}; set GPUS_PER_NODE for ENV=dsw)"
	if [ $# -ge 4 ]; then
		dp=$((world / (TP * PP)))
		((GLOBAL_BATCH_SIZE % (BATCH_SIZE * dp) == 0)) ||
			pai_die "GLOBAL_BATCH_SIZE (arg $3): ${GLOBAL_BATCH_SIZE} is not a multiple of BATCH_SIZE (arg $4) ${BATCH_SIZE} × data-parallel size ${dp}"
	fi
}

# pai_check_data NAME POS PATHS: every path of a Megatron data path (weights allowed, as in
# "0.3 a 0.7 b") is a file (a raw JSON dataset) or the prefix of an existing .bin/.idx pair.
pai_check_data() {
	local name=$1 pos=$2 p
	local -a parts
	read -r -a parts <<<"$3"
	[ ${#parts[@]} -gt 0 ] || pai_die "${name} (arg ${pos}): empty"
	for p in "${parts[@]}"; do
		[[ $p =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] && continue # blend weight
		[ -f "$p" ] && continue
		case $p in
		*.bin | *.idx) pai_die "${name} (arg ${pos}): ${p} not found (give an existing .json file or a dataset prefix without .bin/.idx)" ;;
		*.json | *.jsonl) pai_die "${name} (arg ${pos}): ${p} not found" ;;
		esac
		if [ ! -f "${p}.bin" ]; then
			pai_die "${name} (arg ${pos}): ${p}.bin not found (${p} is neither a file nor the prefix of a .bin/.idx dataset)"
		fi
		[ -f "${p}.idx" ] || pai_die "${name} (arg ${pos}): ${p}.idx not found (next to ${p}.bin)"
	done
}

# pai_check_file NAME POS PATH: PATH must be an existing regular file.
pai_check_file() {
	[ -f "$3" ] || pai_die "$1 (arg $2): $3 not found"
}

# pai_json_int FILE KEY prints the first integer value of "KEY" in a JSON file, or nothing.
pai_json_int() {
	grep -o "\"$2\"[[:space:]]*:[[:space:]]*[0-9][0-9]*" "$1" 2>/dev/null | head -n 1 | grep -o '[0-9][0-9]*$' || true
}

# pai_check_checkpoint NAME POS PATH SIZE_POS [HINT]: a checkpoint to load must exist and, when it
# carries a Hugging Face config.json (an HF folder, or a Pai-converted Megatron folder,
# which keeps the HF json files), match MODEL_SIZE's layers, hidden size, heads, FFN size
# (times PAI_FFN_FACTOR, 2 for Qwen 1.0) and query groups. A Megatron folder needs latest_checkpointed_iteration.txt naming an
# existing iteration folder. HINT follows a missing checkpoint's message (default: pass none).
# TODO: compare a Megatron checkpoint without config.json with the args pickled in its
# model_optim_rng.pt (needs a reader; golaunch checks shapes when it loads).
pai_check_checkpoint() {
	local name=$1 pos=$2 dir=$3 size_pos=$4 hint=${5-pass none to start from scratch} got want k v it sub
	while [ "${#dir}" -gt 1 ] && [ "${dir%/}" != "$dir" ]; do dir=${dir%/}; done # messages without //
	[ -e "$dir" ] || pai_die "${name} (arg ${pos}): ${dir} not found${hint:+ ($hint)}"
	[ -d "$dir" ] || pai_die "${name} (arg ${pos}): ${dir} is not a directory"
	if [ -f "$dir/config.json" ]; then
		for k in num_hidden_layers:NUM_LAYERS hidden_size:HIDDEN_SIZE num_attention_heads:NUM_ATTN_HEADS \
			intermediate_size:INTERMEDIATE_SIZE num_key_value_heads:NUM_QUERY_GROUPS; do
			got=$(pai_json_int "$dir/config.json" "${k%%:*}")
			v=${k#*:}
			want=${!v}
			[ -n "$got" ] || continue
			if [ "${k%%:*}" = num_key_value_heads ] && [ "$want" -eq 0 ]; then
				want=${NUM_ATTN_HEADS} # multi-head attention: one KV head per head
			fi
			if [ "${k%%:*}" = intermediate_size ]; then
				want=$((want * ${PAI_FFN_FACTOR:-1})) # Qwen (1.0) counts w1 and w2
			fi
			[ "$got" -eq "$want" ] ||
				pai_die "${name} (arg ${pos}): ${dir}/config.json has ${k%%:*} ${got}, but ${PAI_SIZE_NAME:-MODEL_SIZE} (arg ${size_pos}) ${MODEL_SIZE} has ${want}"
		done
		return 0
	fi
	if [ -f "$dir/latest_checkpointed_iteration.txt" ]; then
		it=$(tr -d '[:space:]' <"$dir/latest_checkpointed_iteration.txt")
		case $it in
		release) sub=release ;;
		'' | *[!0-9]*) pai_die "${name} (arg ${pos}): ${dir}/latest_checkpointed_iteration.txt holds '${it}', not an iteration or release" ;;
		*) sub=$(printf 'iter_%07d' "$((10#$it))") ;;
		esac
		[ -d "$dir/$sub" ] || pai_die "${name} (arg ${pos}): ${dir}/latest_checkpointed_iteration.txt names ${sub}, but ${dir}/${sub} is missing"
		return 0
	fi
	pai_die "${name} (arg ${pos}): ${dir} has neither latest_checkpointed_iteration.txt (Megatron) nor config.json (Hugging Face)${hint:+; $hint}"
}

# pai_check_writable NAME POS DIR [SHOWN]: DIR must be a writable directory, or creatable
# (its nearest existing ancestor is a writable directory). Nothing is created. Messages name
# SHOWN (default DIR), e.g. the output file whose folder DIR is.
pai_check_writable() {
	local name=$1 pos=$2 d=$3 shown=${4:-$3}
	while [ ! -e "$d" ]; do
		case $d in
		*/*) d=${d%/*} ;;
		*) d=. ;;
		esac
		[ -n "$d" ] || d=/
	done
	[ -d "$d" ] || pai_die "${name} (arg ${pos}): ${shown} cannot be created: ${d} is not a directory"
	[ -w "$d" ] && [ -x "$d" ] || pai_die "${name} (arg ${pos}): ${shown} is not writable (${d} is not writable)"
}

# pai_tool NAME ENVVAR PKG [path] prints the executable to run: $ENVVAR if set, else (with
# "path") NAME on PATH, else bin/NAME built from PKG with go (or the existing bin/NAME when
# go is missing). PATH is not searched for a name as generic as preprocess.
pai_tool() {
	local name=$1 var=$2 pkg=$3 search=${4:-} path
	if [ -n "${!var:-}" ]; then
		path=$(command -v "${!var}") || pai_die "${var}=${!var} is not an executable"
		printf '%s\n' "$path"
		return 0
	fi
	if [ "$search" = path ] && path=$(command -v "$name"); then
		printf '%s\n' "$path"
		return 0
	fi
	if command -v go >/dev/null 2>&1; then
		(cd "$PAI_REPO" && go build -o "bin/$name" "$pkg") >&2 || {
			printf '%s: building %s failed\n' "$PAI_SCRIPT" "$name" >&2
			exit 1
		}
	fi
	[ -x "$PAI_REPO/bin/$name" ] ||
		pai_die "$name not found: put it on PATH, set $var, or install Go to build it from $PAI_REPO"
	printf '%s\n' "$PAI_REPO/bin/$name"
}

# pai_quote prints its arguments as one shell-quoted line (plain words stay as they are).
pai_quote() {
	local out='' a
	for a in "$@"; do
		out+="${out:+ }$(printf '%q' "$a")"
	done
	printf '%s\n' "$out"
}

# pai_feature_options [mcore] sets the option arrays Pai's pretrain and finetune scripts build
# from AC, PR, DO, FL, TE, SP (only with TP > 1) and PRETRAIN_CHECKPOINT_PATH, flag for flag;
# the mcore scripts add --apply-query-key-layer-scaling to fp16 (and export
# NVTE_APPLY_QK_LAYER_SCALING=1, which only Transformer Engine reads).
pai_feature_options() {
	activation_checkpoint_options=()
	case $AC in
	full) activation_checkpoint_options=(--recompute-method uniform --recompute-granularity full) ;;
	sel) activation_checkpoint_options=(--recompute-activations) ;;
	esac
	case $PR in
	fp16)
		pr_options=(--fp16)
		if [ "${1:-}" = mcore ]; then
			pr_options+=(--apply-query-key-layer-scaling)
			export NVTE_APPLY_QK_LAYER_SCALING=1
		fi
		;;
	bf16) pr_options=(--bf16) ;;
	fp8) pr_options=(--bf16 --fp8-hybrid --fp8-amax-compute-algo max --fp8-amax-history-len 1024 --transformer-impl transformer_engine) ;;
	esac
	do_options=()
	[ "$DO" = true ] && do_options=(--use-distributed-optimizer)
	flash_options=()
	[ "$FL" = true ] && flash_options=(--use-flash-attn)
	te_options=()
	[ "$TE" = true ] && te_options=(--transformer-impl transformer_engine)
	sp_options=()
	if [ "$SP" = true ] && [ "$TP" -gt 1 ]; then sp_options=(--sequence-parallel); fi
	load_options=()
	[ "$PRETRAIN_CHECKPOINT_PATH" != none ] && load_options=(--load "$PRETRAIN_CHECKPOINT_PATH")
	read -r -a moe_options <<<"${PAI_MOE_OPTIONS:-}"
	return 0
}

# pai_moe VALUE POS [FLAGS] checks the MOE argument of the mcore scripts: false, or true,
# which adds Pai's mixture-of-experts options (FLAGS, Llama-2's by default) to the run.
pai_moe() {
	pai_enum MOE "$2" "$1" true false
	PAI_MOE_OPTIONS=
	[ "$1" = true ] || return 0
	PAI_MOE_OPTIONS=${3:---moe-router-topk 1 --num-experts 4 --expert-model-parallel-size 2}
}

# pai_convert_launch HF_CKPT_PATH runs tools/convert with the array args as Pai's
# convertors end: mg2hf=true converts to Hugging Face with that folder's config (HF_CKPT_PATH
# empty: the config.json and tokenizer files kept beside the Megatron checkpoint), FORCE=1
# adds --force, DRY_RUN prints the command; a conversion that succeeds ends with Pai's
# elapsed-time line (a failing one stops the script, set -e).
pai_convert_launch() {
	if [ "$mg2hf" = true ]; then
		args+=(--convert_checkpoint_from_megatron_to_transformers)
		# Without a folder, tools/convert takes config.json and the tokenizer from the checkpoint root.
		if [ -n "$1" ]; then args+=(--hf_ckpt_path "$1"); fi
	fi
	if [ "${FORCE:-0}" = 1 ]; then args+=(--force); fi
	if [ "${DRY_RUN:-0}" != 0 ]; then
		pai_quote convert "${args[@]}"
		exit 0
	fi
	local bin start
	bin=$(pai_tool convert CONVERT_BIN ./tools/convert)
	start=$SECONDS
	"$bin" "${args[@]}"
	echo "$(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) sec" # Pai's closing line
}

# pai_train_launch COMMAND runs golaunch COMMAND with the options in Pai's order (megatron,
# pr, load, te, activation checkpoint, do, flash, sp, gqa, moe), or prints it with DRY_RUN=1;
# a real run creates the output folders and tees the console into LOG_FILE (unless
# OUTPUT_BASEPATH is empty: then it only runs).
pai_train_launch() {
	command_args=("$1" "${megatron_options[@]}" "${pr_options[@]}" "${load_options[@]}" "${te_options[@]}"
		"${activation_checkpoint_options[@]}" "${do_options[@]}" "${flash_options[@]}" "${sp_options[@]}" "${gqa_options[@]}"
		"${moe_options[@]}")
	if [ "${DRY_RUN:-0}" != 0 ]; then
		pai_quote golaunch "${launcher_options[@]}" "${command_args[@]}"
		exit 0
	fi
	local bin
	bin=$(pai_tool golaunch GOLAUNCH ./cmd/golaunch path)
	export CUDA_DEVICE_MAX_CONNECTIONS=1
	if [ -z "${OUTPUT_BASEPATH:-}" ]; then # nothing to keep (evaluation)
		pai_quote "$bin" "${launcher_options[@]}" "${command_args[@]}"
		"$bin" "${launcher_options[@]}" "${command_args[@]}"
		return
	fi
	mkdir -p "${OUTPUT_BASEPATH}/tensorboard/" "${OUTPUT_BASEPATH}/checkpoint/" "${OUTPUT_BASEPATH}/log/" "${TENSORBOARD_DIR}"
	pai_quote "$bin" "${launcher_options[@]}" "${command_args[@]}" | tee -a "$LOG_FILE"
	"$bin" "${launcher_options[@]}" "${command_args[@]}" 2>&1 | tee -a "$LOG_FILE"
}

# pai_evaluate KIND ARGS… is Pai's evaluation scripts: run_evaluate_megatron_*.sh (KIND
# legacy) and run_evaluate_mcore_*.sh (KIND mcore), 17 arguments each: ENV
# MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL
# SP TE DATASET_PATH PRETRAIN_CHECKPOINT_PATH; and run_evaluate_huggingface_*.sh (KIND hf), 10
# arguments: ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR
# DATASET_PATH PRETRAIN_CHECKPOINT_PATH (a Hugging Face folder, one process on dsw). It runs
# `golaunch … evaluate-raw` (Pai's evaluate_{megatron,mcore,huggingface}_*.py) with Pai's
# flags in Pai's order and writes no files.
#
# The defaults are Pai's Llama-2 scripts; a script for another model sets, before calling:
#   PAI_MODEL            the model named in the usage (Llama-2)
#   PAI_SHAPE, PAI_SIZES the MODEL_SIZE function (pai_model_shape) and its usage text
#   PAI_EXTRA_VOCAB      the usage text of EXTRA_VOCAB_SIZE (--extra-vocab-size (usually 0))
#   PAI_SEQ_LEN_HELP     the usage text of SEQ_LEN (--seq-length and --max-position-embeddings)
#   PAI_DATASET          the --dataset pai_eval_options passes, for the usage and messages
#                        (LLama-Pretrain-Raw; KIND hf: LLama-SFT)
#   PAI_TOKENIZER        KIND hf's --patch-tokenizer-type (LLamaTokenizer)
#   PAI_EXAMPLE          the usage's example arguments
# and defines pai_eval_options, which sets megatron_options for KIND legacy/mcore from
# eval_head (--valid-data-path … --seq-length) and eval_layout (--log-interval 1 …
# --num-workers 0), the runs of flags every such Pai script has around its
# --max-position-embeddings and --ffn-hidden-size, or eval_raw_options (both with those
# flags, then --dataset LLama-Pretrain-Raw --max-padding-length --extra-vocab-size)
# (default: pai_eval_llama_options).
pai_evaluate() {
	local kind=$1 what="a Megatron (legacy model)" n=17 ds=16 ck=17 usage_args pad_help
	shift
	PAI_SCRIPT=$(basename "$0")
	local model=${PAI_MODEL:-Llama-2} sizes=${PAI_SIZES:-"7B | 13B | 70B (GQA, 8 groups) | tiny | small (CPU sizes)"}
	local dataset=${PAI_DATASET:-LLama-Pretrain-Raw} tokenizer=${PAI_TOKENIZER:-LLamaTokenizer}
	local example=${PAI_EXAMPLE:-}
	usage_args="   9 TP                        --tensor-model-parallel-size
  10 PP                        --pipeline-model-parallel-size
  11 AC                        full | sel | none (accepted; evaluation keeps no activations)
  12 DO                        true | false (--use-distributed-optimizer)
  13 FL                        true | false (--use-flash-attn)
  14 SP                        true | false (--sequence-parallel, only when TP > 1)
  15 TE                        true | false (--transformer-impl transformer_engine)
  16 DATASET_PATH              --valid-data-path: a JSON list of {instruction, input, output}
  17 PRETRAIN_CHECKPOINT_PATH  --load (a converted or trained checkpoint), or none"
	case $kind in
	mcore) what="a Megatron-Core" ;;
	hf)
		what="a Hugging Face" n=10 ds=9 ck=10 dataset=LLama-SFT
		usage_args="   9 DATASET_PATH              --valid-data-path: a JSON list of {instruction, input, output}
  10 PRETRAIN_CHECKPOINT_PATH  --load: a Hugging Face folder (config.json, *.safetensors, tokenizer), whose model is evaluated"
		;;
	esac
	if [ -z "$example" ]; then
		example="dsw ../.. 7B 1 80 80 0 bf16 $([ "$kind" = hf ] || printf '2 1 sel true false true false ')/mnt/llama2-datasets/alpaca_data.json /mnt/llama2-ckpts/Llama-2-7b-hf$([ "$kind" = hf ] || printf -- '-to-mg-tp2-pp1')/"
	fi
	pad_help="samples are PAD_LEN + 1 tokens: --dataset ${dataset}"
	[ "$dataset" != LLama-SFT ] || pad_help="samples are PAD_LEN tokens: --dataset LLama-SFT"
	PAI_USAGE="usage: ${PAI_SCRIPT} ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR $([ "$kind" = hf ] || printf 'TP PP AC DO FL SP TE ')DATASET_PATH PRETRAIN_CHECKPOINT_PATH

Evaluate ${what} ${model} checkpoint on raw JSON samples with \`golaunch … evaluate-raw\`: the loss
of every micro-batch, one pass (Pai-Megatron-Patch's arguments, in order):
   1 ENV                       dsw (this machine$([ "$kind" = hf ] && printf '; one process unless GPUS_PER_NODE says otherwise')) | dlc (PAI-DLC: WORLD_SIZE nodes, RANK, KUBERNETES_CONTAINER_RESOURCE_GPU, MASTER_ADDR, MASTER_PORT)
   2 MEGATRON_PATCH_PATH       accepted and ignored (gomegatron needs no Megatron or Pai checkout)
   3 MODEL_SIZE                ${sizes}
   4 BATCH_SIZE                --micro-batch-size
   5 SEQ_LEN                   ${PAI_SEQ_LEN_HELP:-"--seq-length and --max-position-embeddings"}
   6 PAD_LEN                   --max-padding-length (${pad_help})
   7 EXTRA_VOCAB_SIZE          ${PAI_EXTRA_VOCAB:-"--extra-vocab-size (usually 0)"}
   8 PR                        fp16 | bf16$([ "$kind" = hf ] || printf ' | fp8')
${usage_args}

${PAI_ENV_HELP}

example: ${PAI_SCRIPT} ${example}"
	pai_nargs "$n" $#
	ENV=$1 MEGATRON_PATCH_PATH=$2 MODEL_SIZE=$3 BATCH_SIZE=$4 SEQ_LEN=$5 PAD_LEN=$6 EXTRA_VOCAB_SIZE=$7 PR=$8
	pai_enum ENV 1 "$ENV" dsw dlc
	"${PAI_SHAPE:-pai_model_shape}" "$MODEL_SIZE" 3
	pai_int_pos BATCH_SIZE 4 "$BATCH_SIZE"
	pai_int_pos SEQ_LEN 5 "$SEQ_LEN"
	pai_int_pos PAD_LEN 6 "$PAD_LEN"
	pai_int_nonneg EXTRA_VOCAB_SIZE 7 "$EXTRA_VOCAB_SIZE"
	if [ "$kind" = hf ]; then
		pai_enum PR 8 "$PR" fp16 bf16
		TP=1 PP=1 AC=none DO=false FL=false SP=false TE=false DATASET_PATH=$9 PRETRAIN_CHECKPOINT_PATH=${10}
	else
		pai_enum PR 8 "$PR" fp16 bf16 fp8
		TP=$9 PP=${10} AC=${11} DO=${12} FL=${13} SP=${14} TE=${15} DATASET_PATH=${16} PRETRAIN_CHECKPOINT_PATH=${17}
		pai_int_pos TP 9 "$TP"
		pai_int_pos PP 10 "$PP"
		pai_enum AC 11 "$AC" full sel none
		pai_enum DO 12 "$DO" true false
		pai_enum FL 13 "$FL" true false
		pai_enum SP 14 "$SP" true false
		pai_enum TE 15 "$TE" true false
	fi
	if [ -f "${DATASET_PATH}.bin" ]; then
		pai_die "DATASET_PATH (arg ${ds}): ${DATASET_PATH} is a .bin/.idx dataset; Pai's evaluation reads a raw JSON file (${dataset})"
	fi
	pai_check_file DATASET_PATH "$ds" "$DATASET_PATH"
	if [ "$kind" = hf ]; then
		pai_check_checkpoint PRETRAIN_CHECKPOINT_PATH "$ck" "$PRETRAIN_CHECKPOINT_PATH" 3 ""
		[ -f "${PRETRAIN_CHECKPOINT_PATH}/config.json" ] ||
			pai_die "PRETRAIN_CHECKPOINT_PATH (arg ${ck}): ${PRETRAIN_CHECKPOINT_PATH} has no config.json: the Hugging Face evaluation loads a Hugging Face folder"
		[ "$ENV" = dlc ] || GPUS_PER_NODE=${GPUS_PER_NODE:-1} # Pai: one GPU (CUDA_VISIBLE_DEVICES=5)
	elif [ "$PRETRAIN_CHECKPOINT_PATH" != none ]; then
		pai_check_checkpoint PRETRAIN_CHECKPOINT_PATH "$ck" "$PRETRAIN_CHECKPOINT_PATH" 3 "pass none to evaluate a random model"
	fi
	pai_distributed "$ENV"
	if [ "$kind" != hf ]; then pai_check_parallel 9 10; fi
	if [ "$kind" = mcore ]; then pai_feature_options mcore; else pai_feature_options; fi
	# The runs of options Pai's evaluation scripts share: data, batch and shape; logging and layout.
	eval_head=(--valid-data-path "${DATASET_PATH}" --micro-batch-size "${BATCH_SIZE}" --num-layers "${NUM_LAYERS}"
		--hidden-size "${HIDDEN_SIZE}" --num-attention-heads "${NUM_ATTN_HEADS}" --seq-length "${SEQ_LEN}")
	local logs=(--log-interval 1 --eval-interval 100 --eval-iters 10)
	eval_layout=("${logs[@]}" --tensor-model-parallel-size "${TP}" --pipeline-model-parallel-size "${PP}" --no-load-optim
		--no-load-rng --seed 1234 --num-workers 0)
	# The run Pai's Qwen1.5 and Baichuan 2 legacy scripts share: head, shape, layout, data.
	eval_raw_options=("${eval_head[@]}" --max-position-embeddings "${SEQ_LEN}" --ffn-hidden-size "${INTERMEDIATE_SIZE}"
		"${eval_layout[@]}" --dataset LLama-Pretrain-Raw --max-padding-length "${PAD_LEN}" --extra-vocab-size "${EXTRA_VOCAB_SIZE}")
	if [ "$kind" = hf ]; then
		megatron_options=(
			--transformer-type huggingface
			"${eval_head[@]}"
			--max-position-embeddings "${SEQ_LEN}"
			"${logs[@]}"
			--tensor-model-parallel-size 1
			--pipeline-model-parallel-size 1
			--no-load-optim
			--num-workers 0
			--dataset LLama-SFT
			--use-distributed-optimizer
			--max-padding-length "${PAD_LEN}"
			--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
			--patch-tokenizer-type "${tokenizer}"
		)
		# Pai's order: megatron, pr, load only.
		activation_checkpoint_options=() te_options=() do_options=() flash_options=() sp_options=() gqa_options=()
	elif declare -F pai_eval_options >/dev/null; then
		pai_eval_options "$kind"
	else
		pai_eval_llama_options "$kind"
	fi
	OUTPUT_BASEPATH= # Pai's evaluation writes no files: the loss goes to the console
	pai_train_launch evaluate-raw
}

# pai_eval_llama_options KIND [FLAG…] sets megatron_options as Pai's
# run_evaluate_megatron_llama.sh (KIND legacy) and run_evaluate_mcore_llama.sh (KIND mcore)
# do; FLAGs follow Pai's last flag (--disable-bias-linear), for the scripts copied from them
# (Qwen1.5's mcore evaluation).
pai_eval_llama_options() {
	local kind=$1
	shift
	if [ "$kind" = mcore ]; then
		pai_llama_arch --use-rotary-position-embeddings --no-rope-fusion
	else
		pai_llama_arch --use-llama2-rotary-position-embeddings
	fi
	megatron_options=(
		"${eval_head[@]}"
		--max-position-embeddings "${SEQ_LEN}"
		--ffn-hidden-size "${INTERMEDIATE_SIZE}"
		"${eval_layout[@]}"
		--max-padding-length "${PAD_LEN}"
		--extra-vocab-size "${EXTRA_VOCAB_SIZE}"
		--patch-tokenizer-type LLamaTokenizer
		--dataset LLama-Pretrain-Raw
		"${pai_arch_options[@]}"
		--disable-bias-linear
		"$@"
	)
	# --use-mcore-models is gomegatron's addition: Megatron-Core's key names, as Pai's
	# entry point builds Megatron-Core's GPTModel.
	if [ "$kind" = mcore ]; then megatron_options+=(--use-mcore-models); fi
}

# pai_generate_usage SUMMARY EXAMPLE SIZES [EXTRA_VOCAB [PENALTY]] sets PAI_USAGE for the 18
# arguments of Pai's generation scripts: SIZES describes MODEL_SIZE, EXTRA_VOCAB
# EXTRA_VOCAB_SIZE (default the shared text) and PENALTY REPETITION_PENALTY.
pai_generate_usage() {
	local extra=EXTRA_VOCAB_SIZE penalty=REPETITION_PENALTY
	[ -z "${4:-}" ] || extra="EXTRA_VOCAB_SIZE=$4"
	[ -z "${5:-}" ] || penalty="REPETITION_PENALTY=$5"
	PAI_ENV_HELP=$PAI_GENERATE_ENV_HELP pai_set_usage "$1" "$2" \
		"ENV=dsw | dlc (either way one node, localhost, one process per TP rank)" \
		MEGATRON_PATCH_PATH CHECKPOINT_PATH "MODEL_SIZE=$3" \
		"TP=--tensor-model-parallel-size (also the number of processes)" \
		BS "SEQ_LEN=--seq-length and --max-position-embeddings" "PAD_LEN=--max-padding-length" "$extra" \
		"PR=fp16 | bf16" TOP_K INPUT_SEQ_LEN OUTPUT_SEQ_LEN INPUT_FILE OUTPUT_FILE TOP_P TEMPERATURE "$penalty"
}

# pai_generate_args ARGS… assigns and checks the 18 arguments of Pai's
# run_text_generation_megatron_*.sh, in their order: ENV MEGATRON_PATCH_PATH CHECKPOINT_PATH
# MODEL_SIZE TP BS SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TOP_K INPUT_SEQ_LEN OUTPUT_SEQ_LEN
# INPUT_FILE OUTPUT_FILE TOP_P TEMPERATURE REPETITION_PENALTY (MODEL_SIZE through
# ${PAI_SHAPE:-pai_model_shape}); then sets launcher_options (one process per TP rank on one
# node, whatever ENV says) and Pai's load_options, input_options and pr_options; and
# pai_generate_options, the rapidformer_options that Pai's Llama-2 script and the scripts
# copied from it (Qwen1.5's, which runs Llama-2's entry point) share, in its order:
# --micro-batch-size … --repetition-penalty; a script adds its model's last flags.
# pai_generate_head_options is its start, --micro-batch-size … --use-distributed-optimizer,
# which Pai's Baichuan 2 and Qwen (1.0) scripts share too.
pai_generate_args() {
	ENV=$1 MEGATRON_PATCH_PATH=$2 CHECKPOINT_PATH=$3 MODEL_SIZE=$4 TP=$5 BS=$6 SEQ_LEN=$7 PAD_LEN=$8 EXTRA_VOCAB_SIZE=$9
	PR=${10} TOP_K=${11} INPUT_SEQ_LEN=${12} OUTPUT_SEQ_LEN=${13} INPUT_FILE=${14} OUTPUT_FILE=${15} TOP_P=${16}
	TEMPERATURE=${17} REPETITION_PENALTY=${18}
	pai_enum ENV 1 "$ENV" dsw dlc
	"${PAI_SHAPE:-pai_model_shape}" "$MODEL_SIZE" 4
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

	# Pai hard-codes GPUS_PER_NODE (1 for Llama-2, 4 for Qwen1.5), which only works when it
	# equals TP: one process per TP rank here.
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

	pai_generate_head_options=(
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
	)
	pai_generate_options=(
		"${pai_generate_head_options[@]}"
		--swiglu
		--use-llama2-rotary-position-embeddings
		--position-embedding-type rope
		--untie-embeddings-and-output-weights
		--patch-tokenizer-type LLamaTokenizer
		--normalization RMSNorm
		--repetition-penalty "${REPETITION_PENALTY}"
	)
}

# pai_generate_launch runs golaunch generate with the array rapidformer_options (the
# script's fixed options) and the others in Pai's order (rapidformer, load, input, pr, gqa),
# or prints it with DRY_RUN=1. A real run creates OUTPUT_FILE's folder (checked creatable).
pai_generate_launch() {
	command_args=(generate "${rapidformer_options[@]}" "${load_options[@]}" "${input_options[@]}" "${pr_options[@]}" "${gqa_options[@]}")
	if [ "${DRY_RUN:-0}" != 0 ]; then
		pai_quote golaunch "${launcher_options[@]}" "${command_args[@]}"
		exit 0
	fi
	local bin
	bin=$(pai_tool golaunch GOLAUNCH ./cmd/golaunch path)
	if [ "$INPUT_FILE" != none ]; then mkdir -p "$(dirname "$OUTPUT_FILE")"; fi
	export CUDA_DEVICE_MAX_CONNECTIONS=1
	pai_quote "$bin" "${launcher_options[@]}" "${command_args[@]}"
	"$bin" "${launcher_options[@]}" "${command_args[@]}"
}

# pai_hf2megatron ARGS… is Pai's legacy-model convertors (toolkits/model_checkpoints_convertor/
# {llama,mistral,qwen}/hf2megatron_convertor.sh), eight arguments: MEGATRON_PATH
# SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP MN EXTRA_VOCAB_SIZE mg2hf. It runs tools/convert
# with the flags Pai passes to hf2megatron*.py, in Pai's order, as scripts/model_convertor.sh
# does for Llama (--make_vocab_size_divisible_by 1: Pai keeps padded_vocab_size =
# orig_vocab_size), and --megatron-format legacy: the nested language_model.encoder dicts
# Pai's hf2megatron*.py write for its legacy-model (run_*_megatron_*) scripts
# (MEGATRON_FORMAT=mcore writes Megatron-Core keys instead). tools/convert reads the
# architecture from config.json (or the checkpoint's args); MN is checked against it.
#
# A script sets, before calling:
#   PAI_MODEL    the model in the usage's summary (Mistral, Qwen1.5)
#   PAI_NAMES    the usage text of MN
#   PAI_EXAMPLE  the usage's example arguments
# and defines pai_hf2megatron_model MN POS, which checks MN (refusing what tools/convert
# cannot do, with a message), sets the shape variables through the model's pai_*_shape (or
# leaves them empty for a name without a size: config.json's are taken) and DTYPE, the
# --target_params_dtype Pai passes for it.
pai_hf2megatron() {
	PAI_SCRIPT=$(basename "$0")
	PAI_ENV_HELP=$PAI_CONVERT_ENV_HELP pai_set_usage "Convert a ${PAI_MODEL} checkpoint between Hugging Face and Megatron (legacy model) with tools/convert" \
		"${PAI_EXAMPLE}" \
		"MEGATRON_PATH=accepted and ignored (passed on as --megatron-path; gomegatron needs no Megatron checkout)" \
		"SOURCE_CKPT_PATH=Hugging Face folder (mg2hf false), or the Megatron checkpoint or its release/ folder (mg2hf true)" \
		"TARGET_CKPT_PATH=output folder (must be empty unless FORCE=1)" \
		"TP=target tensor-parallel size (mg2hf false)" \
		"PP=target pipeline-parallel size (mg2hf false)" \
		"MN=${PAI_NAMES}" \
		"EXTRA_VOCAB_SIZE=rows appended to the vocabulary (Pai: 0)" \
		"mg2hf=false: Hugging Face → Megatron; true: Megatron → Hugging Face (config.json and tokenizer from beside the checkpoint)"
	pai_nargs 8 $#
	MEGATRON_PATH=$1 SOURCE_CKPT_PATH=$2 TARGET_CKPT_PATH=$3 TP=$4 PP=$5 MN=$6 EXTRA_VOCAB_SIZE=$7 mg2hf=$8

	# Every argument is checked before anything is written.
	PAI_SIZE_NAME=MN MODEL_SIZE=$MN
	pai_hf2megatron_model "$MN" 6
	pai_int_pos TP 4 "$TP"
	pai_int_pos PP 5 "$PP"
	pai_int_nonneg EXTRA_VOCAB_SIZE 7 "$EXTRA_VOCAB_SIZE"
	pai_enum mg2hf 8 "$mg2hf" true false
	local format=${MEGATRON_FORMAT:-legacy}
	[ "$format" = legacy ] || [ "$format" = mcore ] || pai_die "MEGATRON_FORMAT='${format}' (environment) is not one of: legacy mcore"
	if [ "$mg2hf" = false ]; then
		# A name without a size (Pai's "qwen1.5") leaves the shape empty: config.json's.
		if [ -z "$NUM_LAYERS" ] && [ -f "$SOURCE_CKPT_PATH/config.json" ]; then pai_config_shape "$SOURCE_CKPT_PATH"; fi
		pai_check_checkpoint SOURCE_CKPT_PATH 2 "$SOURCE_CKPT_PATH" 6 ""
		if [ -n "$NUM_LAYERS" ]; then # TP × PP ranks, each holding whole heads, query groups and layers
			NNODES=1 GPUS_PER_NODE=$((TP * PP))
			pai_check_parallel 4 5
		fi
	else
		[ -e "$SOURCE_CKPT_PATH" ] || pai_die "SOURCE_CKPT_PATH (arg 2): ${SOURCE_CKPT_PATH} not found"
	fi
	pai_check_writable TARGET_CKPT_PATH 3 "$TARGET_CKPT_PATH"

	args=(--load_path "$SOURCE_CKPT_PATH"
		--save_path "$TARGET_CKPT_PATH"
		--target_params_dtype "${TARGET_PARAMS_DTYPE:-$DTYPE}"
		--megatron-path "$MEGATRON_PATH"
		--target_tensor_model_parallel_size "$TP"
		--target_pipeline_model_parallel_size "$PP"
		--model_name "$MN"
		--extra_num_vocabs "$EXTRA_VOCAB_SIZE"
		--make_vocab_size_divisible_by 1
		--megatron-format "$format")
	pai_convert_launch ""
}

# pai_config_shape DIR sets the shape variables from DIR/config.json (empty where it has no
# such key; NUM_QUERY_GROUPS 0 for multi-head attention).
pai_config_shape() {
	local c=$1/config.json
	NUM_LAYERS=$(pai_json_int "$c" num_hidden_layers) HIDDEN_SIZE=$(pai_json_int "$c" hidden_size)
	NUM_ATTN_HEADS=$(pai_json_int "$c" num_attention_heads) INTERMEDIATE_SIZE=$(pai_json_int "$c" intermediate_size)
	NUM_QUERY_GROUPS=$(pai_json_int "$c" num_key_value_heads)
	[ "${NUM_QUERY_GROUPS:-0}" != "$NUM_ATTN_HEADS" ] || NUM_QUERY_GROUPS=0
}

# pai_preprocess_run ARGS… runs tools/preprocess with ARGS, or prints the command and stops
# with DRY_RUN=1 (PREPROCESS names the binary); a real run first creates the folder
# pai_out_dir names, when set.
pai_preprocess_run() {
	if [ "${DRY_RUN:-0}" != 0 ]; then
		pai_quote preprocess "$@"
		exit 0
	fi
	local bin
	bin=$(pai_tool preprocess PREPROCESS ./tools/preprocess)
	[ -z "${pai_out_dir:-}" ] || mkdir -p "$pai_out_dir"
	pai_quote "$bin" "$@"
	"$bin" "$@"
}

# pai_elapsed prints Pai's closing line: the minutes and seconds since START_TIME.
pai_elapsed() {
	local t=$((SECONDS - START_TIME))
	echo "$((t / 60)) min $((t % 60)) sec"
}

# pai_wudao_clean_args POS RAW_DIR MERGED sets wudao_clean_args, tools/preprocess's flags for
# Pai's WuDao cleaning (preprocess_wudao2.py -k text, clean_raw_text.py): every raw
# WuDaoCorpora 2.0 file of RAW_DIR (JSON arrays of {…, content}) cleaned as they clean it
# (URLs removed, runs of spaces folded, characters outside their whitelist removed), one
# jsonl line per record with the text under "text", merged into the file MERGED (what their
# `find … -name "*.json" -exec cat {} +` makes; the files in name order), 32 workers (their
# -p 32). RAW_DIR (argument POS) must be a folder.
pai_wudao_clean_args() {
	[ -d "$2" ] || pai_die "data_dir (arg $1): $2 is not a directory (a folder of raw WuDaoCorpora 2.0 *.json files)"
	wudao_clean_args=(--wudao --input "$2" --json-keys text --workers 32 --wudao-jsonl "$3")
}

# pai_split_zst MERGED LINES PREFIX ZST_DIR [keep] splits MERGED into pieces of LINES lines,
# PREFIX00.jsonl, PREFIX01.jsonl, … (split --numeric-suffixes, as Pai's scripts), and
# compresses every piece into ZST_DIR/NN.jsonl.zst with zstd, all at once as Pai does but
# waiting for them (Pai removes the pieces while zstd may still be reading them). The pieces
# are removed afterwards unless "keep" is given.
pai_split_zst() {
	local merged=$1 lines=$2 prefix=$3 zst=$4 keep=${5:-} p failed=0
	local -a pids=()
	mkdir -p "$zst"
	split -l "$lines" --numeric-suffixes --additional-suffix=.jsonl "$merged" "$prefix"
	for p in "$prefix"*.jsonl; do
		zstd -q -f -z "$p" -o "$zst/$(basename "$p").zst" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	((failed == 0)) || {
		printf '%s: zstd failed\n' "$PAI_SCRIPT" >&2
		exit 1
	}
	[ "$keep" = keep ] || rm -f "$prefix"*.jsonl
}

# pai_need_tools TOOL…: the programs a real run needs must be on PATH (checked before anything runs).
pai_need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || pai_die "$t is not installed (needed to write Pai's .jsonl.zst pieces; e.g. apt-get install zstd)"
	done
}
