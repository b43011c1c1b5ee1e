//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

//go:generate go run gemm_asmgen.go

// Assembly micro-kernels (gemm_amd64.s, written by gemm_asmgen.go); see gemmKernel for
// the contract.
//
// The AVX-512 kernel keeps a 12×32 tile of C in 24 zmm registers: per p it loads two
// vectors of packed B, broadcasts each of the 12 packed A values and issues 24 FMAs, so
// loads stay well below the FMA rate. The AVX2 kernel is the same at 6×16 in 12 ymm
// registers.

//go:noescape
func sgemmKernelAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

var (
	gemmAVX512 = &gemmKernel{name: "avx512-12x32", mr: 12, nr: 32, mc: 192, kc: 256, nc: 4096, fn: sgemmKernelAVX512}
	gemmAVX2   = &gemmKernel{name: "avx2-6x16", mr: 6, nr: 16, mc: 96, kc: 256, nc: 4096, fn: sgemmKernelAVX2}
)

// gemmDefaultKernel is the fastest kernel this CPU runs, chosen once at start-up.
var gemmDefaultKernel = func() *gemmKernel {
	switch {
	case cpu.X86.HasAVX512F:
		return gemmAVX512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		return gemmAVX2
	}
	return gemmGeneric
}()

// gemmKernels lists every kernel this CPU can run, for tests and benchmarks.
func gemmKernels() []*gemmKernel {
	ks := []*gemmKernel{gemmGeneric}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, gemmAVX2)
	}
	if cpu.X86.HasAVX512F {
		ks = append(ks, gemmAVX512)
	}
	return ks
}
