package train

import (
	"os"
	"runtime"
	"testing"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// BenchmarkTrainStep times one training iteration (forward, backward, AdamW) of the
// bench-llama preset (6 layers, hidden 512, 8 heads, ffn 1376, vocab 32000) at seq 256 and
// micro-batch 4, the shape scripts/bench/train_step_torch.py runs in PyTorch. Threads
// follow GOMAXPROCS (scripts/bench/train_step.sh sets 2 for both).
func BenchmarkTrainStep(b *testing.B) {
	cfg, err := layers.Preset("bench-llama")
	if err != nil {
		b.Fatal(err)
	}
	cfg.MakeVocabSizeDivisibleBy = 1 // same vocabulary as the PyTorch peer
	be := cpu.New()
	m, err := layers.NewGPTModel(be, cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	opt := optim.NewAdam(be, m.Params, optim.DefaultAdam(), false, optim.Groups{})
	const s, mbs = 256, 4
	tr := NewTrainer(be, m, nil, opt, s, mbs)
	data := repeatedCorpus(mbs, s, cfg.VocabSize)
	step := func(i int) {
		if _, err := tr.Iteration([]layers.Batch{data}, 1e-4, 1, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	step(0) // warm up pools and caches
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step(i + 1)
	}
	b.StopTimer()
	b.ReportMetric(float64(s*mbs*b.N)/b.Elapsed().Seconds(), "tokens/s")
	if os.Getenv("GOMEGATRON_BENCH_VERBOSE") != "" {
		b.Logf("GOMAXPROCS=%d params=%d", runtime.GOMAXPROCS(0), m.Params.Numel())
	}
}
