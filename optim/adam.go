// Package optim holds the optimizers and their companions: AdamW with Megatron's parameter
// groups, gradient-norm clipping and (with data parallelism) the distributed optimizer.
package optim

import (
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// AdamConfig carries Megatron's optimizer flags.
type AdamConfig struct {
	Beta1       float64 `name:"adam-beta1" default:"0.9" help:"Adam β1."`
	Beta2       float64 `name:"adam-beta2" default:"0.999" help:"Adam β2."`
	Eps         float64 `name:"adam-eps" default:"1e-08" help:"Adam ε."`
	WeightDecay float64 `name:"weight-decay" default:"0.01" help:"Decoupled weight decay (not applied to biases and norms)."`
	ClipGrad    float64 `name:"clip-grad" default:"1.0" help:"Clip the global gradient norm to this value (0 disables)."`
}

// DefaultAdam returns Megatron's defaults.
func DefaultAdam() AdamConfig {
	return AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, ClipGrad: 1}
}

// Adam is AdamW over a model's parameters with Megatron's two groups: weight decay for
// matrices, none for biases and norm weights (wd_mult 0).
type Adam struct {
	Cfg    AdamConfig
	be     kernels.Backend
	params layers.Params
	m, v   []*tensor.Tensor
	step   int
}

// NewAdam allocates the moment buffers (zero) for every parameter.
func NewAdam(be kernels.Backend, params layers.Params, cfg AdamConfig) *Adam {
	a := &Adam{Cfg: cfg, be: be, params: params}
	for _, p := range params {
		a.m = append(a.m, be.Alloc(tensor.F32, p.Data.Shape()...))
		a.v = append(a.v, be.Alloc(tensor.F32, p.Data.Shape()...))
	}
	return a
}

// Steps is the number of updates taken.
func (a *Adam) Steps() int { return a.step }

// GradNorm is Megatron's global L2 norm of the gradients: params marked Shared (copies of a
// weight owned elsewhere) are left out.
func GradNorm(be kernels.Backend, params layers.Params) float64 {
	var ss float64
	for _, p := range params {
		if !p.Shared {
			ss += be.SumSquares(p.Grad)
		}
	}
	return math.Sqrt(ss)
}

// Step clips the gradients to Cfg.ClipGrad (coefficient clip/(norm+1e-6), applied only when
// below 1), applies one AdamW update with learning rate lr and returns the pre-clip norm.
// A non-finite norm skips the update and returns the norm, as Megatron counts a nan iteration.
func (a *Adam) Step(lr float64) (gradNorm float64) {
	norm := GradNorm(a.be, a.params)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	if a.Cfg.ClipGrad > 0 {
		if c := a.Cfg.ClipGrad / (norm + 1e-6); c < 1 {
			for _, p := range a.params {
				a.be.Scale(p.Grad, float32(c))
			}
		}
	}
	a.step++
	for i, p := range a.params {
		wd := a.Cfg.WeightDecay
		if p.NoWeightDecay {
			wd = 0
		}
		a.be.AdamW(p.Data, p.Grad, a.m[i], a.v[i], kernels.AdamParams{
			LR: float32(lr), Beta1: float32(a.Cfg.Beta1), Beta2: float32(a.Cfg.Beta2),
			Eps: float32(a.Cfg.Eps), WeightDecay: float32(wd), Step: a.step,
		})
	}
	if a.Cfg.ClipGrad == 0 {
		return 0 // Megatron logs 0.0 when clipping is off
	}
	return norm
}

// ZeroGrads clears every gradient.
func ZeroGrads(be kernels.Backend, params layers.Params) {
	for _, p := range params {
		be.Fill(p.Grad, 0)
	}
}
