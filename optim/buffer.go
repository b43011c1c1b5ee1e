package optim

import (
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Layout is Megatron's grad-buffer layout (param_and_grad_buffer.py) for one bucket:
// parameters in reverse registration order, each start padded to a multiple of 64
// elements, and the end padded to a multiple of lcm(DP, 128) so the buffer splits evenly
// into data-parallel shards.
type Layout struct {
	Offsets []int // start of each param (registration order) in the buffer
	Numel   int   // padded buffer length
}

// NewLayout lays out params for a data-parallel group of dp ranks.
func NewLayout(params layers.Params, dp int) Layout {
	const align = 64
	l := Layout{Offsets: make([]int, len(params))}
	n := 0
	for i := len(params) - 1; i >= 0; i-- {
		n = (n + align - 1) / align * align
		l.Offsets[i] = n
		n += params[i].Numel()
	}
	pad := lcm(max(dp, 1), 128)
	l.Numel = (n + pad - 1) / pad * pad
	return l
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int) int { return a / gcd(a, b) * b }

// Buffers are the contiguous parameter and gradient buffers every Param's Data and Grad
// view, so data-parallel reduction and the distributed optimizer's gathers are single
// collectives over them.
type Buffers struct {
	Layout      Layout
	Param, Grad *tensor.Tensor // [Layout.Numel] F32
}

// Attach moves every parameter's values into one contiguous buffer and gives it a gradient
// view into a second one, both with the same layout.
func Attach(be kernels.Backend, params layers.Params, dp int) *Buffers {
	l := NewLayout(params, dp)
	b := &Buffers{Layout: l, Param: be.Alloc(tensor.F32, l.Numel), Grad: be.Alloc(tensor.F32, l.Numel)}
	for i, p := range params {
		lo, hi := l.Offsets[i], l.Offsets[i]+p.Numel()
		data := b.Param.Slice(lo, hi).View(p.Data.Shape()...)
		be.Copy(data, p.Data)
		p.Data = data
		p.Grad = b.Grad.Slice(lo, hi).View(p.Data.Shape()...)
	}
	return b
}
