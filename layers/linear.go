package layers

import (
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Linear is y = x·Wᵀ + b with W [out, in] (nn.Linear, Megatron's Column/RowParallelLinear at
// TP=1). Bias is nil without --add-bias-linear.
type Linear struct {
	W, B    *Param
	In, Out int
}

func newLinear(ps *paramSet, name string, in, out int, bias bool, partitionDim int) *Linear {
	l := &Linear{In: in, Out: out}
	l.W = ps.add(name+".weight", partitionDim, out, in)
	if bias {
		bdim := -1
		if partitionDim == 0 { // column-parallel bias is split with the rows
			bdim = 0
		}
		l.B = ps.add(name+".bias", bdim, out)
	}
	return l
}

// Forward computes y [N, out] from x [N, in].
func (l *Linear) Forward(be kernels.Backend, y, x *tensor.Tensor) {
	n := x.Numel() / l.In
	be.Gemm(kernels.GemmParams{TransB: true, M: n, N: l.Out, K: l.In, Alpha: 1, Batch: 1}, x, l.W.Data, y)
	if l.B != nil {
		be.AddBias(y.View(n, l.Out), l.B.Data)
	}
}

// Backward accumulates dW += dyᵀ·x and db += Σ dy, and writes dx = dy·W when dx is non-nil.
func (l *Linear) Backward(be kernels.Backend, dx, dy, x *tensor.Tensor) {
	n := x.Numel() / l.In
	be.Gemm(kernels.GemmParams{TransA: true, M: l.Out, N: l.In, K: n, Alpha: 1, Beta: 1, Batch: 1}, dy, x, l.W.Grad)
	if l.B != nil {
		be.BiasGrad(l.B.Grad, dy.View(n, l.Out))
	}
	if dx != nil {
		be.Gemm(kernels.GemmParams{M: n, N: l.In, K: l.Out, Alpha: 1, Batch: 1}, dy, l.W.Data, dx)
	}
}

// Norm is LayerNorm or RMSNorm over the hidden dimension.
type Norm struct {
	W, B *Param // B is nil for RMSNorm
	Eps  float32
}

func newNorm(ps *paramSet, name string, cfg *Config, h int) *Norm {
	n := &Norm{Eps: float32(cfg.NormEpsilon)}
	n.W = ps.add(name+".weight", -1, h)
	n.W.SequenceParallel = true
	if cfg.Normalization == "LayerNorm" {
		n.B = ps.add(name+".bias", -1, h)
		n.B.SequenceParallel = true
	}
	return n
}

// normStash keeps what a norm's backward needs.
type normStash struct{ mean, rstd *tensor.Tensor }

func newNormStash(be kernels.Backend, rows int) normStash {
	return normStash{mean: be.Alloc(tensor.F32, rows), rstd: be.Alloc(tensor.F32, rows)}
}

// Forward normalises x [N, h] into out.
func (n *Norm) Forward(be kernels.Backend, out, x *tensor.Tensor, st normStash) {
	if n.B == nil {
		be.RMSNorm(out, st.rstd, x, n.W.Data, n.Eps)
		return
	}
	be.LayerNorm(out, st.mean, st.rstd, x, n.W.Data, n.B.Data, n.Eps)
}

// Backward writes dx and accumulates the weight (and bias) grads.
func (n *Norm) Backward(be kernels.Backend, dx, dout, x *tensor.Tensor, st normStash) {
	if n.B == nil {
		be.RMSNormBackward(dx, n.W.Grad, dout, x, n.W.Data, st.rstd)
		return
	}
	be.LayerNormBackward(dx, n.W.Grad, n.B.Grad, dout, x, n.W.Data, st.mean, st.rstd)
}

// initNormal fills a host-visible parameter with N(0, std²) from a deterministic source.
func initNormal(be kernels.Backend, p *Param, std float64, rng *splitMix) {
	host := tensor.New(tensor.F32, p.Data.Shape()...)
	v := host.F32()
	for i := range v {
		v[i] = float32(rng.normal() * std)
	}
	be.Upload(p.Data, host)
}
