package train

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestMicrobatchesMatchMegatron: two iterations of two microbatches each, one of them with
// a quarter of its labels masked, give Megatron-LM's losses (Σ loss / Σ tokens), gradient
// norms and parameters, with each microbatch's token mean averaged over the microbatches
// (Megatron's default) and with --calculate-per-token-loss (the gradient of Σ loss / Σ
// tokens over the batch). The references are Megatron's own DDP, finalize_model_grads and
// fp32 Adam on ckpt/megatron's dense fixture (ckpt/megatron/testdata/megatron_forward.py
// with MICRO=2 and PER_TOKEN=1).
func TestMicrobatchesMatchMegatron(t *testing.T) {
	fixture := filepath.Join("..", "ckpt", "megatron", "testdata", "torch_dist", "dense")
	for name, perToken := range map[string]bool{"megatron_steps_micro2.pt": false, "megatron_steps_micro2_per_token.pt": true} {
		t.Run(name, func(t *testing.T) {
			be := cpu.New()
			m, _, err := megatron.LoadModel(be, filepath.Join(fixture, "torch_dist"))
			require.NoError(t, err)
			opt := optim.NewAdam(be, m.Params, optim.AdamConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipGrad: 1}, false, optim.Groups{})
			v, err := torchpickle.Load(filepath.Join(fixture, name))
			require.NoError(t, err)
			ref := v.(*torchpickle.Dict)
			list := func(k string) []any { x, ok := ref.Get(k); require.True(t, ok, k); return x.([]any) }
			tokens, labels, masks, losses, norms := list("tokens"), list("labels"), list("loss_mask"), list("loss"), list("grad_norm")
			b, s := tokens[0].(*tensor.Tensor).Dim(0), tokens[0].(*tensor.Tensor).Dim(1)
			tr := NewTrainer(be, m, nil, opt, s, b)
			tr.PerTokenLoss = perToken
			const micro = 2
			require.Len(t, tokens, micro*len(losses))
			for i := range losses {
				var batches []layers.Batch
				for j := range micro {
					k := i*micro + j
					batches = append(batches, layers.Batch{Tokens: tokens[k].(*tensor.Tensor).I64(), Labels: labels[k].(*tensor.Tensor).I64(),
						LossMask: masks[k].(*tensor.Tensor).F32()})
				}
				res, err := tr.Iteration(batches, 1e-3, 0, uint64(i+1))
				require.NoError(t, err)
				wantLoss, _ := torchpickle.AsFloat64(losses[i])
				wantNorm, _ := torchpickle.AsFloat64(norms[i])
				require.InDelta(t, wantLoss, res.Loss, 2e-5*wantLoss, "step %d loss", i+1)
				require.InDelta(t, wantNorm, res.GradNorm, 3e-4*wantNorm, "step %d grad norm", i+1)
			}
			params, _ := ref.Get("params")
			for _, p := range m.Params {
				x, ok := params.(*torchpickle.Dict).Get(p.Name)
				require.True(t, ok, p.Name)
				got, want := p.Data.ToF32(), x.(*tensor.Tensor).ToF32()
				var num, den float64
				for i := range want {
					d := float64(got[i] - want[i])
					num, den = num+d*d, den+float64(want[i])*float64(want[i])
				}
				require.LessOrEqual(t, num, 25e-10*den, "%s after the steps (relative L2 error ≤ 5e-5)", p.Name)
			}
		})
	}
}
