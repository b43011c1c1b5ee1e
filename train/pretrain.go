package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
	"github.com/gomegatron/gomegatron/train/tensorboard"
)

// Pretrain runs Megatron's pretrain loop on this rank of world: build the parallel groups,
// the tokenizer, the datasets and the model shard, then train, log, evaluate and exit as the
// flags say. The last rank prints Megatron's log lines to out.
//
// A --train-data-path that is a file is Pai's raw JSON dataset (LLamaRawDataset), as
// pretrain_megatron_llama.py reads it: see rawJSON and rawLoss; a prefix with a "-Pretrain"
// --dataset is its LLamaIdxMapDataset (paiIdxmap).
func Pretrain(a *Args, world comm.Comm, out io.Writer) error {
	if a.paiIdxmap() {
		if a.MaxPaddingLength < 1 {
			return fmt.Errorf("--dataset %s reads Pai's idxmap samples of --max-padding-length + 1 tokens: give --max-padding-length", a.Dataset)
		}
		a.SeqLength = a.MaxPaddingLength
	}
	if !a.rawJSON() {
		return run(a, world, out, nil)
	}
	loss, err := a.rawLossRule(false)
	if err != nil {
		return err
	}
	if err := a.rawSeqLength("raw JSON training data (" + a.TrainDataPath[0] + ")"); err != nil {
		return err
	}
	return run(a, world, out, a.rawSplits(loss))
}

// Finetune runs Pai-Megatron-Patch's supervised fine-tuning: the pretraining loop on
// instruction samples (prompt and padding masked out of the loss), for --epochs passes
// (finetune_megatron_llama.py), or for --train-iters iterations in --dataloader-type order
// (the *_withGA scripts, which run Megatron's pretraining loop on the same samples).
func Finetune(f *FinetuneArgs, world comm.Comm, out io.Writer) error {
	if err := f.rawSeqLength("finetune"); err != nil {
		return err
	}
	loss, err := f.rawLossRule(true)
	if err != nil {
		return err
	}
	if f.TrainIters > 0 || f.TrainSamples > 0 {
		return run(&f.Args, world, out, f.rawSplits(loss))
	}
	f.TrainIters = 1 // set from the data and --epochs below
	f.epochs = true
	if f.Epochs < 1 {
		return fmt.Errorf("--epochs must be ≥ 1, got %d", f.Epochs)
	}
	return run(&f.Args, world, out, f.sftSplits(loss))
}

// rawSeqLength sets --seq-length to the raw samples' length: the model sees input_ids[:-1].
func (a *Args) rawSeqLength(what string) error {
	if a.rawSampleLength() < 2 {
		return fmt.Errorf("%s needs --max-padding-length (the padded sample length), got %d", what, a.MaxPaddingLength)
	}
	a.SeqLength = a.rawSampleLength() - 1
	return nil
}

// scalar is one TensorBoard value of an iteration.
type scalar struct {
	tag string
	v   float64
}

// dataHook builds the splits instead of the GPT datasets (fine-tuning) and may set
// a.TrainIters; dp is the data-parallel size.
type dataHook func(tok tokenizer.Tokenizer, dp int) ([3]samples, error)

func run(a *Args, world comm.Comm, out io.Writer, hook dataHook) error {
	start := time.Now()
	if a.UseCheckpointArgs {
		lines, err := a.useCheckpointArgs()
		if err != nil {
			return err
		}
		if world.Rank() == 0 {
			for _, l := range lines {
				fmt.Fprintln(out, l)
			}
		}
	}
	if err := a.Validate(world.Size()); err != nil {
		return err
	}
	if a.Backend != nil && !comm.Carries(world, a.Backend.Device()) {
		world = comm.Staged(world, a.Backend) // host collectives carry device tensors
	}
	ps, err := comm.NewParallelState(world, comm.ParallelConfig{TP: a.TensorModelParallelSize, PP: a.PipelineModelParallelSize, CP: a.ContextParallelSize, EP: a.expertParallel(), Order: comm.DefaultOrder})
	if err != nil {
		return err
	}
	defer ps.Close()
	report := world.Rank() == world.Size()-1 // Megatron's is_last_rank prints the log
	plog, err := a.newProgressLog(world.Rank(), world.Size(), start)
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		if report {
			fmt.Fprintf(out, format+"\n", args...)
		}
	}

	switch {
	case a.paiIdxmap():
		logf("> %s as Pai's LLamaIdxMapDataset: samples of %d tokens (--max-padding-length), --split %q cut by Megatron's legacy rule", a.TrainDataPath, a.SeqLength, a.Split)
	case hook != nil:
		logf("> Pai's raw JSON samples of %d tokens (--max-padding-length %d%s): the model sees %d", a.rawSampleLength(), a.MaxPaddingLength,
			map[bool]string{true: " + 1 for --dataset " + a.Dataset}[a.rawSampleLength() > a.MaxPaddingLength], a.SeqLength)
	}

	// Tokenizer and vocabulary.
	ds := gpt.DatasetConfig{SequenceLength: a.SeqLength, AddExtraToken: true, EOD: -1, Pad: gpt.PadTokenIDNone, EODMaskLoss: a.EODMaskLoss}
	var tok tokenizer.Tokenizer
	if !a.MockData || a.TokenizerType != "" || hook != nil {
		if tok, err = a.buildTokenizer(); err != nil {
			return err
		}
		a.VocabSize = a.modelVocab(tok)
		a.tokPad = int64(tok.Pad())
		ds.EOD = int64(tok.EOD())
		if p := tok.Pad(); p >= 0 && p != tok.EOD() {
			ds.Pad = int64(p)
		}
	}
	if a.VocabSize <= 0 {
		return fmt.Errorf("--mock-data without a tokenizer needs --vocab-size")
	}
	var splits [3]samples
	if hook != nil {
		if splits, err = hook(tok, ps.DPSize); err != nil {
			return err
		}
		for i, s := range splits[:2] {
			if st, ok := rawStats(s); ok { // LLamaRawDataset's line, and what it dropped
				logf("  >> total number of samples: %d (%s: %d records, %d longer than %d tokens, %d with an empty %s)",
					st.Kept, [2]string{"train", "valid"}[i], st.Records, st.TooLong, a.rawSampleLength(), st.EmptyTarget, st.TargetKey)
			}
		}
	}

	// Model, optimizer, trainer.
	cfg := a.Config
	switch {
	case a.hfModel:
		// The folder's embedding rows (Pai resizes them to the tokenizer, the same size for
		// the Llama-2 family): the tokenizer's ids must fit.
		if a.VocabSize > cfg.PaddedVocabSize {
			return fmt.Errorf("--load %s: the tokenizer has %d ids (with --extra-vocab-size), more than the model's %d embedding rows", a.Load, a.VocabSize, cfg.PaddedVocabSize)
		}
	case a.paiTokenizer():
		// Pai sets padded_vocab_size = tokenizer.vocab_size + --extra-vocab-size itself:
		// no rounding to --make-vocab-size-divisible-by, so Pai's checkpoints fit.
		if a.VocabSize%a.TensorModelParallelSize != 0 {
			return fmt.Errorf("--patch-tokenizer-type %s sizes the vocabulary exactly (%d with --extra-vocab-size %d), which --tensor-model-parallel-size %d must divide, as in Pai-Megatron-Patch", a.tokenizerType(), a.VocabSize, a.ExtraVocabSize, a.TensorModelParallelSize)
		}
		cfg.PaddedVocabSize = a.VocabSize
	}
	be := a.Backend
	if be == nil {
		be = cpu.New()
	}
	if d := be.Device(); d.Type != tensor.CPU {
		logf("> training on %v", d)
	}
	var chunks []*layers.GPTModel
	var params layers.Params
	for v := 0; v < a.VirtualStages(); v++ {
		par := layers.Parallel{TP: ps.TP, SequenceParallel: a.SequenceParallel, PPRank: ps.Coords.PP, PPSize: ps.PPSize,
			VPRank: v, VPSize: a.VirtualStages()}
		if ps.EPSize > 1 {
			par.EP = ps.EP
		}
		if ps.CPSize > 1 {
			par.CP = ps.CP
		}
		m, err := layers.NewParallelGPTModel(be, cfg, par, uint64(a.Seed))
		if err != nil {
			return err
		}
		if err := m.SetRecompute(a.Recompute()); err != nil {
			return err
		}
		if r := a.FP8(); r != nil {
			if err := m.SetFP8(*r); err != nil {
				return err
			}
		}
		if err := m.SetActivationDType(a.activationDType(be)); err != nil {
			return err
		}
		chunks = append(chunks, m)
		params = append(params, m.Params...)
	}
	model := chunks[0]
	if dt := model.ActivationDType(); dt != tensor.F32 {
		logf("> activations in %v", dt)
	}
	logf("> padded vocab (size: %d) with %d dummy tokens (new size: %d)", a.VocabSize, model.Cfg.PaddedVocabSize-a.VocabSize, model.Cfg.PaddedVocabSize)
	if ps.Coords.DP == 0 {
		fmt.Fprintf(out, " > number of parameters on (tensor, pipeline) model parallel rank (%d, %d): %d\n", ps.Coords.TP, ps.Coords.PP, params.Trainable().Numel())
	}
	groups := optim.Groups{DP: ps.DPCP, Norm: ps.MP, TP: ps.Coords.TP}
	// Expert weights get buckets (and, with the distributed optimizer, shards) of their own
	// whenever there are experts, as Megatron-Core's expert_parallel_buffers, so that
	// distrib_optim.pt has its layout; context parallelism (EP 1 only) keeps them with
	// the dense weights, reduced over DP × CP.
	if ps.EPSize > 1 || a.NumExperts > 0 && ps.CPSize == 1 {
		groups.ExpertDP, groups.EP = ps.ExpertDP, ps.EP
	}
	if len(chunks) > 1 {
		for _, m := range chunks {
			groups.Chunks = append(groups.Chunks, len(m.Params))
		}
	}
	if a.UseDistributedOptimizer {
		groups.Norm = world
	}
	bucketSize := 0
	if a.OverlapGradReduce {
		if bucketSize = a.DDPBucketSize; bucketSize <= 0 {
			bucketSize = optim.DefaultBucketSize(ps.DPSize)
		}
	}
	opt := optim.NewAdamBuckets(be, params, a.AdamConfig, a.UseDistributedOptimizer, groups, bucketSize)
	switch {
	case a.BF16:
		opt.SetModelDType(tensor.BF16)
	case a.FP16:
		opt.SetModelDType(tensor.F16)
		if a.LossScale > 0 {
			opt.Scaler = optim.ConstantScaler(a.LossScale)
		} else {
			opt.Scaler = optim.NewDynamicScaler(a.InitialLossScale, a.MinLossScale, a.LossScaleWindow, a.Hysteresis)
		}
	}
	if be.Device().Type != tensor.CPU {
		opt.ShadowWeights() // bf16/fp16 GEMM operands on the GPU's tensor cores
	}
	if a.OverlapGradReduce {
		if err := opt.EnableOverlap(params, bucketSize, lateForOverlap); err != nil {
			return err
		}
	}
	tr, err := NewInterleavedTrainer(be, chunks, ps, opt, a.SeqLength, a.MicroBatchSize)
	if err != nil {
		return err
	}
	tr.PerTokenLoss = a.CalculatePerTokenLoss
	ck := &checkpointer{a: a, world: world, ps: ps, model: model, chunks: chunks, opt: opt, be: be}

	// Schedule and data.
	trainIters := a.TrainIters
	if a.TrainSamples > 0 {
		trainIters = a.TrainSamples / a.GlobalBatchSize
		if a.ramp != nil {
			trainIters = a.ramp.iterations(int64(a.TrainSamples))
			logf("setting training iterations to %d", trainIters)
		}
	}
	sched, err := a.schedule(trainIters)
	if err != nil {
		return err
	}
	decoupled := sched // --decoupled-lr's group: the same schedule between its own bounds
	decoupled.MaxLR, decoupled.MinLR = a.DecoupledLR, a.MinLR
	if a.DecoupledMinLR != nil {
		decoupled.MinLR = *a.DecoupledMinLR
	}
	ck.sched = sched
	var resume progress
	if a.LoadingCheckpoint() {
		found, err := a.checkpointFound()
		if err != nil {
			return err
		}
		if !found {
			logf("WARNING: could not find the metadata file %s/%s ", a.Load, megatron.TrackerFile)
			logf("    will not load any checkpoints and will start from random")
			if a.ExitOnMissingCheckpoint {
				return fmt.Errorf(">> '--exit-on-missing-checkpoint' set ... exiting. <<: no checkpoint in --load %s", a.Load)
			}
		} else {
			if resume, err = ck.load(); err != nil {
				return err
			}
			if d, ok := opt.Scaler.(*optim.DynamicScaler); ok && resume.LossScale > 0 {
				d.Restore(resume.LossScale, resume.ScalerGrowth, resume.ScalerHysteresis)
			}
			for _, n := range ck.notes {
				logf("%s", n)
			}
			if ck.hfModelType != "" && (a.HiddenDropout > 0 || a.AttentionDropout > 0) && resume.Iteration == 0 {
				// Pai-Megatron-Patch's most common question (its issue #217).
				logf("WARNING: %s was converted from a Hugging Face %s model, trained without dropout; Megatron's --hidden-dropout %v and --attention-dropout %v raise the first losses above Hugging Face's: pass --hidden-dropout 0.0 --attention-dropout 0.0 to continue as it was trained",
					a.Load, ck.hfModelType, a.HiddenDropout, a.AttentionDropout)
			}
			sched = ck.sched // --use-checkpoint-opt_param-scheduler
			logf("  successfully loaded checkpoint from %s [ t %d, p %d ] at iteration %d", a.Load, ps.TPSize, ps.PPSize, resume.Iteration)
		}
	}
	if err := world.Barrier(); err != nil { // model built everywhere before rank 0 builds data
		return err
	}
	if hook == nil {
		if splits, err = a.buildSplitsRankZeroFirst(world, a.splitSizes(trainIters), ds); err != nil {
			return err
		}
	}
	docs := documents{eod: ds.EOD, resetPos: a.ResetPositionIDs, resetAttn: a.ResetAttentionMsk}
	if a.evaluateRaw {
		return a.evaluateSplit(tr, splits[1], ps, docs, logf)
	}
	if splits[0] == nil {
		return fmt.Errorf("the training split is empty (--split %q)", a.Split)
	}
	var tb *tensorboard.Writer
	if report && a.TensorboardDir != "" {
		if tb, err = tensorboard.NewWriter(a.TensorboardDir); err != nil {
			return err
		}
		defer tb.Close()
	}
	logf("[after dataloaders are built] datetime: %s ", time.Now().Format("2006-01-02 15:04:05"))
	if a.SkipTrain {
		logf("skipping training (--skip-train is on) ...")
	} else {
		logf("training ...")
	}

	train := a.newLoader(splits[0], resume.ConsumedTrain, ps, docs)
	validFrom := resume.ConsumedValid
	if a.SkipTrain {
		validFrom = 0 // Megatron evaluates a checkpoint from the start of the validation set
	}
	valid := a.newLoader(splits[1], validFrom, ps, docs)
	test := a.newLoader(splits[2], 0, ps, docs)

	// consumed counts every iteration's samples; schedSteps only those of successful updates
	// (Megatron does not step the scheduler on a skipped iteration).
	consumed, consumedValid, schedSteps := resume.ConsumedTrain, resume.ConsumedValid, resume.SchedSteps
	flops := resume.FLOPs // Megatron's num_floating_point_operations_so_far
	if plog != nil {
		plog.startFLOPs = flops
	}
	var skipped, nanIters, sinceLog int
	var lossAcc float64
	var lossN int
	lastLog := time.Now()
	memoryReported := false // Megatron reports memory once, after the first logged iteration
	save := func(it int) error {
		p := progress{Iteration: it, ConsumedTrain: consumed, ConsumedValid: consumedValid, SchedSteps: schedSteps, LossScale: opt.LossScale(), FLOPs: flops}
		if d, ok := opt.Scaler.(*optim.DynamicScaler); ok {
			p.ScalerGrowth, p.ScalerHysteresis = d.Trackers()
		}
		if err := ck.save(p); err != nil {
			return fmt.Errorf("saving the checkpoint of iteration %d: %w", it, err)
		}
		logf("  successfully saved checkpoint from iteration %7d to %s [ t %d/%d, p %d/%d ]", it, a.Save, ps.Coords.TP+1, ps.TPSize, ps.Coords.PP+1, ps.PPSize)
		if plog != nil && world.Rank() == 0 {
			return plog.saved(time.Now(), it, flops, consumed*int64(a.SeqLength))
		}
		return nil
	}
	stop := newSignalFlag(a.ExitSignalHandler)
	defer stop.close()
	// Megatron saves at the end unless this iteration was just saved, even when the run
	// trained nothing past the checkpoint it loaded (pretrain(): iteration != 0 and not a
	// multiple of --save-interval).
	saved := -1
	if resume.Iteration == 0 {
		saved = 0
	}
	it := resume.Iteration
	exited := false
	for it < trainIters && !a.SkipTrain {
		it++
		batch := a.GlobalBatchSize
		if a.ramp != nil {
			batch = a.ramp.at(consumed)
		}
		if per := a.MicroBatchSize * ps.DPSize; batch%per != 0 {
			return fmt.Errorf("iteration %d: --rampup-batch-size: the global batch size %d is not divisible by --micro-batch-size %d × data-parallel size %d", it, batch, a.MicroBatchSize, ps.DPSize)
		}
		micro, err := train.nextN(batch / (a.MicroBatchSize * ps.DPSize))
		if err != nil {
			return fmt.Errorf("iteration %d: %w", it, err)
		}
		opt.Cfg.WeightDecay = sched.WD(schedSteps)
		if a.DecoupledLR > 0 {
			opt.DecoupledLR = decoupled.At(schedSteps)
		}
		res, err := tr.Iteration(micro, sched.At(schedSteps), uint64(a.Seed), uint64(it))
		if err != nil {
			return fmt.Errorf("iteration %d: %w", it, err)
		}
		if res.Skipped && math.IsNaN(res.GradNorm) && opt.Scaler == nil && !a.NoCheckForNaN {
			// Megatron 240126 asserts on a NaN loss or local gradient norm without a loss
			// scaler; the norm here is the reduced one, so no rank is singled out.
			return fmt.Errorf("iteration %d: found NaN in the loss or gradient norm (loss %v): pass --no-check-for-nan-in-loss-and-grad to skip such iterations", it, res.Loss)
		}
		consumed += int64(batch)
		flops += FLOPs(&model.Cfg, batch)
		if !res.Skipped {
			schedSteps += int64(batch)
		}
		sinceLog++
		if res.Skipped {
			skipped++
			if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
				nanIters++
			}
		} else if report {
			lossAcc += res.Loss
			lossN++
		}
		lr := sched.At(schedSteps)
		logging := it%a.LogInterval == 0 || it == 1
		writeTB := tb != nil && it%a.TensorboardLogInterval == 0
		pnorm := math.NaN()
		// The same condition on every rank: all of them join the all-reduce.
		if a.LogParamsNorm && (logging || (a.TensorboardDir != "" && it%a.TensorboardLogInterval == 0)) {
			if pnorm, err = paramsNorm(be, params, ps.Coords.TP, ps.MP); err != nil {
				return fmt.Errorf("iteration %d: %w", it, err)
			}
		}
		zeros := math.NaN()
		if a.LogNumZerosInGrad && !res.Skipped && (logging || (a.TensorboardDir != "" && it%a.TensorboardLogInterval == 0)) {
			if zeros, err = opt.CountZeros(); err != nil {
				return fmt.Errorf("iteration %d: %w", it, err)
			}
		}
		if writeTB {
			// Megatron's training_log: each value against the iteration and, as "<tag> vs
			// samples", against the consumed samples.
			var sc []scalar
			if !a.NoLogLearningRateToTB {
				sc = append(sc, scalar{"learning-rate", lr})
			}
			if a.LogBatchSizeToTensorboard {
				sc = append(sc, scalar{"batch-size", float64(batch)})
			}
			sc = append(sc, scalar{"lm loss", res.Loss})
			if !a.NoLogLossScaleToTB {
				sc = append(sc, scalar{"loss-scale", opt.LossScale()})
			}
			if a.LogWorldSizeToTB {
				sc = append(sc, scalar{"world-size", float64(world.Size())})
			}
			sc = append(sc, scalar{"grad-norm", res.GradNorm})
			if !math.IsNaN(zeros) {
				sc = append(sc, scalar{"num-zeros", zeros})
			}
			if !math.IsNaN(pnorm) {
				sc = append(sc, scalar{"params-norm", pnorm})
			}
			for _, s := range sc {
				if err := tb.Scalar(s.tag, s.v, int64(it)); err != nil {
					return err
				}
				if err := tb.Scalar(s.tag+" vs samples", s.v, consumed); err != nil {
					return err
				}
			}
			if mr, ok := be.(kernels.MemoryReporter); ok && a.LogMemoryToTensorboard {
				m := mr.MemoryStats()
				for _, s := range []scalar{{"mem-reserved-bytes", float64(m.Reserved)}, {"mem-allocated-bytes", float64(m.Allocated)},
					{"mem-max-allocated-bytes", float64(m.MaxAllocated)}, {"mem-allocated-count", float64(m.Allocations)}} {
					if err := tb.Scalar(s.tag, s.v, int64(it)); err != nil {
						return err
					}
				}
			}
		}
		if logging {
			elapsed := time.Since(lastLog).Seconds() / float64(sinceLog)
			f := logFields{Iteration: it, TrainIters: trainIters, ConsumedSamples: consumed, ElapsedMS: elapsed * 1000,
				TFLOPS: -1, LR: lr, GlobalBatchSize: batch, Loss: math.NaN(),
				LossScale: opt.LossScale(), GradNorm: res.GradNorm, NumZeros: zeros, ParamsNorm: pnorm, Skipped: skipped, NaN: nanIters}
			if lossN > 0 {
				f.Loss = lossAcc / float64(lossN)
			}
			if res.Skipped {
				f.GradNorm = math.NaN()
			}
			if a.LogThroughput {
				f.TFLOPS = FLOPs(&model.Cfg, batch) / (elapsed * 1e12 * float64(world.Size()))
			}
			logf("%s", f.format(time.Now()))
			if mr, ok := be.(kernels.MemoryReporter); ok && !memoryReported && ps.Coords.DP == 0 {
				fmt.Fprintln(out, memoryLine(world.Rank(), it, mr.MemoryStats())) // every DP-rank-0 process, as Megatron
			}
			memoryReported = true
			if tb != nil && a.LogTimersToTensorboard {
				if err := tb.Scalar("iteration-time", elapsed, int64(it)); err != nil {
					return err
				}
				if a.LogThroughput {
					if err := tb.Scalar("throughput", f.TFLOPS, int64(it)); err != nil {
						return err
					}
				}
			}
			lastLog, sinceLog, lossAcc, lossN, skipped, nanIters = time.Now(), 0, 0, 0, 0, 0
		}
		if a.EvalIters > 0 && it%a.EvalInterval == 0 && splits[1] != nil {
			if consumedValid, err = a.validate(tr, valid, consumedValid, consumed, fmt.Sprintf("iteration %d", it), it, logf, tb); err != nil {
				return err
			}
		}
		if a.Save != "" && a.SaveInterval > 0 && it%a.SaveInterval == 0 {
			if err := save(it); err != nil {
				return err
			}
			saved = it
		}
		signalled, err := stop.received(world)
		if err != nil {
			return err
		}
		var exit string
		switch {
		case signalled:
			exit = fmt.Sprintf("exiting program after receiving SIGTERM at iteration %d", it)
		case a.ExitInterval > 0 && it%a.ExitInterval == 0:
			exit = fmt.Sprintf("exiting program at iteration %d", it)
		case a.ExitDurationInMins > 0 && time.Since(start) > time.Duration(a.ExitDurationInMins)*time.Minute:
			exit = fmt.Sprintf("exiting program after %d minutes", a.ExitDurationInMins)
		}
		if exit != "" {
			if a.Save != "" && saved != it {
				if err := save(it); err != nil {
					return err
				}
				saved = it
			}
			logf("%s", exit)
			exited = true // Megatron's sys.exit: no final evaluation
			break
		}
	}
	if !exited {
		if !a.SkipTrain {
			logf("[after training is done] datetime: %s ", time.Now().Format("2006-01-02 15:04:05"))
		}
		if a.Save != "" && saved != it {
			if err := save(it); err != nil {
				return err
			}
		}
		// Megatron's end of pretrain(): the validation set (going on where training left it)
		// and the test set (from its start), logged to TensorBoard unless --skip-train. Pai's
		// epoch-based fine-tuning loop has none.
		etb := tb
		if a.SkipTrain {
			etb = nil
		}
		for _, e := range []struct {
			l     *loader
			name  string
			split samples
		}{{valid, "validation", splits[1]}, {test, "test", splits[2]}} {
			if e.split == nil || a.EvalIters == 0 || a.epochs {
				continue
			}
			if _, err := a.validate(tr, e.l, 0, consumed, fmt.Sprintf("iteration %d on %s set", it, e.name), it, logf, etb); err != nil {
				return err
			}
		}
	}
	if tb != nil {
		return tb.Flush()
	}
	return nil
}

// validate runs --eval-iters forward-only iterations on the validation split; TensorBoard
// gets the loss (and with --log-validation-ppl-to-tensorboard the perplexity) against the
// iteration and against the trainSamples consumed.
func (a *Args) validate(tr *Trainer, valid *loader, consumed, trainSamples int64, prefix string, it int, logf func(string, ...any), tb *tensorboard.Writer) (int64, error) {
	var sum, n float64
	for e := 0; e < a.EvalIters; e++ {
		micro, err := valid.next()
		if err != nil {
			return consumed, fmt.Errorf("validation: %w", err)
		}
		s, k, err := tr.Evaluate(micro, uint64(a.Seed), 0)
		if err != nil {
			return consumed, err
		}
		sum, n = sum+s, n+k
		consumed += int64(a.GlobalBatchSize)
	}
	if !tr.last().Par.Last() || n == 0 {
		return consumed, nil
	}
	loss := sum / n
	ppl := math.Exp(math.Min(20, loss))
	logf("%s", validationBlock(prefix, loss, ppl))
	if tb == nil {
		return consumed, nil
	}
	sc := []scalar{{"lm loss validation", loss}}
	if a.LogValidationPPLToTensorbord {
		sc = append(sc, scalar{"lm loss validation ppl", ppl})
	}
	for _, s := range sc {
		if err := tb.Scalar(s.tag, s.v, int64(it)); err != nil {
			return consumed, err
		}
		if err := tb.Scalar(s.tag+" vs samples", s.v, trainSamples); err != nil {
			return consumed, err
		}
	}
	return consumed, nil
}

// buildSplitsRankZeroFirst builds the datasets on rank 0 first (it writes the index cache
// when --data-cache-path is set), then on the other ranks, which then read that cache.
func (a *Args) buildSplitsRankZeroFirst(world comm.Comm, sizes [3]int, ds gpt.DatasetConfig) ([3]samples, error) {
	var out [3]samples
	var err error
	if world.Rank() == 0 {
		out, err = a.buildSplits(sizes, ds)
	}
	if berr := world.Barrier(); berr != nil {
		return out, berr
	}
	if world.Rank() != 0 {
		out, err = a.buildSplits(sizes, ds)
	}
	return out, err
}

// schedule converts the LR flags into sample-based steps as get_optimizer_param_scheduler does.
func (a *Args) schedule(trainIters int) (LRSchedule, error) {
	gbs := int64(a.GlobalBatchSize)
	s := LRSchedule{MaxLR: a.LR, MinLR: a.MinLR, InitLR: a.LRWarmupInit, Style: a.LRDecayStyle, WSDStyle: a.LRWSDDecayStyle,
		StartWD: a.WeightDecay, EndWD: a.WeightDecay, WDIncrStyle: a.WeightDecayIncrStyle, WDIncrSteps: int64(trainIters) * gbs}
	if a.TrainSamples > 0 {
		s.WDIncrSteps = int64(a.TrainSamples)
	}
	if a.WeightDecayIncrStyle != "constant" {
		s.StartWD, s.EndWD = *a.StartWeightDecay, *a.EndWeightDecay
	}
	if a.TrainSamples > 0 {
		s.DecaySteps = int64(a.LRDecaySamples)
		if s.DecaySteps == 0 {
			s.DecaySteps = int64(a.TrainSamples)
		}
		s.WarmupSteps = int64(a.LRWarmupSamples)
	} else {
		decay := a.LRDecayIters
		if decay == 0 {
			decay = trainIters
		}
		s.DecaySteps = int64(decay) * gbs
		s.WarmupSteps = int64(a.LRWarmupIters) * gbs
		s.WSDDecaySteps = int64(a.LRWSDDecayIters) * gbs
	}
	if a.LRWarmupFraction > 0 {
		s.WarmupSteps = int64(a.LRWarmupFraction * float64(s.DecaySteps))
	}
	return s, s.Validate()
}

// modelVocab is the vocabulary the embedding is sized from: the tokenizer's (Pai's
// tokenizer.vocab_size for its --patch-tokenizer-type) plus --extra-vocab-size.
func (a *Args) modelVocab(tok tokenizer.Tokenizer) int {
	if a.paiTokenizer() {
		return tokenizer.PaiModelVocab(a.tokenizerType(), tok, a.ExtraVocabSize)
	}
	return tok.VocabSize() + a.ExtraVocabSize
}

// paiTokenizer reports a Pai-Megatron-Patch tokenizer type, which sizes the vocabulary its
// own way (modelVocab) and leaves it unpadded.
func (a *Args) paiTokenizer() bool {
	return tokenizer.IsPai(a.tokenizerType())
}

// checkpointFound reports whether --load holds a checkpoint to load, as Megatron's
// load_checkpoint decides: its tracker file (or, as Pai's convertor takes them, an
// iter_XXXXXXX or release folder itself); --ckpt-step names the iteration folder instead. A
// missing or empty folder is no checkpoint (Megatron starts from random); a Hugging Face
// model folder is an error, since it needs converting first.
func (a *Args) checkpointFound() (bool, error) {
	if a.CkptStep > 0 {
		dir := filepath.Join(a.Load, megatron.IterDirName(a.CkptStep, false))
		if _, err := os.Stat(dir); err != nil {
			return false, fmt.Errorf("--ckpt-step %d: %w", a.CkptStep, err)
		}
		return true, nil
	}
	if _, err := os.Stat(a.Load); os.IsNotExist(err) {
		return false, nil
	}
	if _, err := megatron.Resolve(a.Load); err == nil {
		return true, nil
	}
	if a.hfModel {
		return true, nil
	}
	if _, err := os.Stat(filepath.Join(a.Load, "config.json")); err == nil {
		return false, fmt.Errorf("--load %s is a Hugging Face model folder (config.json, no %s): convert it with tools/convert (or scripts/model_convertor.sh) first", a.Load, megatron.TrackerFile)
	}
	if _, err := os.Stat(filepath.Join(a.Load, megatron.TrackerFile)); err == nil {
		_, err := megatron.Resolve(a.Load) // a tracker naming a missing or malformed iteration
		return false, fmt.Errorf("--load: %w", err)
	}
	return false, nil
}

// tokenizerType is --tokenizer-type, else Pai's --patch-tokenizer-type.
func (a *Args) tokenizerType() string {
	if a.TokenizerType != "" {
		return a.TokenizerType
	}
	return a.PatchTokenizerType
}

// buildTokenizer builds the tokenizer from Megatron's flags or Pai's --patch-tokenizer-type.
func (a *Args) buildTokenizer() (tokenizer.Tokenizer, error) {
	typ := a.tokenizerType()
	if typ == "" {
		return nil, fmt.Errorf("no tokenizer: give --tokenizer-type (or --patch-tokenizer-type)")
	}
	model := a.TokenizerModel
	if model == "" && (typ == "HuggingFaceTokenizer" || tokenizer.IsPai(typ)) && a.LoadingCheckpoint() {
		model = a.Load // Pai loads the tokenizer from the checkpoint folder (the converter copies it there)
	}
	return tokenizer.Build(tokenizer.Config{TokenizerType: typ, TokenizerModel: model,
		VocabFile: a.VocabFile, MergeFile: a.MergeFile, VocabSize: a.VocabSize})
}
