package cpu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// gemmBenchShapes are the shapes reported in docs/perf: a square GEMM and a training-sized
// one (tokens × hidden·4 × hidden).
var gemmBenchShapes = [][3]int{{1024, 1024, 1024}, {4096, 4096, 1024}}

var gemmBenchTrans = []struct {
	name           string
	transA, transB bool
}{{"NN", false, false}, {"NT", false, true}, {"TN", true, false}, {"TT", true, true}}

// gemmBenchThreads is the thread count benchmarks use: $GOMEGATRON_GEMM_THREADS, else 2
// (the count the docs/perf reports compare with OpenBLAS at).
func gemmBenchThreads() int {
	if n, err := strconv.Atoi(os.Getenv("GOMEGATRON_GEMM_THREADS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// gemmBenchOperands returns random stored A, B and a C for shape (m, n, k), packed.
func gemmBenchOperands(m, n, k int) (a, b, c []float32) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b, c = make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = rng.Float32() - 0.5
	}
	for i := range b {
		b[i] = rng.Float32() - 0.5
	}
	return a, b, c
}

// BenchmarkSgemm measures Sgemm (C = A·B, beta 0) per shape and transpose combination on
// gemmBenchThreads goroutines and reports GFLOP/s (2·m·n·k flops per call).
func BenchmarkSgemm(b *testing.B) {
	threads := gemmBenchThreads()
	for _, s := range gemmBenchShapes {
		m, n, k := s[0], s[1], s[2]
		a, bm, c := gemmBenchOperands(m, n, k)
		for _, tr := range gemmBenchTrans {
			lda, ldb := k, n
			if tr.transA {
				lda = m
			}
			if tr.transB {
				ldb = k
			}
			b.Run(fmt.Sprintf("m%dn%dk%d/%s/t%d", m, n, k, tr.name, threads), func(b *testing.B) {
				SetGemmThreads(threads)
				defer SetGemmThreads(0)
				Sgemm(tr.transA, tr.transB, m, n, k, 1, a, lda, bm, ldb, 0, c, n) // warm the pools
				b.ResetTimer()
				for b.Loop() {
					Sgemm(tr.transA, tr.transB, m, n, k, 1, a, lda, bm, ldb, 0, c, n)
				}
				b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
