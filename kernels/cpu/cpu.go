package cpu

import (
	"fmt"
	"sync"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Backend is the CPU implementation of kernels.Backend. Every op computes in float32
// (float64 where a doc comment says so), splits its rows over goroutines with a fixed,
// thread-count-independent summation order, so results are bitwise reproducible.
//
// Scratch: kernels.Backend's ops take no workspace arguments, so the few that need one
// (attention's score blocks and D_i, BF16/F16 GEMM operands widened to F32, SumExp's row
// of exponentials, float64 column sums, partial maxima and sums) take it from pools owned
// by the Backend, as do BF16 activations (widened to F32 and run through the F32 code,
// see bf16.go); after warm-up no op allocates buffers (a call still allocates its
// closure and goroutines, a few small objects). Tensors returned by Alloc are plain
// host tensors.
//
// A Backend is safe for concurrent use. Its only state is those pools and a cache of RoPE
// tables; both are private to the value, so there is no package-level mutable state.
type Backend struct {
	scratch   sync.Pool // *scratchBuf: float32 scratch
	scratch64 sync.Pool // *scratch64Buf: float64 column accumulators

	ropeMu sync.RWMutex
	rope   map[ropeKey]*ropeTable
}

var _ kernels.Backend = (*Backend)(nil)

// New returns a CPU backend.
func New() *Backend {
	return &Backend{rope: map[ropeKey]*ropeTable{}}
}

// Name is "cpu".
func (*Backend) Name() string { return "cpu" }

// Device is the host.
func (*Backend) Device() tensor.Device { return tensor.Device{Type: tensor.CPU} }

// Alloc returns a zeroed host tensor.
func (*Backend) Alloc(dt tensor.DType, shape ...int) *tensor.Tensor { return tensor.New(dt, shape...) }

// Upload copies src's bytes into dst; both live on the host here.
func (*Backend) Upload(dst, src *tensor.Tensor) { hostCopy("Upload", dst, src) }

// Download copies src's bytes into dst; both live on the host here.
func (*Backend) Download(dst, src *tensor.Tensor) { hostCopy("Download", dst, src) }

// Sync is a no-op: CPU ops complete before they return.
func (*Backend) Sync() {}

func hostCopy(op string, dst, src *tensor.Tensor) {
	if dst.DType() != src.DType() || dst.Numel() != src.Numel() {
		panic(fmt.Sprintf("cpu.%s: dst %v and src %v differ in dtype or size", op, dst, src))
	}
	copy(dst.Data, src.Data)
}

// scratchBuf is a reusable float32 buffer; get returns it grown to at least n elements.
type scratchBuf struct{ v []float32 }

type scratch64Buf struct{ v []float64 }

// getScratch returns a pooled float32 buffer of length n (contents undefined); release it
// with putScratch when done.
func (b *Backend) getScratch(n int) *scratchBuf {
	s, _ := b.scratch.Get().(*scratchBuf)
	if s == nil {
		s = &scratchBuf{}
	}
	if cap(s.v) < n {
		s.v = make([]float32, n)
	}
	s.v = s.v[:n]
	return s
}

func (b *Backend) putScratch(s *scratchBuf) { b.scratch.Put(s) }

// getScratch64 returns a pooled, zeroed float64 buffer of length n.
func (b *Backend) getScratch64(n int) *scratch64Buf {
	s, _ := b.scratch64.Get().(*scratch64Buf)
	if s == nil {
		s = &scratch64Buf{}
	}
	if cap(s.v) < n {
		s.v = make([]float64, n)
	}
	s.v = s.v[:n]
	clear(s.v)
	return s
}

func (b *Backend) putScratch64(s *scratch64Buf) { b.scratch64.Put(s) }

// f32 returns t's float32 storage, panicking with the op's name when t is not an F32 host
// tensor.
func f32(op string, t *tensor.Tensor) []float32 {
	if t.DType() != tensor.F32 || t.Device.Type != tensor.CPU {
		panic(fmt.Sprintf("cpu.%s: want an F32 host tensor, got %v", op, t))
	}
	return t.F32()
}

// sameShape panics unless every tensor has a's shape.
func sameShape(op string, a *tensor.Tensor, others ...*tensor.Tensor) {
	for _, o := range others {
		if !tensor.SameShape(a.Shape(), o.Shape()) {
			panic(fmt.Sprintf("cpu.%s: shape mismatch %v vs %v", op, a, o))
		}
	}
}

// rowsCols views t as [N, last dim].
func rowsCols(t *tensor.Tensor) (n, f int) {
	if t.Rank() == 0 {
		return 1, 1
	}
	f = t.Dim(-1)
	if f == 0 {
		return 0, 0
	}
	return t.Numel() / f, f
}

// wantNumel panics unless t has n elements.
func wantNumel(op, name string, t *tensor.Tensor, n int) {
	if t.Numel() != n {
		panic(fmt.Sprintf("cpu.%s: %s %v must have %d elements", op, name, t, n))
	}
}

// indices returns a reader of an I64 or I32 index tensor.
func indices(op string, t *tensor.Tensor) func(i int) int64 {
	switch t.DType() {
	case tensor.I64:
		v := t.I64()
		return func(i int) int64 { return v[i] }
	case tensor.I32:
		v := t.I32()
		return func(i int) int64 { return int64(v[i]) }
	}
	panic(fmt.Sprintf("cpu.%s: ids/targets must be I64 or I32, got %v", op, t))
}
