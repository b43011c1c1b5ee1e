package optim

import (
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Layout is Megatron's grad-buffer layout (param_and_grad_buffer.py): parameters in
// reverse registration order, each start padded to a multiple of 64 elements, grouped in
// buckets whose ends are padded to a multiple of lcm(DP, 128) so each splits evenly into
// data-parallel shards.
type Layout struct {
	Offsets []int // start of each param (registration order) in the buffer
	Numel   int   // padded buffer length
	Buckets []Bucket
	// Chunks are the bucket ranges [first, last) of each model chunk's buffer (virtual
	// pipeline stages: Megatron gives each chunk its own buffer; here they sit end to end).
	Chunks [][2]int
}

// Bucket is elements [Lo, Hi) of the buffer; its parameters end at End (Hi is End padded).
// An Expert bucket holds expert weights under expert parallelism, reduced and sharded over
// the expert-data-parallel group (Megatron's separate expert buffer).
type Bucket struct {
	Lo, End, Hi int
	Expert      bool
}

// NewLayout lays out params in one bucket for a data-parallel group of dp ranks.
func NewLayout(params layers.Params, dp int) Layout {
	return NewDistLayout(params, dp, 0, false, nil, 0)
}

// NewDistLayout is the distributed optimizer's layout: a bucket closes once it spans
// bucketSize elements (0: never; --overlap-grad-reduce sets it), and with separate a
// parameter marked SharedEmbedding gets a bucket of its own (Megatron splits the shared
// embedding out whenever the distributed optimizer is on). chunks, when set, are the
// parameter counts of consecutive model chunks, each laid out as its own buffer. With
// expertDP > 0 (expert parallelism) each chunk's expert weights (Param.Expert) follow its
// other parameters in buckets of their own (bucketSize applies), padded for expertDP
// shards.
func NewDistLayout(params layers.Params, dp, bucketSize int, separate bool, chunks []int, expertDP int) Layout {
	if chunks == nil {
		chunks = []int{len(params)}
	}
	l := Layout{Offsets: make([]int, len(params))}
	first := 0
	for _, n := range chunks {
		b := len(l.Buckets)
		l.layChunk(params[first:first+n], l.Offsets[first:first+n], dp, bucketSize, separate, expertDP)
		l.Chunks = append(l.Chunks, [2]int{b, len(l.Buckets)})
		first += n
	}
	return l
}

// layChunk appends one buffer's parameters and buckets, from l.Numel on.
func (l *Layout) layChunk(params layers.Params, offsets []int, dp, bucketSize int, separate bool, expertDP int) {
	const align = 64
	pad := lcm(max(dp, 1), 128)
	start, bucketLo, open, placed := l.Numel, l.Numel, false, false
	closeAt := func(end int) int {
		hi := (end + pad - 1) / pad * pad
		l.Buckets = append(l.Buckets, Bucket{Lo: bucketLo, End: end, Hi: hi})
		bucketLo, open, placed = hi, false, true
		return hi
	}
	var experts []int
	for i := len(params) - 1; i >= 0; i-- {
		p := params[i]
		if expertDP > 0 && p.Expert {
			experts = append(experts, i)
			continue
		}
		own := separate && p.SharedEmbedding
		start = (start + align - 1) / align * align
		if own && open {
			start = closeAt(start)
		}
		offsets[i], open = start, true
		end := start + p.Numel()
		if own || bucketSize > 0 && end-bucketLo >= bucketSize {
			start = closeAt(end)
		} else {
			start = end
		}
	}
	if open || !placed {
		start = closeAt(start)
	}
	// The expert weights: Megatron's separate expert buffer, bucketed by the same rule.
	epad := lcm(max(expertDP, 1), 128)
	lo := start
	for _, i := range experts {
		start = (start + align - 1) / align * align
		offsets[i] = start
		start += params[i].Numel()
		if bucketSize > 0 && start-lo >= bucketSize || i == experts[len(experts)-1] {
			hi := (start + epad - 1) / epad * epad
			l.Buckets = append(l.Buckets, Bucket{Lo: lo, End: start, Hi: hi, Expert: true})
			lo, start = hi, hi
		}
	}
	l.Numel = l.Buckets[len(l.Buckets)-1].Hi
}

// bucketOf is the index of the bucket holding buffer element off.
func (l Layout) bucketOf(off int) int {
	for b, k := range l.Buckets {
		if off < k.Hi {
			return b
		}
	}
	return len(l.Buckets) - 1
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
// view into a second one, both with the same layout (NewLayout).
func Attach(be kernels.Backend, params layers.Params, dp int) *Buffers {
	return AttachLayout(be, params, NewLayout(params, dp))
}

// AttachLayout is Attach with a given layout.
func AttachLayout(be kernels.Backend, params layers.Params, l Layout) *Buffers {
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
