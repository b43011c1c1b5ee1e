// Package train runs training: microbatches, schedules, the optimizer step, logging,
// evaluation and checkpoints.
package train

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// StepResult is what one iteration reports.
type StepResult struct {
	Loss     float64 // Σ loss / Σ tokens over the microbatches (Megatron's lm loss)
	GradNorm float64
	Tokens   float64
}

// Step runs one iteration on a single process: zero the grads, forward and backward every
// microbatch with the loss of each divided by its token count and by the number of
// microbatches (Megatron's scaling), then one optimizer update.
func Step(be kernels.Backend, m *layers.GPTModel, st *layers.Stash, opt *optim.Adam, micro []layers.Batch, lr float64, seed, iteration uint64) (StepResult, error) {
	optim.ZeroGrads(be, m.Params)
	var res StepResult
	var lossSum float64
	for i, mb := range micro {
		sum, n, err := m.Forward(st, mb, seed, iteration*uint64(len(micro))+uint64(i))
		if err != nil {
			return res, fmt.Errorf("microbatch %d: %w", i, err)
		}
		if n == 0 {
			continue
		}
		if err := m.Backward(st, float32(1/(n*float64(len(micro)))), nil); err != nil {
			return res, fmt.Errorf("microbatch %d backward: %w", i, err)
		}
		lossSum += sum
		res.Tokens += n
	}
	if res.Tokens == 0 {
		return res, fmt.Errorf("no token has a non-zero loss mask in this iteration")
	}
	res.Loss = lossSum / res.Tokens
	res.GradNorm = opt.Step(lr)
	return res, nil
}
