package cuda

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Backend is the CUDA implementation of kernels.Backend on one Device: NVRTC-compiled
// kernels from kernels/cuda/src for every op, cuBLASLt for GEMM. Ops are queued on the
// device's stream in call order; Download and Sync wait.
//
// Errors: kernels.Backend's methods return nothing, so a failed CUDA call (or a tensor of
// the wrong dtype, shape or device) panics with an *Error or a message naming the op;
// a failed GPU launch leaves the context unusable anyway. Tensors come from the device's
// arena: Alloc takes, Free returns.
type Backend struct {
	dev  *Device
	TF32 bool // F32 GEMMs on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); off by default
	// FlashAttention runs Attention and AttentionBackward on the tensor cores (FlashAttention-2
	// tiling, bf16 products, f32 softmax and sums) for head dims that are multiples of 16 up
	// to 128; off by default (then, and for other head dims, the simple kernels run, in F32).
	FlashAttention bool
	// NoFastFP8Accum turns cuBLASLt's fast FP8 accumulation off in the GEMMs that ask for it
	// (the forward GEMMs, as Transformer Engine does): slower, with full F32 accumulation.
	NoFastFP8Accum bool
	// flashWide picks the forward and dq flash kernels with 128 query rows per block for
	// head dims up to 64 (GOMEGATRON_FLASH_WIDE=1; a measurement switch until it wins or goes).
	flashWide bool
	// flashPipe picks the BF16 flash kernels with cp.async double buffering and ldmatrix
	// fragments for head dims up to 64 (GOMEGATRON_FLASH_PIPE=1; not yet measured on a GPU).
	flashPipe bool

	lt       uintptr // cublasLtHandle_t
	ws       uintptr // cuBLASLt workspace
	wsBytes  uintptr
	plans    map[matmulSpec]*plan
	scratch  uintptr // small per-op scratch (amax, sums, ALiBi slopes), device
	scratchN uintptr
	rope     map[ropeKey]ropeTable
	stub     []byte // PROT_NONE address space: length-only backing for device tensor headers
	inline   bool   // a bound view: ops run on the caller's thread (Bind)
}

var _ kernels.Backend = (*Backend)(nil)

type ropeKey struct {
	base    float64
	dim     int
	interp  float64
	scaling kernels.RoPEScaling
}

type ropeTable struct {
	n        int
	cos, sin uintptr
}

const (
	scratchBytes = 1 << 20
	stubBytes    = 1 << 42 // the largest device tensor a header can describe (4 TiB)
)

// New opens GPU o.Index with the process's libraries (LoadFromEnv) and returns its backend.
func New(o Options) (*Backend, error) {
	libs, err := LoadFromEnv()
	if err != nil {
		return nil, err
	}
	return NewOn(libs, o)
}

// NewOn is New with explicitly loaded libraries.
func NewOn(libs *Libraries, o Options) (*Backend, error) {
	dev, err := OpenDevice(libs, o)
	if err != nil {
		return nil, err
	}
	b := &Backend{dev: dev, plans: map[matmulSpec]*plan{}, rope: map[ropeKey]ropeTable{}, flashWide: os.Getenv("GOMEGATRON_FLASH_WIDE") == "1",
		flashPipe: os.Getenv("GOMEGATRON_FLASH_PIPE") == "1"}
	b.wsBytes = uintptr(o.WorkspaceBytes)
	if b.wsBytes == 0 {
		b.wsBytes = 32 << 20
	}
	err = dev.Do(func() error {
		lt := libs.lt
		if err := cublasCheck("cublasLtCreate", lt.cublasLtCreate.Status(addr(&b.lt)), ""); err != nil {
			return err
		}
		var err error
		if b.ws, err = dev.arena.Alloc(b.wsBytes); err != nil {
			return fmt.Errorf("cuBLASLt workspace of %d MiB (Options.WorkspaceBytes): %w", b.wsBytes>>20, err)
		}
		b.scratchN = scratchBytes
		b.scratch, err = dev.arena.Alloc(b.scratchN)
		return err
	})
	if err != nil {
		dev.Close()
		return nil, err
	}
	// Device tensors need a shape; tensor.FromBytes is the only public constructor that
	// takes one, so headers borrow a length from a reserved, inaccessible mapping.
	b.stub, err = syscall.Mmap(-1, 0, stubBytes, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("cuda: reserving address space for tensor headers: %w", err)
	}
	return b, nil
}

// Device returns the backend's GPU.
func (b *Backend) GPU() *Device { return b.dev }

// MemoryStats reports the device arena: bytes allocated now and at most, its size as both
// reserved figures (it is reserved once, at start-up), and its live allocations.
func (b *Backend) MemoryStats() kernels.MemoryStats {
	var m kernels.MemoryStats
	b.run(func() error {
		a := b.dev.arena
		m = kernels.MemoryStats{Allocated: uint64(a.InUse()), MaxAllocated: uint64(a.Peak()),
			Reserved: uint64(a.Size()), MaxReserved: uint64(a.Size()), Allocations: a.Live()}
		return nil
	})
	return m
}

// Close destroys the cuBLASLt handle and closes the device.
func (b *Backend) Close() error {
	_ = b.dev.Do(func() error {
		lt := b.dev.libs.lt
		for _, p := range b.plans {
			lt.destroyPlan(p)
		}
		lt.cublasLtDestroy.Status(b.lt)
		return nil
	})
	if b.stub != nil {
		_ = syscall.Munmap(b.stub)
	}
	return b.dev.Close()
}

// Name is "cuda".
func (b *Backend) Name() string { return "cuda" }

// Device is cuda:<index>.
func (b *Backend) Device() tensor.Device { return tensor.Device{Type: tensor.CUDA, Index: b.dev.Index} }

// Wrap makes a device tensor header for n bytes at ptr (memory the caller owns).
func (b *Backend) Wrap(dt tensor.DType, ptr uintptr, shape ...int) *tensor.Tensor {
	n := dt.Size()
	for _, s := range shape {
		n *= s
	}
	if n > len(b.stub) {
		panic(fmt.Sprintf("cuda: tensor of %v%v is larger than %d bytes", dt, shape, len(b.stub)))
	}
	t, err := tensor.FromBytes(dt, shape, b.stub[:n])
	if err != nil {
		panic(err)
	}
	t.Data = nil
	t.Device = b.Device()
	t.Ptr = ptr
	return t
}

// Alloc returns a zeroed tensor from the arena.
func (b *Backend) Alloc(dt tensor.DType, shape ...int) *tensor.Tensor {
	t := b.Wrap(dt, 0, shape...)
	must(b.dev.Do(func() error {
		p, err := b.dev.arena.Alloc(uintptr(t.Bytes()))
		if err != nil {
			return fmt.Errorf("cuda.Alloc %v%v: %w", dt, shape, err)
		}
		t.Ptr = p
		return b.dev.memset8(p, 0, t.Bytes())
	}))
	return t
}

// Free returns t's storage (from Alloc) to the arena.
func (b *Backend) Free(t *tensor.Tensor) error {
	b.mustDev("Free", t)
	return b.dev.Free(t.Ptr)
}

// Upload copies host src into device dst (same dtype and element count).
func (b *Backend) Upload(dst, src *tensor.Tensor) {
	b.mustDev("Upload", dst)
	if src.Device.Type != tensor.CPU || src.DType() != dst.DType() || src.Numel() != dst.Numel() {
		panic(fmt.Sprintf("cuda.Upload: dst %v and src %v differ in dtype or size, or src is not on the host", dst, src))
	}
	must(b.dev.Upload(dst.Ptr, src.Data))
}

// Download copies device src into host dst, waiting for queued work.
func (b *Backend) Download(dst, src *tensor.Tensor) {
	b.mustDev("Download", src)
	if dst.Device.Type != tensor.CPU || src.DType() != dst.DType() || src.Numel() != dst.Numel() {
		panic(fmt.Sprintf("cuda.Download: dst %v and src %v differ in dtype or size, or dst is not on the host", dst, src))
	}
	must(b.dev.Download(dst.Data, src.Ptr))
}

// Sync waits for all queued work.
func (b *Backend) Sync() { must(b.dev.Sync()) }

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func (b *Backend) mustDev(op string, ts ...*tensor.Tensor) {
	for _, t := range ts {
		if t == nil || t.Device.Type != tensor.CUDA || t.Device.Index != b.dev.Index || (t.Ptr == 0 && t.Numel() > 0) {
			panic(fmt.Sprintf("cuda.%s: %v is not a tensor on cuda:%d", op, t, b.dev.Index))
		}
	}
}

// f32 checks that every tensor is an F32 tensor on this device.
func (b *Backend) f32(op string, ts ...*tensor.Tensor) {
	b.mustDev(op, ts...)
	for _, t := range ts {
		if t.DType() != tensor.F32 {
			panic(fmt.Sprintf("cuda.%s: want an F32 tensor, got %v", op, t))
		}
	}
}

// acts checks the activation operands of op (kernels' "BF16 activations"): tensors on this
// device, all F32 or all BF16. It returns their dtype, which picks the kernel (sfx).
func (b *Backend) acts(op string, ts ...*tensor.Tensor) tensor.DType {
	b.mustDev(op, ts...)
	dt := ts[0].DType()
	for _, t := range ts {
		if t.DType() != dt || (dt != tensor.F32 && dt != tensor.BF16) {
			s := make([]string, len(ts))
			for i, t := range ts {
				s[i] = t.String()
			}
			panic(fmt.Sprintf("cuda.%s: activations must be all F32 or all BF16, got %s", op, strings.Join(s, ", ")))
		}
	}
	return dt
}

// sfx is the kernel-name suffix of activation dtype dt (F32 or BF16, from acts).
func sfx(dt tensor.DType) string {
	if dt == tensor.BF16 {
		return "_bf16"
	}
	return "_f32"
}

func sameShape(op string, a *tensor.Tensor, others ...*tensor.Tensor) {
	for _, o := range others {
		if !tensor.SameShape(a.Shape(), o.Shape()) {
			panic(fmt.Sprintf("cuda.%s: shape mismatch %v vs %v", op, a, o))
		}
	}
}

func wantNumel(op, name string, t *tensor.Tensor, n int) {
	if t.Numel() != n {
		panic(fmt.Sprintf("cuda.%s: %s %v must have %d elements", op, name, t, n))
	}
}

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

const blockSize = 256

// grid1D is the block count of a grid-stride loop over n elements: enough blocks to fill
// the GPU (32 per SM), never more than the elements need.
func (b *Backend) grid1D(n int) int {
	if n <= 0 {
		return 0
	}
	return min((n+blockSize-1)/blockSize, 32*max(b.dev.SMs, 1))
}

// run executes f on the device thread (or inline for a bound view) and panics on error.
func (b *Backend) run(f func() error) {
	if b.inline {
		b.dev.mu.Lock()
		defer b.dev.mu.Unlock()
		must(f())
		return
	}
	must(b.dev.Do(f))
}

// Bind makes the device's context current on the calling goroutine's OS thread and
// returns a view of b whose kernel launches and GEMMs run right there, without the
// hand-off to the device thread (BenchmarkDispatch: the hand-off costs several µs an op).
// The contract: the caller has called runtime.LockOSThread, and uses the view from that
// goroutine only; launches from the view and from the device thread are serialised by a
// mutex and go to the same stream, so both may be used. Transfers, Alloc and Free still go
// through the device thread. Close the original Backend, not the view.
func (b *Backend) Bind() (*Backend, error) {
	d := b.dev
	d.mu.Lock()
	err := d.drv().check("cuCtxSetCurrent", d.drv().cuCtxSetCurrent.Status(d.ctx), "Bind")
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	v := *b
	v.inline = true
	return &v, nil
}

// elem launches a grid-stride kernel over n elements.
func (b *Backend) elem(kernel string, n int, args ...any) {
	b.run(func() error { return b.dev.launch(kernel, b.grid1D(n), blockSize, 0, args...) })
}

func bool32(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

// idsKind checks an index tensor (I64 or I32) and returns the kernels' is64 flag.
func (b *Backend) idsKind(op string, t *tensor.Tensor) int32 {
	b.mustDev(op, t)
	switch t.DType() {
	case tensor.I64:
		return 1
	case tensor.I32:
		return 0
	}
	panic(fmt.Sprintf("cuda.%s: ids/targets must be I64 or I32, got %v", op, t))
}
