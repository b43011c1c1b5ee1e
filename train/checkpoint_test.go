package train

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

func singleRun(t *testing.T, a *Args) (*checkpointer, *Trainer) {
	world := comm.NewSingle()
	ps, err := comm.NewParallelState(world, comm.ParallelConfig{TP: 1, PP: 1, CP: 1, EP: 1, Order: comm.DefaultOrder})
	require.NoError(t, err)
	be := cpu.New()
	m, err := layers.NewGPTModel(be, a.Config, 1)
	require.NoError(t, err)
	opt := optim.NewAdam(be, m.Params, a.AdamConfig, false, optim.Groups{})
	if a.BF16 {
		opt.SetModelDType(tensor.BF16)
	}
	sched := LRSchedule{MaxLR: 1e-3, DecaySteps: 100, Style: "linear"}
	return &checkpointer{a: a, world: world, ps: ps, model: m, opt: opt, sched: sched}, NewTrainer(be, m, ps, opt, 16, 2)
}

// TestCheckpointRoundTripsOptimizerState saves after a few steps and loads into a fresh
// model: weights, Adam moments, main params and step must come back bit for bit.
func TestCheckpointRoundTripsOptimizerState(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		cfg, err := layers.Preset("tiny-llama")
		require.NoError(t, err)
		dir := t.TempDir()
		a := &Args{Config: cfg, AdamConfig: optim.DefaultAdam(), Save: dir, Load: dir, BF16: bf16, MicroBatchSize: 2, GlobalBatchSize: 2, TrainIters: 10}
		ck, tr := singleRun(t, a)
		data := repeatedCorpus(2, 16, cfg.VocabSize)
		for it := 0; it < 3; it++ {
			_, err := tr.Iteration([]layers.Batch{data}, 1e-3, 1, uint64(it))
			require.NoError(t, err)
		}
		require.NoError(t, ck.save(progress{Iteration: 3, ConsumedTrain: 6, SchedSteps: 6}))
		ck2, _ := singleRun(t, a)
		p, err := ck2.load()
		require.NoError(t, err)
		require.Equal(t, progress{Iteration: 3, ConsumedTrain: 6, SchedSteps: 6}, p)
		s1, s2 := ck.opt.State(), ck2.opt.State()
		require.Equal(t, s1.Step, s2.Step)
		require.Equal(t, s1.M.F32(), s2.M.F32(), "exp_avg")
		require.Equal(t, s1.V.F32(), s2.V.F32(), "exp_avg_sq")
		if bf16 {
			require.Equal(t, s1.Main.F32(), s2.Main.F32(), "fp32 main params")
		}
		require.Equal(t, ck.opt.Buffers().Param.F32(), ck2.opt.Buffers().Param.F32(), "weights")
	}
}
