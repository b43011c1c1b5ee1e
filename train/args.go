package train

import (
	"fmt"
	"os"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// Args are `golaunch pretrain`'s flags: Megatron-LM's names and defaults, plus the
// Pai-Megatron-Patch extras its scripts pass. Flags gomegatron does not know are rejected by
// the parser; known flags whose feature is not implemented yet are rejected by Validate with
// a message naming them.
type Args struct {
	layers.Config
	optim.AdamConfig

	// Parallelism.
	TensorModelParallelSize   int  `name:"tensor-model-parallel-size" default:"1" help:"Tensor-parallel size."`
	PipelineModelParallelSize int  `name:"pipeline-model-parallel-size" default:"1" help:"Pipeline-parallel size."`
	SequenceParallel          bool `name:"sequence-parallel" help:"Sequence parallelism (with TP > 1)."`
	UseDistributedOptimizer   bool `name:"use-distributed-optimizer" help:"Shard optimizer state over data parallelism (ZeRO-1)."`
	OverlapGradReduce         bool `name:"overlap-grad-reduce" help:"Reduce gradient buckets over data parallelism while backward runs."`
	DDPBucketSize             int  `name:"ddp-bucket-size" help:"Bucket size in elements for --overlap-grad-reduce (default max(40M, 1M·DP))."`
	LayersPerVirtualStage     int  `name:"num-layers-per-virtual-pipeline-stage" help:"Layers per virtual pipeline stage: the interleaved 1F1B schedule."`
	// Megatron's flags for what is not implemented yet, so that a run asking for it stops
	// with a message instead of an unknown-flag error.
	ContextParallelSize     int  `name:"context-parallel-size" default:"1" help:"Context parallelism: each rank runs 2 of 2·CP chunks of every sequence; keys and values are all-gathered for attention."`
	ExpertModelParallelSize int  `name:"expert-model-parallel-size" default:"1" help:"Expert parallelism: only 1 with --num-experts (every rank holds every expert); on a dense model it must divide the data-parallel size, as Megatron checks, and changes nothing."`
	MoETokenDropping        bool `name:"moe-token-dropping" help:"Token dropping: not supported (nor by Megatron at this version)."`
	DisableBiasLinearFC     bool `name:"disable-bias-linear-fc" help:"Pai: no MLP biases (with --disable-bias-attn-fc alone: Pai's Qwen model, whose QKV keeps its bias)."`
	DisableBiasAttnFC       bool `name:"disable-bias-attn-fc" help:"Pai: no attention output bias (with --disable-bias-linear-fc alone: Pai's Qwen model, whose QKV keeps its bias)."`
	NoPositionEmbedding     bool `name:"no-position-embedding" help:"No learned position embedding (with RoPE there is none anyway)."`

	// Batches and length of training.
	MicroBatchSize  int  `name:"micro-batch-size" default:"1" help:"Sequences per microbatch."`
	GlobalBatchSize int  `name:"global-batch-size" help:"Sequences per iteration (default micro-batch-size × data-parallel size)."`
	TrainIters      int  `name:"train-iters" help:"Iterations to train."`
	TrainSamples    int  `name:"train-samples" help:"Samples to train (instead of --train-iters)."`
	SkipTrain       bool `name:"skip-train" help:"Evaluate the loaded checkpoint on the validation and test sets without training."`
	// Checkpoint loading (Megatron's).
	ExitOnMissingCheckpoint bool `name:"exit-on-missing-checkpoint" help:"Stop with an error when --load holds no checkpoint (default: start from random, with a warning)."`
	CkptStep                int  `name:"ckpt-step" help:"Load this iteration's checkpoint instead of the tracker file's."`
	OverrideOptParamSched   bool `name:"override-opt_param-scheduler" help:"On --load keep the flags' learning-rate and weight-decay schedule where the checkpoint's differs (else they must agree)."`
	UseCheckpointOptSched   bool `name:"use-checkpoint-opt_param-scheduler" help:"Take the learning rate, minimum, warm-up, decay length and style from the --load checkpoint's scheduler instead of the flags."`

	LogParamsNorm     bool     `name:"log-params-norm" help:"Log the L2 norm of the model parameters (params norm) each logged iteration."`
	RampupBatchSize   []string `name:"rampup-batch-size" sep:"none" help:"Batch-size ramp-up: <start batch size> <increment> <ramp-up samples> (with --train-samples)."`
	ramp              *rampup  // parsed --rampup-batch-size
	LogNumZerosInGrad bool     `name:"log-num-zeros-in-grad" help:"Log the number of zero gradient elements (num zeros) each logged iteration."`
	UseCheckpointArgs bool     `name:"use-checkpoint-args" help:"Take the model's shape and TP/PP from the --load checkpoint's args (Megatron's load_args_from_checkpoint)."`

	// Megatron flags that change nothing here (what they tune does not exist or is fixed).
	TimingLogLevel         int  `name:"timing-log-level" help:"Accepted (Megatron's timers are not printed)."`
	EmptyUnusedMemoryLevel int  `name:"empty-unused-memory-level" help:"Accepted (the device arena is sized at start-up)."`
	NoAsyncTPAllreduce     bool `name:"no-async-tensor-model-parallel-allreduce" help:"Accepted (no effect on results)."`
	UseCPUInitialization   bool `name:"use-cpu-initialization" help:"Accepted: weights are always initialised on the host, the same on every device."`
	DeterministicMode      bool `name:"deterministic-mode" help:"Accepted: every kernel here is deterministic."`
	NumDatasetBuilderThr   int  `name:"num-dataset-builder-threads" help:"Accepted."`
	NoMmapBinFiles         bool `name:"no-mmap-bin-files" help:"Accepted (.bin files are memory-mapped)."`
	MmapWarmup             bool `name:"mmap-warmup" help:"Accepted."`
	DelayGradReduce        bool `name:"delay-grad-reduce" help:"Accepted (no effect on results)."`
	AlignGradReduce        bool `name:"align-grad-reduce" help:"Accepted (no effect on results)."`
	// Communication, memory and profiling tuning of Megatron 240126 with no effect on results.
	NoOverlapP2PComm          bool    `name:"no-overlap-p2p-communication" help:"Accepted (pipeline sends and receives are batched; no effect on results)."`
	DelayParamGather          bool    `name:"delay-param-gather" help:"Accepted (no effect on results)."`
	NoDelayGradReduce         bool    `name:"no-delay-grad-reduce" help:"Accepted (no effect on results)."`
	DisableTPCommBulkDgrad    bool    `name:"disable-tp-comm-bulk-dgrad" help:"Accepted (tensor-parallel communication is not overlapped with GEMMs)."`
	DisableTPCommBulkWgrad    bool    `name:"disable-tp-comm-bulk-wgrad" help:"Accepted (tensor-parallel communication is not overlapped with GEMMs)."`
	DisableTPCommSplitAG      bool    `name:"disable-tp-comm-split-ag" help:"Accepted (tensor-parallel communication is not overlapped with GEMMs)."`
	DisableTPCommSplitRS      bool    `name:"disable-tp-comm-split-rs" help:"Accepted (tensor-parallel communication is not overlapped with GEMMs)."`
	TPCommOverlapCfg          string  `name:"tp-comm-overlap-cfg" help:"Accepted (Transformer Engine's userbuffers configuration)."`
	NoPersistLayerNorm        bool    `name:"no-persist-layer-norm" help:"Accepted (the norm kernels are gomegatron's)."`
	NoScatterGatherPipeline   bool    `name:"no-scatter-gather-tensors-in-pipeline" help:"Accepted (pipeline stages send whole activations)."`
	NoCloneScatterOutputInEmb bool    `name:"no-clone-scatter-output-in-embedding" help:"Accepted (no effect on results)."`
	NCCLCommunicatorConfig    string  `name:"nccl-communicator-config-path" help:"Accepted (NCCL communicators take NCCL's defaults)."`
	DistributeSavedActs       bool    `name:"distribute-saved-activations" help:"Accepted with Megatron's conditions (TP > 1, full recompute); checkpointed inputs are not split over TP."`
	FP8Interval               int     `name:"fp8-interval" help:"Accepted (Transformer Engine ignores it)."`
	ManualGCInterval          int     `name:"manual-gc-interval" help:"Accepted (Go's collector follows GOGC)."`
	NoManualGCEval            bool    `name:"no-manual-gc-eval" help:"Accepted (Go's collector follows GOGC)."`
	TimingLogOption           string  `name:"timing-log-option" default:"minmax" enum:"max,minmax,all" help:"Accepted (Megatron's timers are not printed)."`
	NoBarrierWithL1Timing     bool    `name:"no-barrier-with-level-1-timing" help:"Accepted (Megatron's timers are not printed)."`
	Profile                   bool    `name:"profile" help:"Accepted (nsys ranges are not emitted; GOMEGATRON_CUDA_PROFILE profiles the kernels)."`
	ProfileStepStart          int     `name:"profile-step-start" default:"10" help:"Accepted with --profile."`
	ProfileStepEnd            int     `name:"profile-step-end" default:"12" help:"Accepted with --profile."`
	ProfileRanks              []int   `name:"profile-ranks" help:"Accepted with --profile."`
	UseRingExchangeP2P        bool    `name:"use-ring-exchange-p2p" help:"Accepted (no effect on results)."`
	NoInitialization          bool    `name:"no-initialization" help:"Accepted: weights are initialised, then --load overwrites them."`
	InferenceBatchSeqThresh   int     `name:"inference-batch-times-seqlen-threshold" help:"Accepted (training does not use it)."`
	MaxTokensToOOM            int     `name:"max-tokens-to-oom" help:"Accepted (training does not use it)."`
	SGDMomentum               float64 `name:"sgd-momentum" default:"0.9" help:"Accepted (--optimizer sgd is not supported)."`
	LocalRankArg              int     `name:"local_rank" help:"Accepted (torch.distributed.launch passes it; LOCAL_RANK is used)."`
	EncoderNumLayers          int     `name:"encoder-num-layers" help:"Megatron's other spelling of --num-layers (exclusive with it)."`
	EncoderSeqLength          int     `name:"encoder-seq-length" help:"Megatron's other spelling of --seq-length (exclusive with it)."`
	OnnxSafe                  string  `name:"onnx-safe" help:"Accepted (for Torch's ONNX exporter; Megatron's type=bool flag takes a value)."`
	WandbExpName              string  `name:"wandb-exp-name" help:"Accepted (used only with --wandb-project)."`
	WandbSaveDir              string  `name:"wandb-save-dir" help:"Accepted (used only with --wandb-project)."`
	// Megatron 240126's checks on NaN: a NaN loss or gradient norm stops a run without a loss
	// scaler (bf16, fp32), as Megatron's assertions do; with the flag such iterations are
	// skipped instead (Megatron would apply them).
	NoCheckForNaN bool `name:"no-check-for-nan-in-loss-and-grad" help:"Skip (instead of stopping at) an iteration whose gradient norm is NaN under bf16 or fp32."`

	// Later Megatron-Core MoE flags that Megatron-Core MoE scripts pass: accepted where this
	// implementation computes what they ask (every layer an MoE layer, dropless softmax
	// routing, fp32 router), refused otherwise (see moeLaterFlags).
	MoETokenDispatcherType  string  `name:"moe-token-dispatcher-type" default:"allgather" help:"allgather or alltoall: the same dropless routing (the experts' rows are exchanged by all-gather either way); flex is refused."`
	MoERouterDtype          string  `name:"moe-router-dtype" help:"fp32 (the router's logits and scores are fp32 anyway); fp64 is refused."`
	MoEPermuteFusion        bool    `name:"moe-permute-fusion" help:"Accepted (the kernels' fusions are gomegatron's)."`
	MoETokenDropPolicy      string  `name:"moe-token-drop-policy" default:"probs" help:"Accepted: no token is dropped without --moe-expert-capacity-factor, which is refused."`
	MoEExpertCapacityFactor float64 `name:"moe-expert-capacity-factor" help:"Token dropping at a capacity: not supported (routing is dropless)."`
	MoEPadToCapacity        bool    `name:"moe-pad-expert-input-to-capacity" help:"Needs --moe-expert-capacity-factor: not supported."`
	CacheMLALatents         bool    `name:"cache-mla-latents" help:"Cache multi-latent attention's latents in inference (Flash MLA): not supported."`
	MLADownProjFusion       bool    `name:"mla-down-proj-fusion" help:"Fused MLA down projections: not supported (the unfused projections run)."`

	// Megatron 240126's deprecated flags: refused with its messages.
	BatchSize            int     `name:"batch-size" help:"Deprecated: use --micro-batch-size."`
	Warmup               float64 `name:"warmup" help:"Deprecated: use --lr-warmup-fraction."`
	ModelParallelSize    int     `name:"model-parallel-size" help:"Deprecated: use --tensor-model-parallel-size."`
	CheckpointActivation bool    `name:"checkpoint-activations" help:"Deprecated: use --recompute-activations or --recompute-granularity."`

	// Megatron flags for what is not implemented: refused with a message.
	CalculatePerTokenLoss bool     `name:"calculate-per-token-loss" help:"The gradient of Σ loss / Σ tokens over the whole global batch, not the mean of each microbatch's token mean (Megatron-Core's later flag; Pai's SFT scripts pass it)."`
	WandbProject          string   `name:"wandb-project" help:"Weights & Biases logging: not supported (TensorBoard is)."`
	FP16LMCrossEntropy    bool     `name:"fp16-lm-cross-entropy" help:"The cross entropy in 16 bits: not supported (it is computed in fp32)."`
	DataParallelRandInit  bool     `name:"data-parallel-random-init" help:"Different initial weights per data-parallel rank: not supported."`
	StandaloneEmbedding   bool     `name:"standalone-embedding-stage" help:"The input embedding on a pipeline stage of its own: not supported (Megatron-Core 240126 ignores it too; only its legacy model has it)."`
	SplitRank             int      `name:"pipeline-model-parallel-split-rank" help:"Encoder–decoder pipeline split: not supported (GPT models only)."`
	Spec                  []string `name:"spec" sep:"none" help:"A Python module's layer spec: not supported (the layers are built in)."`
	VocabExtraIDs         int      `name:"vocab-extra-ids" help:"T5's span-masking tokens: 0 only (not supported)."`
	LazyMPUInit           string   `name:"lazy-mpu-init" help:"Initialisation for an external DDP manager: not supported."`
	ADLRAutoresume        bool     `name:"adlr-autoresume" help:"NVIDIA's ADLR cluster autoresume: not available (use --exit-signal-handler, --exit-duration-in-mins or --exit-interval)."`
	ADLRAutoresumeIntv    int      `name:"adlr-autoresume-interval" default:"1000" help:"With --adlr-autoresume."`

	// Learning rate.
	LR                   float64  `name:"lr" help:"Peak learning rate."`
	MinLR                float64  `name:"min-lr" default:"0" help:"Final learning rate."`
	DecoupledLR          float64  `name:"decoupled-lr" help:"Learning rate of the word embeddings and the output layer (Megatron-Core's decoupled group), on the same schedule; unset: --lr."`
	DecoupledMinLR       *float64 `name:"decoupled-min-lr" help:"Minimum learning rate of the --decoupled-lr group (default --min-lr)."`
	StartWeightDecay     *float64 `name:"start-weight-decay" help:"Weight decay at the start of a non-constant --weight-decay-incr-style."`
	EndWeightDecay       *float64 `name:"end-weight-decay" help:"Weight decay at the end of a non-constant --weight-decay-incr-style (reached after the run's samples)."`
	WeightDecayIncrStyle string   `name:"weight-decay-incr-style" default:"constant" enum:"constant,linear,cosine" help:"How the weight decay goes from --start-weight-decay to --end-weight-decay: constant (--weight-decay throughout), linear or cosine."`
	LRDecayStyle         string   `name:"lr-decay-style" default:"linear" help:"constant, linear, cosine, inverse-square-root or WSD."`
	LRWarmupIters        int      `name:"lr-warmup-iters" default:"0" help:"Warm-up iterations."`
	LRWarmupFraction     float64  `name:"lr-warmup-fraction" help:"Warm-up as a fraction of the decay length."`
	LRWarmupSamples      int      `name:"lr-warmup-samples" default:"0" help:"Warm-up samples (sample-based training)."`
	LRWarmupInit         float64  `name:"lr-warmup-init" default:"0" help:"Learning rate at the start of warm-up."`
	LRDecayIters         int      `name:"lr-decay-iters" help:"Decay length in iterations (default --train-iters)."`
	LRDecaySamples       int      `name:"lr-decay-samples" help:"Decay length in samples (sample-based training)."`
	LRWSDDecayStyle      string   `name:"lr-wsd-decay-style" default:"exponential" help:"WSD decay phase: linear, cosine, exponential, minus_sqrt."`
	LRWSDDecayIters      int      `name:"lr-wsd-decay-iters" help:"WSD decay-phase iterations."`
	Optimizer            string   `name:"optimizer" default:"adam" help:"Only adam (AdamW)."`

	// Data.
	DataPath          []string `name:"data-path" help:"Data prefixes, optionally weighted: w1 p1 w2 p2 …" sep:"none"`
	Split             string   `name:"split" default:"969, 30, 1" help:"Train, valid, test proportions."`
	TrainDataPath     []string `name:"train-data-path" aliases:"train-data" help:"Training data prefix(es), or Pai's raw JSON file (--train-data is Pai's epoch fine-tuning spelling)." sep:"none"`
	ValidDataPath     []string `name:"valid-data-path" aliases:"valid-data" help:"Validation data prefix(es), or Pai's raw JSON file (--valid-data is Pai's spelling)." sep:"none"`
	TestDataPath      []string `name:"test-data-path" help:"Test data prefix(es)." sep:"none"`
	DataCachePath     string   `name:"data-cache-path" help:"Where the GPT index caches go."`
	MockData          bool     `name:"mock-data" help:"Random tokens instead of a dataset."`
	Seed              int      `name:"seed" default:"1234" help:"Random seed (data order, initialisation, dropout)."`
	EODMaskLoss       bool     `name:"eod-mask-loss" help:"No loss on end-of-document tokens."`
	ResetPositionIDs  bool     `name:"reset-position-ids" help:"Restart positions after each EOD."`
	ResetAttentionMsk bool     `name:"reset-attention-mask" help:"Block attention across EOD: packed documents attend only within themselves."`
	NumWorkers        int      `name:"num-workers" default:"2" help:"Accepted; data loading runs in the training process."`
	DataloaderType    string   `name:"dataloader-type" default:"single" enum:"single,cyclic" help:"Sample order: single (in order, Megatron's MegatronPretrainingSampler) or cyclic (reshuffled every epoch with torch.randperm, MegatronPretrainingRandomSampler)."`
	NoDataSharding    bool     `name:"no-data-sharding" help:"cyclic: one shuffle of all samples dealt to the data-parallel ranks in turn (default: each rank shuffles its own contiguous share)."`

	// Tokenizer.
	TokenizerType  string `name:"tokenizer-type" help:"Megatron tokenizer class (GPT2BPETokenizer, Llama2Tokenizer, HuggingFaceTokenizer, NullTokenizer, …)."`
	TokenizerModel string `name:"tokenizer-model" help:"Tokenizer model file or directory."`
	VocabFile      string `name:"vocab-file" help:"Vocabulary file (GPT2BPETokenizer)."`
	MergeFile      string `name:"merge-file" help:"BPE merges file (GPT2BPETokenizer)."`

	// Logging and evaluation.
	LogInterval                  int    `name:"log-interval" default:"100" help:"Iterations between log lines."`
	EvalInterval                 int    `name:"eval-interval" default:"1000" help:"Iterations between validation runs."`
	EvalIters                    int    `name:"eval-iters" default:"100" help:"Iterations per validation run."`
	TensorboardDir               string `name:"tensorboard-dir" help:"Write TensorBoard event files here."`
	TensorboardLogInterval       int    `name:"tensorboard-log-interval" default:"1" help:"Iterations between TensorBoard scalars."`
	TensorboardQueueSize         int    `name:"tensorboard-queue-size" default:"1000" help:"Accepted for compatibility."`
	LogThroughput                bool   `name:"log-throughput" help:"Print TFLOP/s per GPU in the log line."`
	LogProgress                  bool   `name:"log-progress" help:"Append job starts and, after each checkpoint, throughput and floating-point operations so far to progress.txt in --save."`
	LogTimersToTensorboard       bool   `name:"log-timers-to-tensorboard" help:"Write the iteration time (and with --log-throughput the TFLOP/s) to TensorBoard at each log line."`
	LogBatchSizeToTensorboard    bool   `name:"log-batch-size-to-tensorboard" help:"Write the batch size to TensorBoard."`
	LogWorldSizeToTB             bool   `name:"log-world-size-to-tensorboard" help:"Write the world size to TensorBoard."`
	NoLogLearningRateToTB        bool   `name:"no-log-learnig-rate-to-tensorboard" help:"Do not write the learning rate to TensorBoard (Megatron's spelling)."`
	NoLogLossScaleToTB           bool   `name:"no-log-loss-scale-to-tensorboard" help:"Do not write the loss scale to TensorBoard."`
	LogMemoryToTensorboard       bool   `name:"log-memory-to-tensorboard" help:"Write the GPU's memory (mem-reserved-bytes, mem-allocated-bytes, mem-max-allocated-bytes, mem-allocated-count) to TensorBoard; nothing on the CPU."`
	LogValidationPPLToTensorbord bool   `name:"log-validation-ppl-to-tensorboard" help:"Write validation perplexity to TensorBoard."`
	ExitInterval                 int    `name:"exit-interval" help:"Exit after this many iterations."`
	ExitDurationInMins           int    `name:"exit-duration-in-mins" help:"Exit after this many minutes."`
	ExitSignalHandler            bool   `name:"exit-signal-handler" help:"Save a checkpoint and exit on SIGTERM."`

	// Checkpoints.
	Save         string `name:"save" help:"Checkpoint directory to save to."`
	Load         string `name:"load" help:"Checkpoint directory to load from."`
	SaveInterval int    `name:"save-interval" help:"Iterations between checkpoints."`
	NoLoadOptim  bool   `name:"no-load-optim" help:"Do not load optimizer state."`
	NoLoadRNG    bool   `name:"no-load-rng" help:"Do not load RNG state."`
	NoSaveOptim  bool   `name:"no-save-optim" help:"Do not save optimizer state."`
	NoSaveRNG    bool   `name:"no-save-rng" help:"Do not save RNG state."`
	Finetune     bool   `name:"finetune" help:"Load weights only and start from iteration 0."`
	CkptFormat   string `name:"ckpt-format" default:"torch" help:"Format --save writes: torch (per-rank model_optim_rng.pt) or torch_dist (Megatron-Core's sharded format, optimizer state included). --load reads either."`

	// Precision.
	BF16                 bool    `name:"bf16" help:"bfloat16 weights with fp32 main parameters."`
	FP16                 bool    `name:"fp16" help:"float16 weights with fp32 main parameters and dynamic loss scaling."`
	FP8Format            string  `name:"fp8-format" help:"FP8 for the transformer layers' GEMMs: e4m3 or hybrid (E5M2 gradients); emulated exactly on the CPU."`
	FP8Hybrid            bool    `name:"fp8-hybrid" help:"Pai-Megatron-Patch's spelling of --fp8-format hybrid."`
	FP8Margin            int     `name:"fp8-margin" default:"0" help:"FP8 scaling margin."`
	FP8AmaxHistoryLen    int     `name:"fp8-amax-history-len" default:"1" help:"FP8 amax history length."`
	FP8AmaxComputeAlgo   string  `name:"fp8-amax-compute-algo" default:"most_recent" help:"max or most_recent."`
	NoFP8WGrad           bool    `name:"no-fp8-wgrad" help:"Keep the weight-gradient GEMMs in high precision under FP8 (default: FP8 output gradient and input, as Megatron's fp8_wgrad)."`
	LossScale            float64 `name:"loss-scale" help:"Constant loss scale (fp16); default dynamic."`
	InitialLossScale     float64 `name:"initial-loss-scale" default:"4294967296" help:"Initial dynamic loss scale."`
	MinLossScale         float64 `name:"min-loss-scale" default:"1.0" help:"Minimum dynamic loss scale."`
	LossScaleWindow      int     `name:"loss-scale-window" default:"1000" help:"Clean iterations before the loss scale grows."`
	Hysteresis           int     `name:"hysteresis" default:"2" help:"Overflows tolerated before the loss scale backs off."`
	TransformerImpl      string  `name:"transformer-impl" default:"local" help:"local or transformer_engine (the same kernels here)."`
	TransformerType      string  `name:"transformer-type" default:"megatron" enum:"megatron,huggingface" help:"Pai-Megatron-Patch: huggingface evaluates a Hugging Face --load folder's own model (evaluate-raw)."`
	UseFlashAttn         bool    `name:"use-flash-attn" help:"Accepted: attention is always flash-style (online softmax); bf16/fp16 runs on a GPU use the tensor-core flash kernel."`
	RecomputeActivations bool    `name:"recompute-activations" help:"Same as --recompute-granularity selective."`
	RecomputeGranularity string  `name:"recompute-granularity" help:"selective (core attention; what the flash-style kernel always does) or full (whole layers)."`
	RecomputeMethod      string  `name:"recompute-method" help:"uniform (chunks of --recompute-num-layers) or block (the first --recompute-num-layers layers of each stage)."`
	RecomputeNumLayers   int     `name:"recompute-num-layers" default:"1" help:"Layers per recompute chunk (uniform) or recomputed layers per stage (block)."`

	// Accepted from Megatron command lines; each help says what gomegatron does instead.
	UseMcoreModels                 bool `name:"use-mcore-models" help:"Accepted: the model is always mcore-shaped (mcore key names)."`
	UseRotaryPositionEmbeddings    bool `name:"use-rotary-position-embeddings" help:"Same as --position-embedding-type rope."`
	AttentionSoftmaxInFP32         bool `name:"attention-softmax-in-fp32" help:"Accepted: the softmax is always computed in fp32."`
	AccumulateAllreduceGradsInFP32 bool `name:"accumulate-allreduce-grads-in-fp32" help:"Accepted: gradients are always accumulated and reduced in fp32."`
	NoMaskedSoftmaxFusion          bool `name:"no-masked-softmax-fusion" help:"Accepted (the kernels' fusions are gomegatron's)."`
	NoBiasSwigluFusion             bool `name:"no-bias-swiglu-fusion" help:"Accepted (the kernels' fusions are gomegatron's)."`
	NoBiasDropoutFusion            bool `name:"no-bias-dropout-fusion" help:"Accepted (the kernels' fusions are gomegatron's)."`
	NoRopeFusion                   bool `name:"no-rope-fusion" help:"Accepted (the kernels' fusions are gomegatron's)."`
	NoGradientAccumulationFusion   bool `name:"no-gradient-accumulation-fusion" help:"Accepted: weight gradients always accumulate into the fp32 buffer."`
	OverlapParamGather             bool `name:"overlap-param-gather" help:"Accepted: the distributed optimizer gathers parameters at the end of each step."`
	TPCommOverlap                  bool `name:"tp-comm-overlap" help:"Accepted: tensor-parallel communication is not overlapped with GEMMs yet."`
	MoESharedExpertOverlap         bool `name:"moe-shared-expert-overlap" help:"Accepted: the shared experts run after the routed ones, not overlapped with the token dispatch."`
	ManualGC                       bool `name:"manual-gc" help:"Accepted (Go's collector follows GOGC)."`
	DistributedTimeoutMinutes      int  `name:"distributed-timeout-minutes" help:"Timeout of collectives in minutes (default: GOMEGATRON_COMM_TIMEOUT, else comm/tcp's)."`
	ApplyQueryKeyLayerScaling      bool `name:"apply-query-key-layer-scaling" help:"Accepted: attention scores are formed in fp32, where Megatron's 1/layer-number scaling (undone inside its fp16 softmax) changes nothing."`
	NoQueryKeyLayerScaling         bool `name:"no-query-key-layer-scaling" help:"Accepted: Megatron 23.x's spelling of the default (Pai's Baichuan scripts pass it); see --apply-query-key-layer-scaling."`
	FP32ResidualConnection         bool `name:"fp32-residual-connection" help:"Keep the residual stream in fp32: on a GPU every activation stays F32 (Megatron keeps only the residual); the CPU's are F32 anyway."`

	// Pai-Megatron-Patch extras.
	MaxPaddingLength    int    `name:"max-padding-length" help:"Pai: sample length of raw/idxmap datasets."`
	ExtraVocabSize      int    `name:"extra-vocab-size" default:"0" help:"Pai: rows appended to the vocabulary."`
	PatchTokenizerType  string `name:"patch-tokenizer-type" help:"Pai: tokenizer (LLamaTokenizer = the Hugging Face tokenizer in --load or --tokenizer-model)."`
	Dataset             string `name:"dataset" help:"Pai: dataset kind (LLama-Pretrain-Idxmap, LLama-Pretrain-Raw, …)."`
	UseLlama2RotaryPosE bool   `name:"use-llama2-rotary-position-embeddings" help:"Pai: rotary embeddings (same as --position-embedding-type rope)."`
	UseAlibiMask        bool   `name:"use-alibi-mask" help:"Pai: ALiBi (same as --position-embedding-type alibi)."`

	// Pai's legacy Mistral scripts: its Mistral model's rotary embeddings (Hugging Face's
	// rotate-half layout, base 10000; the scripts pass no --rotary-base), which is RoPE here.
	UseMistralRotaryPosE bool `name:"use-mistral-rotary-position-embeddings" help:"Pai (Mistral): rotary embeddings (same as --position-embedding-type rope)."`
	// Pai's llama2 model divides RoPE positions by this factor (its Qwen1.5 legacy scripts
	// pass 1): Megatron's --rotary-seq-len-interpolation-factor.
	RotaryScaleFactor int `name:"rotary-scale-factor" default:"1" help:"Pai: RoPE positions divided by it (the same as --rotary-seq-len-interpolation-factor)."`

	// Device is gomegatron's: the command opens the backend (kernels/device) into Backend.
	Device  string          `name:"device" default:"auto" enum:"auto,cpu,cuda" help:"Compute device: cuda (GPU LOCAL_RANK), cpu, or auto (cuda when a GPU and its libraries are found)."`
	Backend kernels.Backend `kong:"-"` // nil: kernels/cpu
	tokPad  int64           // the tokenizer's pad id (−1: none), for Pai's loss masks
	epochs  bool            // Pai's epoch loop (finetune_utils), which has no final evaluation
	// evaluateRaw: Pai's evaluation entry points (EvaluateRaw) instead of training; hfModel:
	// the model and its weights are --load's Hugging Face folder's.
	evaluateRaw, hfModel bool
	// DistributedBackend is Megatron's: the collectives of GPU tensors.
	DistributedBackend string `name:"distributed-backend" default:"nccl" enum:"nccl,gloo" help:"Collectives for GPU tensors: nccl, or gloo (host collectives over TCP, staged through host memory)."`
}

// expertParallel is the expert-parallel size the groups are built with: 1 on a dense
// model, where Megatron accepts and ignores --expert-model-parallel-size.
func (a *Args) expertParallel() int {
	if a.NumExperts == 0 {
		return 1
	}
	return a.ExpertModelParallelSize
}

// Validate applies Megatron's derived defaults and rejects what is inconsistent or not yet
// implemented, naming the flag. world is the number of processes.
func (a *Args) Validate(world int) error {
	// Megatron's encoder spellings (validate_args asserts that only one of each pair is given).
	for _, f := range []struct {
		v, enc *int
		flag   string
	}{{&a.NumLayers, &a.EncoderNumLayers, "num-layers"}, {&a.SeqLength, &a.EncoderSeqLength, "seq-length"}} {
		if *f.enc != 0 {
			if *f.v != 0 && *f.v != *f.enc {
				return fmt.Errorf("--%s %d and --encoder-%s %d: give one of them (Megatron asserts as much)", f.flag, *f.v, f.flag, *f.enc)
			}
			*f.v = *f.enc
		}
	}
	if a.FP8Hybrid {
		if a.FP8Format != "" && a.FP8Format != "hybrid" {
			return fmt.Errorf("--fp8-hybrid contradicts --fp8-format %s", a.FP8Format)
		}
		a.FP8Format = "hybrid"
	}
	if a.FP16 && a.BF16 {
		return fmt.Errorf("--fp16 and --bf16 are exclusive")
	}
	// Megatron's argument rule: the start and end only with a changing weight decay.
	if a.WeightDecayIncrStyle == "constant" && (a.StartWeightDecay != nil || a.EndWeightDecay != nil) {
		return fmt.Errorf("--start-weight-decay and --end-weight-decay need --weight-decay-incr-style linear or cosine (constant uses --weight-decay)")
	}
	if a.WeightDecayIncrStyle != "constant" && (a.StartWeightDecay == nil || a.EndWeightDecay == nil) {
		return fmt.Errorf("--weight-decay-incr-style %s needs --start-weight-decay and --end-weight-decay", a.WeightDecayIncrStyle)
	}
	for _, d := range []struct {
		set bool
		msg string
	}{{a.BatchSize != 0, "--batch-size argument is no longer valid, use --micro-batch-size instead"},
		{a.Warmup != 0, "--warmup argument is no longer valid, use --lr-warmup-fraction instead"},
		{a.ModelParallelSize != 0, "--model-parallel-size is no longer valid, use --tensor-model-parallel-size instead"},
		{a.CheckpointActivation, "--checkpoint-activations is no longer valid, use --recompute-activations, or, for more control, --recompute-granularity and --recompute-method."}} {
		if d.set {
			return fmt.Errorf("%s", d.msg)
		}
	}
	if a.DistributeSavedActs && (a.TensorModelParallelSize < 2 || a.RecomputeGranularity != "full" || a.RecomputeMethod == "") {
		return fmt.Errorf("--distribute-saved-activations needs --tensor-model-parallel-size > 1 and --recompute-granularity full with a --recompute-method (as Megatron asserts)")
	}
	if a.TPCommOverlap && !a.SequenceParallel {
		return fmt.Errorf("--tp-comm-overlap: Tensor parallel communication/GEMM overlap can happen only when sequence parallelism is enabled (--sequence-parallel)")
	}
	if a.OverrideOptParamSched && a.UseCheckpointOptSched {
		return fmt.Errorf("both override and use-checkpoint are set: --override-opt_param-scheduler and --use-checkpoint-opt_param-scheduler are exclusive")
	}
	if a.Optimizer != "adam" {
		return fmt.Errorf("--optimizer %q: only adam is supported", a.Optimizer)
	}
	switch a.Device {
	case "", "auto", "cpu", "cuda":
	default:
		return fmt.Errorf("--device %q: want cpu, cuda or auto", a.Device)
	}
	switch a.CkptFormat {
	case "torch":
	case "torch_dist":
		if a.Save != "" && !a.NoSaveOptim && a.UseDistributedOptimizer && a.MoEGroupedGemm && a.NumExperts > 0 {
			return fmt.Errorf("--ckpt-format torch_dist: the distributed optimizer's state of GroupedMLP experts (--moe-grouped-gemm) is not written in torch_dist; pass --no-save-optim, or --ckpt-format torch")
		}
		if a.Save != "" && a.MultiLatentAttention {
			return fmt.Errorf("--ckpt-format torch_dist: multi-latent attention's torch_dist names are unchecked (Megatron builds MLA only with Transformer Engine); save with --ckpt-format torch")
		}
	default:
		return fmt.Errorf("--ckpt-format %q: want torch or torch_dist (loading reads either)", a.CkptFormat)
	}
	if a.UseLlama2RotaryPosE || a.UseRotaryPositionEmbeddings || a.UseMistralRotaryPosE {
		a.PositionEmbeddingType = "rope"
	}
	if f := a.RotaryScaleFactor; f < 1 {
		return fmt.Errorf("--rotary-scale-factor %d must be ≥ 1", f)
	} else if f > 1 {
		if i := a.RotarySeqLenInterpolationFactor; i != 0 && i != 1 && i != float64(f) {
			return fmt.Errorf("--rotary-scale-factor %d contradicts --rotary-seq-len-interpolation-factor %v", f, i)
		}
		a.RotarySeqLenInterpolationFactor = float64(f)
	}
	if a.UseAlibiMask {
		a.PositionEmbeddingType = "alibi"
	}
	if err := a.moeLaterFlags(); err != nil {
		return err
	}
	for _, f := range []struct {
		set  bool
		flag string
	}{{a.WandbProject != "", "--wandb-project"}, {a.FP16LMCrossEntropy, "--fp16-lm-cross-entropy"},
		{a.DataParallelRandInit, "--data-parallel-random-init"}, {a.StandaloneEmbedding, "--standalone-embedding-stage"},
		{a.SplitRank != 0, "--pipeline-model-parallel-split-rank (encoder–decoder models)"}, {len(a.Spec) > 0, "--spec"},
		{a.LazyMPUInit != "", "--lazy-mpu-init"}, {a.VocabExtraIDs != 0, "--vocab-extra-ids (T5's span masking)"},
		{a.CacheMLALatents, "--cache-mla-latents"}, {a.MLADownProjFusion, "--mla-down-proj-fusion"}} {
		if f.set {
			return fmt.Errorf("%s is not supported yet", f.flag)
		}
	}
	if a.ADLRAutoresume { // Megatron exits likewise where its userlib is not installed
		return fmt.Errorf("--adlr-autoresume: ADLR autoresume is not available (it needs NVIDIA's cluster library); stop and resume with --exit-signal-handler, --exit-duration-in-mins or --exit-interval and --load")
	}
	if cp := a.ContextParallelSize; cp != 1 {
		switch {
		case cp < 1:
			return fmt.Errorf("--context-parallel-size %d must be positive", cp)
		case a.SeqLength%(2*cp) != 0:
			return fmt.Errorf("--seq-length %d is not divisible by 2 × --context-parallel-size %d (each rank holds 2 of 2·CP chunks)", a.SeqLength, cp)
		}
	}
	for _, f := range []struct {
		set  bool
		flag string
	}{{a.MoETokenDropping, "--moe-token-dropping"}} {
		if f.set {
			return fmt.Errorf("%s is not supported yet (mixture-of-experts layers run dropless)", f.flag)
		}
	}
	if a.MoEGroupedGemm && a.NumExperts > 0 && !a.BF16 {
		return fmt.Errorf("--moe-grouped-gemm needs --bf16, as Megatron asserts (\"Currently GroupedGEMM for MoE only supports bf16 dtype.\")")
	}
	if err := PaiQwenBiases(&a.Config, a.DisableBiasLinearFC, a.DisableBiasAttnFC); err != nil {
		return err
	}
	if a.NoPositionEmbedding && a.PositionEmbeddingType == "learned_absolute" {
		return fmt.Errorf("--no-position-embedding with learned absolute positions leaves no position information: not supported")
	}
	tp, pp := a.TensorModelParallelSize, a.PipelineModelParallelSize
	if tp < 1 || pp < 1 {
		return fmt.Errorf("--tensor-model-parallel-size %d and --pipeline-model-parallel-size %d must be positive", tp, pp)
	}
	cp := max(a.ContextParallelSize, 1)
	if world%(tp*pp*cp) != 0 {
		return fmt.Errorf("world size %d is not divisible by tensor-parallel size %d × pipeline-parallel size %d × context-parallel size %d", world, tp, pp, cp)
	}
	dp := world / (tp * pp * cp)
	if ep := a.ExpertModelParallelSize; ep < 1 || dp%ep != 0 {
		return fmt.Errorf("--expert-model-parallel-size %d must divide the data-parallel size %d", ep, dp)
	}
	if ep := a.ExpertModelParallelSize; ep > 1 && a.NumExperts > 0 {
		if a.NumExperts%ep != 0 {
			return fmt.Errorf("--num-experts %d is not a multiple of --expert-model-parallel-size %d", a.NumExperts, ep)
		}
		if a.FP16 {
			return fmt.Errorf("--expert-model-parallel-size %d: expert parallelism is not supported with --fp16 (as in Megatron)", ep)
		}
	}
	if a.NumLayers%pp != 0 {
		return fmt.Errorf("--num-layers %d is not divisible by --pipeline-model-parallel-size %d", a.NumLayers, pp)
	}
	if n := a.LayersPerVirtualStage; n != 0 {
		if pp < 2 {
			return fmt.Errorf("--num-layers-per-virtual-pipeline-stage needs --pipeline-model-parallel-size > 1")
		}
		if n < 0 || (a.NumLayers/pp)%n != 0 {
			return fmt.Errorf("--num-layers-per-virtual-pipeline-stage %d does not divide the %d layers of each of the %d stages", n, a.NumLayers/pp, pp)
		}
	}
	if a.MicroBatchSize < 1 {
		return fmt.Errorf("--micro-batch-size %d must be positive", a.MicroBatchSize)
	}
	if a.GlobalBatchSize == 0 {
		a.GlobalBatchSize = a.MicroBatchSize * dp
	}
	if a.GlobalBatchSize%(a.MicroBatchSize*dp) != 0 {
		return fmt.Errorf("--global-batch-size %d is not divisible by --micro-batch-size %d × data-parallel size %d", a.GlobalBatchSize, a.MicroBatchSize, dp)
	}
	if (a.TrainIters > 0) == (a.TrainSamples > 0) {
		return fmt.Errorf("give exactly one of --train-iters and --train-samples")
	}
	if len(a.RampupBatchSize) > 0 && a.TrainIters > 0 {
		return fmt.Errorf("--rampup-batch-size needs sample-based training (--train-samples), as Megatron's: expected no batch-size rampup for iteration-based training")
	}
	var err error
	if a.ramp, err = parseRampup(a.RampupBatchSize, a.GlobalBatchSize); err != nil {
		return err
	}
	if a.SeqLength <= 0 {
		return fmt.Errorf("--seq-length must be positive")
	}
	if a.MaxPositionEmbeddings == 0 {
		a.MaxPositionEmbeddings = a.SeqLength
	}
	if a.PositionEmbeddingType == "learned_absolute" && a.SeqLength > a.MaxPositionEmbeddings {
		return fmt.Errorf("--seq-length %d exceeds --max-position-embeddings %d", a.SeqLength, a.MaxPositionEmbeddings)
	}
	if a.SequenceParallel && tp > 1 && a.SeqLength%tp != 0 {
		return fmt.Errorf("--seq-length %d is not divisible by --tensor-model-parallel-size %d (needed by --sequence-parallel)", a.SeqLength, tp)
	}
	if a.LR <= 0 && !a.evaluateRaw {
		return fmt.Errorf("--lr must be positive")
	}
	if len(a.DataPath) == 0 && len(a.TrainDataPath) == 0 && !a.MockData && !a.evaluateRaw {
		return fmt.Errorf("no data: give --data-path, --train-data-path or --mock-data")
	}
	if a.LogInterval < 1 || a.EvalIters < 0 || a.EvalInterval < 1 {
		return fmt.Errorf("--log-interval and --eval-interval must be positive and --eval-iters non-negative")
	}
	return nil
}

// Recompute is the activation-recompute setting the flags ask for.
func (a *Args) Recompute() layers.Recompute {
	r := layers.Recompute{Granularity: a.RecomputeGranularity}
	if a.RecomputeActivations && r.Granularity == "" {
		r.Granularity = "selective"
	}
	if r.Granularity == "full" {
		r.Method, r.NumLayers = a.RecomputeMethod, a.RecomputeNumLayers
	}
	return r
}

// activationDType is the dtype the model keeps activations in: BF16, as Megatron does
// under --bf16, on a GPU, where it halves every op's memory traffic; F32 on the CPU (its
// kernels compute in F32, so BF16 would only add conversions), under FP8 (its GEMMs write
// F32), with --fp32-residual-connection and with GOMEGATRON_ACTIVATIONS=f32.
func (a *Args) activationDType(be kernels.Backend) tensor.DType {
	if a.BF16 && a.FP8Format == "" && !a.FP32ResidualConnection && be.Device().Type != tensor.CPU && os.Getenv("GOMEGATRON_ACTIVATIONS") != "f32" {
		return tensor.BF16
	}
	return tensor.F32
}

// FP8 is the FP8 recipe the flags ask for (nil: none).
func (a *Args) FP8() *layers.FP8Recipe {
	if a.FP8Format == "" {
		return nil
	}
	return &layers.FP8Recipe{Format: a.FP8Format, Margin: a.FP8Margin, HistoryLen: a.FP8AmaxHistoryLen, ComputeAlgo: a.FP8AmaxComputeAlgo,
		HighPrecisionWGrad: a.NoFP8WGrad}
}

// VirtualStages is the number of model chunks per pipeline stage (1 without interleaving).
func (a *Args) VirtualStages() int {
	if a.LayersPerVirtualStage == 0 {
		return 1
	}
	return a.NumLayers / a.PipelineModelParallelSize / a.LayersPerVirtualStage
}

// LoadingCheckpoint reports whether --load names a checkpoint to resume from.
func (a *Args) LoadingCheckpoint() bool { return a.Load != "" && a.Load != "none" }

// PaiQwenBiases applies Pai's --disable-bias-linear-fc and --disable-bias-attn-fc. Only
// Pai's Qwen (1.0) model reads them: its query_key_value always has a bias, and the two
// flags drop the MLP's and the attention output's, which is --disable-bias-linear
// --add-qkv-bias. With --disable-bias-linear (Pai's Mistral scripts) they change nothing;
// one alone would leave a bias layout no model here has.
func PaiQwenBiases(c *layers.Config, fc, attnFC bool) error {
	switch {
	case c.DisableBiasLinear || !fc && !attnFC:
		return nil
	case fc && attnFC:
		c.DisableBiasLinear, c.AddQKVBias = true, true
		return nil
	}
	return fmt.Errorf("--disable-bias-linear-fc and --disable-bias-attn-fc go together (Pai's Qwen model: biases on the QKV projection only) or with --disable-bias-linear")
}
