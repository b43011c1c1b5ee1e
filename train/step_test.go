package train

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// tinyLlama is a Llama-shaped model small enough for a unit test.
func tinyLlama(dropout float64) layers.Config {
	c, err := layers.Preset("tiny-llama")
	if err != nil {
		panic(err)
	}
	c.HiddenDropout = dropout
	return c
}

// repeatedCorpus is a fixed token stream the model can memorise.
func repeatedCorpus(b, s, vocab int) layers.Batch {
	bt := layers.Batch{Tokens: make([]int64, b*s), Labels: make([]int64, b*s), LossMask: make([]float32, b*s)}
	pattern := []int64{5, 17, 42, 8, 99, 3, 64, 21, 7, 250, 13, 77}
	for i := 0; i < b*s; i++ {
		bt.Tokens[i] = pattern[i%len(pattern)] % int64(vocab)
		bt.Labels[i] = pattern[(i+1)%len(pattern)] % int64(vocab)
		bt.LossMask[i] = 1
	}
	return bt
}

func runSteps(t *testing.T, cfg layers.Config, steps int) []float64 {
	be := cpu.New()
	m, err := layers.NewGPTModel(be, cfg, 1234)
	require.NoError(t, err)
	opt := optim.NewAdam(be, m.Params, optim.DefaultAdam(), false, optim.Groups{})
	const b, s = 2, 32
	tr := NewTrainer(be, m, nil, opt, s, b)
	data := repeatedCorpus(b, s, cfg.VocabSize)
	var losses []float64
	for it := 0; it < steps; it++ {
		r, err := tr.Iteration([]layers.Batch{data, data}, 3e-3, 1234, uint64(it))
		require.NoError(t, err)
		require.False(t, math.IsNaN(r.Loss))
		losses = append(losses, r.Loss)
	}
	return losses
}

func TestLossFallsOnRepeatedCorpus(t *testing.T) {
	losses := runSteps(t, tinyLlama(0), 30)
	t.Logf("losses: first %.4f, last %.4f", losses[0], losses[len(losses)-1])
	require.InDelta(t, math.Log(256), losses[0], 0.5, "an untrained model is near uniform")
	require.Less(t, losses[len(losses)-1], 0.5*losses[0], "loss should fall on a memorisable corpus")
}

func TestTrainingIsDeterministic(t *testing.T) {
	a := runSteps(t, tinyLlama(0.1), 5)
	b := runSteps(t, tinyLlama(0.1), 5)
	require.Equal(t, a, b, "same seed, same losses bit for bit (dropout included)")
}
