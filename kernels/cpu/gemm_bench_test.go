package cpu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// gemmBenchCase is one benchmarked product C[m×n] = op(A)·op(B) with op given as "NN",
// "NT", "TN" or "TT".
type gemmBenchCase struct {
	m, n, k int
	op      string
}

func (c gemmBenchCase) String() string { return fmt.Sprintf("m%dn%dk%d/%s", c.m, c.n, c.k, c.op) }

func (c gemmBenchCase) trans() (transA, transB bool) { return c.op[0] == 'T', c.op[1] == 'T' }

// gemmBenchCases are the cases reported in docs/perf: a square GEMM and a large one in all
// four transpose combinations, then the GEMMs of one bench-llama training step (tokens
// 1024 = seq 256 × micro-batch 4, hidden 512, ffn 1376, vocab 32000, head dim 64):
// forward X·Wᵀ (NT), input gradient dY·W (NN), weight gradient dYᵀ·X (TN), and the
// per-head attention products.
var gemmBenchCases = func() []gemmBenchCase {
	var cs []gemmBenchCase
	for _, s := range [][3]int{{1024, 1024, 1024}, {4096, 4096, 1024}} {
		for _, op := range []string{"NN", "NT", "TN", "TT"} {
			cs = append(cs, gemmBenchCase{s[0], s[1], s[2], op})
		}
	}
	return append(cs,
		gemmBenchCase{1024, 1536, 512, "NT"},  // QKV projection forward
		gemmBenchCase{1024, 512, 1536, "NN"},  // its input gradient
		gemmBenchCase{1536, 512, 1024, "TN"},  // its weight gradient
		gemmBenchCase{1024, 2752, 512, "NT"},  // SwiGLU fc1 forward
		gemmBenchCase{1024, 512, 1376, "NT"},  // fc2 forward
		gemmBenchCase{1024, 32000, 512, "NT"}, // output logits
		gemmBenchCase{256, 256, 64, "NT"},     // attention scores Q·Kᵀ per head
		gemmBenchCase{256, 64, 256, "NN"},     // attention P·V per head
	)
}()

// gemmBenchThreads is the thread count benchmarks use: $GOMEGATRON_GEMM_THREADS, else 2
// (the count the docs/perf reports compare with OpenBLAS at).
func gemmBenchThreads() int {
	if n, err := strconv.Atoi(os.Getenv("GOMEGATRON_GEMM_THREADS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// gemmBenchOperands returns random stored A (m·k values), B (k·n) and a zero C (m·n).
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

// gemmBenchCall returns a closure computing c's product (beta 0) on packed operands.
func gemmBenchCall(c gemmBenchCase) func() {
	a, b, out := gemmBenchOperands(c.m, c.n, c.k)
	transA, transB := c.trans()
	lda, ldb := c.k, c.n
	if transA {
		lda = c.m
	}
	if transB {
		ldb = c.k
	}
	return func() { Sgemm(transA, transB, c.m, c.n, c.k, 1, a, lda, b, ldb, 0, out, c.n) }
}

// BenchmarkSgemm measures Sgemm on every gemmBenchCases entry with gemmBenchThreads
// goroutines and reports GFLOP/s (2·m·n·k flops per call).
func BenchmarkSgemm(b *testing.B) {
	threads := gemmBenchThreads()
	for _, c := range gemmBenchCases {
		b.Run(fmt.Sprintf("%v/t%d", c, threads), func(b *testing.B) {
			SetGemmThreads(threads)
			defer SetGemmThreads(0)
			call := gemmBenchCall(c)
			call() // warm the pools
			b.ResetTimer()
			for b.Loop() {
				call()
			}
			b.ReportMetric(2*float64(c.m)*float64(c.n)*float64(c.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
