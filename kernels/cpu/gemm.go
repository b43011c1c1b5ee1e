// Package cpu is the reference backend: plain Go (plus assembly micro-kernels where speed
// demands), fp32 accumulation, parallel over goroutines.
package cpu

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// gemmThreads is the thread count set by SetGemmThreads (0: runtime.GOMAXPROCS(0)). It is
// the one piece of mutable package state of the GEMM: a process-wide knob like
// OPENBLAS_NUM_THREADS, read atomically on every call.
var gemmThreads atomic.Int64

// SetGemmThreads sets how many goroutines one Sgemm call may use; n ≤ 0 means
// runtime.GOMAXPROCS(0) at call time. It is safe to call at any time, also while Sgemm
// runs on other goroutines (running calls keep the count they started with).
func SetGemmThreads(n int) {
	if n < 0 {
		n = 0
	}
	gemmThreads.Store(int64(n))
}

// gemmThreadCount returns the thread count an Sgemm call starting now uses.
func gemmThreadCount() int {
	if n := int(gemmThreads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices, op(X) = Xᵀ when the
// trans flag is set; op(A) is m×k, op(B) is k×n, C is m×n, and lda/ldb/ldc are row strides.
// With beta = 0, C is overwritten (NaNs in C do not propagate).
//
// Reference loop (what every path computes, up to fp32 summation order):
//
//	for i < m, j < n:  C[i,j] = alpha·Σ_{p<k} op(A)[i,p]·op(B)[p,j] + beta·C[i,j]
//
// The work is a Goto/BLIS blocked GEMM (see gemm_block.go): panels of op(A) and op(B) are
// packed into cache-sized contiguous buffers and a register-blocked micro-kernel (AVX-512 or
// AVX2/FMA assembly on amd64, chosen at run time; portable Go elsewhere) runs over them on
// up to SetGemmThreads goroutines. The result does not depend on the thread count: each
// element's summation order is fixed by the block sizes alone.
//
// Sgemm is safe for concurrent use. Packing buffers are pooled, so a call does not allocate
// once the pool is warm. Shape or stride errors are programming errors and panic with the
// argument at fault, as in reference BLAS.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(gemmDefaultKernel, gemmThreadCount(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmWith is Sgemm on the given micro-kernel with up to threads goroutines: tests use it
// to force the portable kernel or a thread count, and code already running in parallel
// (attention) calls it with threads = 1. It checks the arguments like Sgemm, since the
// assembly kernels write C through raw pointers.
func sgemmWith(kern *gemmKernel, threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmCheckArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		sgemmScaleC(m, n, beta, c, ldc)
		return
	}
	g := gemmArgs{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	sgemmBlocked(kern, threads, &g)
}

// sgemmScaleC sets C = beta·C (C = 0 when beta = 0, so NaNs do not propagate).
func sgemmScaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// sgemmCheckArgs panics, naming the argument, when the shapes, strides or slice lengths are
// inconsistent: stored A is m×k (k×m when transposed), stored B is k×n (n×k), C is m×n.
func sgemmCheckArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cpu.Sgemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	gemmCheckMat("A", ar, ac, a, lda)
	gemmCheckMat("B", br, bc, b, ldb)
	gemmCheckMat("C", m, n, c, ldc)
}

// gemmCheckMat checks that x holds a rows×cols row-major matrix with row stride ld.
func gemmCheckMat(name string, rows, cols int, x []float32, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("cpu.Sgemm: ld%s=%d < %d columns of stored %s", gemmArgName(name), ld, cols, name))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("cpu.Sgemm: len(%s)=%d < %d needed for %d×%d with ld%s=%d",
			gemmArgName(name), len(x), need, rows, cols, gemmArgName(name), ld))
	}
}

func gemmArgName(s string) string {
	switch s {
	case "A":
		return "a"
	case "B":
		return "b"
	}
	return "c"
}
