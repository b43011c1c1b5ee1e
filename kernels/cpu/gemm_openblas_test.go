package cpu

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// openblasReport is what scripts/bench/gemm_openblas.py prints.
type openblasReport struct {
	Numpy    string         `json:"numpy"`
	OpenBLAS map[string]any `json:"openblas"`
	Cases    []openblasCase `json:"cases"`
}

type openblasCase struct {
	M, N, K int
	Trans   string
	Seconds float64
	GFLOPS  float64 `json:"gflops"`
}

// TestGemmVsOpenBLAS is the side-by-side benchmark behind docs/perf: for each shape and
// transpose it times our Sgemm and OpenBLAS sgemm (through numpy, the peer script
// scripts/bench/gemm_openblas.py) with the same thread count, alternating the two for
// $GOMEGATRON_BENCH_ROUNDS rounds (default 3) and keeping each side's best time, which is
// the fair number on a shared machine. It prints a markdown table (and writes it to
// $GOMEGATRON_BENCH_OUT when set). It runs only with GOMEGATRON_BENCH=1 and asserts
// nothing about speed.
func TestGemmVsOpenBLAS(t *testing.T) {
	if os.Getenv("GOMEGATRON_BENCH") != "1" {
		t.Skip("benchmark; run with GOMEGATRON_BENCH=1 (see docs/perf/2026-11-26-cpu-gemm.md)")
	}
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skipf("%s with numpy is needed for the OpenBLAS peer: %v", python, err)
	}
	threads := gemmBenchThreads()
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("GOMEGATRON_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	script, err := filepath.Abs("../../scripts/bench/gemm_openblas.py")
	require.NoError(t, err)

	type key struct {
		m, n, k int
		trans   string
	}
	ours := map[key]float64{}
	peer := map[key]float64{}
	var info openblasReport
	for r := 0; r < rounds; r++ {
		for _, s := range gemmBenchShapes {
			m, n, k := s[0], s[1], s[2]
			for _, tr := range gemmBenchTrans {
				g := timeSgemm(threads, tr.transA, tr.transB, m, n, k)
				kk := key{m, n, k, tr.name}
				ours[kk] = max(ours[kk], g)
			}
		}
		info = runOpenBLASPeer(t, python, script, threads)
		for _, c := range info.Cases {
			kk := key{c.M, c.N, c.K, c.Trans}
			peer[kk] = max(peer[kk], c.GFLOPS)
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "ours: Sgemm kernel %s, %d threads (GOMAXPROCS %d)\n", gemmDefaultKernel.name, threads, runtime.GOMAXPROCS(0))
	fmt.Fprintf(&sb, "peer: OpenBLAS %v core %v via numpy %s, OPENBLAS_NUM_THREADS=%d\n",
		info.OpenBLAS["config"], info.OpenBLAS["corename"], info.Numpy, threads)
	fmt.Fprintf(&sb, "best of %d rounds each\n\n", rounds)
	sb.WriteString("| m×n×k | op | ours GFLOP/s | OpenBLAS GFLOP/s | ours/OpenBLAS |\n|---|---|---:|---:|---:|\n")
	for _, s := range gemmBenchShapes {
		for _, tr := range gemmBenchTrans {
			kk := key{s[0], s[1], s[2], tr.name}
			fmt.Fprintf(&sb, "| %d×%d×%d | %s | %.1f | %.1f | %.2f |\n", s[0], s[1], s[2], tr.name, ours[kk], peer[kk], ours[kk]/peer[kk])
		}
	}
	fmt.Print(sb.String())
	if out := os.Getenv("GOMEGATRON_BENCH_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(sb.String()), 0o644), "writing GOMEGATRON_BENCH_OUT")
	}
}

// timeSgemm returns the best GFLOP/s of repeated C = op(A)·op(B) calls (at least 5 and
// at least one second).
func timeSgemm(threads int, transA, transB bool, m, n, k int) float64 {
	SetGemmThreads(threads)
	defer SetGemmThreads(0)
	a, b, c := gemmBenchOperands(m, n, k)
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n)
	best := time.Duration(1 << 62)
	start := time.Now()
	for i := 0; i < 5 || time.Since(start) < time.Second; i++ {
		t0 := time.Now()
		Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n)
		best = min(best, time.Since(t0))
	}
	return 2 * float64(m) * float64(n) * float64(k) / best.Seconds() / 1e9
}

// runOpenBLASPeer runs the peer script for gemmBenchShapes with OPENBLAS_NUM_THREADS =
// threads and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed (they pin a slower core).
func runOpenBLASPeer(t *testing.T, python, script string, threads int) openblasReport {
	t.Helper()
	args := []string{script, "--min-seconds", "1", "--shapes"}
	for _, s := range gemmBenchShapes {
		args = append(args, fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]))
	}
	cmd := exec.Command(python, args...)
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "OPENBLAS_") {
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", threads))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "running %s", script)
	var rep openblasReport
	require.NoError(t, json.Unmarshal(out, &rep), "parsing the output of %s", script)
	require.Len(t, rep.Cases, len(gemmBenchShapes)*len(gemmBenchTrans))
	return rep
}
