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

// Cache blocks, tuned on Zen 4 (1 MB L2 per core) by thread CPU time: kc = 512 halves the
// passes over C against 256 (3% on k ≤ 1024 shapes); the packed A block (mc×kc: 384 KB
// for AVX-512, 192 KB for AVX2, which also runs on 256 KB-L2 cores) stays in L2.
var (
	gemmAVX512 = &gemmKernel{name: "avx512-12x32", mr: 12, nr: 32, mc: 192, kc: 512, nc: 2048, fn: sgemmKernelAVX512, asmPack: true}
	gemmAVX2   = &gemmKernel{name: "avx2-6x16", mr: 6, nr: 16, mc: 96, kc: 512, nc: 2048, fn: sgemmKernelAVX2, asmPack: true}
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

// gemmTransposeAVX sets dst[p·w + i] = src[i·ld + p] for i < n, p < 8·kc8, in 8×8 (and a
// final 4×8) register transposes; n must be a multiple of 4.
//
//go:noescape
func gemmTransposeAVX(dst *float32, w int, src *float32, ld int, n int, kc8 int)

// gemmCopyRowsAVX sets dst[p·w + i] = src[p·ld + i] for i < n, p < kc; n is 12, 16 or 32
// (other n copy nothing).
//
//go:noescape
func gemmCopyRowsAVX(dst *float32, w int, src *float32, ld int, n int, kc int)

// gemmPackRowsAsm is gemmPackLanesFromRows without the zero padding when n suits
// gemmCopyRowsAVX, and reports whether it ran. The index expressions check the bounds the
// assembly relies on.
func gemmPackRowsAsm(dst []float32, w int, src []float32, ld, r0, kc, c0, n int) bool {
	if (n != 12 && n != 16 && n != 32) || kc == 0 {
		return false
	}
	_ = src[(r0+kc-1)*ld+c0+n-1]
	_ = dst[(kc-1)*w+n-1]
	gemmCopyRowsAVX(&dst[0], w, &src[r0*ld+c0], ld, n, kc)
	return true
}

// gemmPackColsAsm does the part of gemmPackLanesFromCols that gemmTransposeAVX can, the
// first rows = n&^3 rows and cols = kc&^7 columns, and returns those counts.
func gemmPackColsAsm(dst []float32, w int, src []float32, ld, r0, n, c0, kc int) (rows, cols int) {
	rows, cols = n&^3, kc&^7
	if rows == 0 || cols == 0 {
		return 0, 0
	}
	_ = src[(r0+rows-1)*ld+c0+cols-1]
	_ = dst[(cols-1)*w+rows-1]
	gemmTransposeAVX(&dst[0], w, &src[r0*ld+c0], ld, rows, cols/8)
	return rows, cols
}
