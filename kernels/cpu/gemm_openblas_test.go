package cpu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

// TestGemmVsOpenBLAS is the side-by-side benchmark behind docs/perf: for each
// gemmBenchCases entry it times our Sgemm and OpenBLAS sgemm (through numpy, in the peer
// script scripts/bench/gemm_openblas.py kept running in --serve mode) with the same thread
// count. The two sides alternate case by case for $GOMEGATRON_BENCH_ROUNDS rounds (default
// 3) and each keeps its best time, so on a shared machine both see the same background
// load. It prints a markdown table (and writes it to $GOMEGATRON_BENCH_OUT when set). It
// runs only with GOMEGATRON_BENCH=1 and asserts nothing about speed.
//
// With GOMEGATRON_BENCH_CLOCK=thread both sides run on one thread and are timed by the
// CPU time of that thread instead of wall time: a comparison that background load on a
// shared machine cannot skew (beyond cache pollution), to read beside the wall-clock one.
func TestGemmVsOpenBLAS(t *testing.T) {
	if os.Getenv("GOMEGATRON_BENCH") != "1" {
		t.Skip("benchmark; run with GOMEGATRON_BENCH=1 (see docs/perf/2026-11-26-cpu-gemm.md)")
	}
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		t.Skipf("%s with numpy is needed for the OpenBLAS peer: %v", python, err)
	}
	threads := gemmBenchThreads()
	clock := os.Getenv("GOMEGATRON_BENCH_CLOCK")
	switch clock {
	case "", "wall":
		clock = "wall"
	case "thread":
		if _, ok := gemmThreadClock(); !ok {
			t.Skip("GOMEGATRON_BENCH_CLOCK=thread needs a per-thread CPU clock (Linux)")
		}
		threads = 1
	default:
		t.Fatalf("GOMEGATRON_BENCH_CLOCK=%q: want wall or thread", clock)
	}
	rounds := 3
	if r, err := strconv.Atoi(os.Getenv("GOMEGATRON_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	script, err := filepath.Abs("../../scripts/bench/gemm_openblas.py")
	require.NoError(t, err)
	peer := startOpenBLASPeer(t, python, script, threads)

	const window = 300 * time.Millisecond
	ours := make([]float64, len(gemmBenchCases))
	theirs := make([]float64, len(gemmBenchCases))
	for r := 0; r < rounds; r++ {
		for i, c := range gemmBenchCases {
			ours[i] = max(ours[i], timeSgemm(threads, c, window, clock == "thread"))
			theirs[i] = max(theirs[i], peer.time(t, c, window, clock))
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "ours: Sgemm kernel %s, %d threads (GOMAXPROCS %d)\n", gemmDefaultKernel.name, threads, runtime.GOMAXPROCS(0))
	fmt.Fprintf(&sb, "peer: %v, core %v, via numpy %s, OPENBLAS_NUM_THREADS=%d\n",
		peer.info.OpenBLAS["config"], peer.info.OpenBLAS["corename"], peer.info.Numpy, threads)
	fmt.Fprintf(&sb, "clock: %s; best of %d alternating rounds per side\n\n", clock, rounds)
	sb.WriteString("| m×n×k | op | ours GFLOP/s | OpenBLAS GFLOP/s | ours/OpenBLAS |\n|---|---|---:|---:|---:|\n")
	for i, c := range gemmBenchCases {
		fmt.Fprintf(&sb, "| %d×%d×%d | %s | %.1f | %.1f | %.2f |\n", c.m, c.n, c.k, c.op, ours[i], theirs[i], ours[i]/theirs[i])
	}
	fmt.Print(sb.String())
	if out := os.Getenv("GOMEGATRON_BENCH_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(sb.String()), 0o644), "writing GOMEGATRON_BENCH_OUT")
	}
}

// timeSgemm returns the best GFLOP/s of repeated calls of case c (at least 3 calls and at
// least window), timed by wall clock or, with threadClock, by the CPU time of the locked
// calling thread (threads must then be 1).
func timeSgemm(threads int, c gemmBenchCase, window time.Duration, threadClock bool) float64 {
	SetGemmThreads(threads)
	defer SetGemmThreads(0)
	now := func() time.Duration { return time.Duration(time.Now().UnixNano()) }
	if threadClock {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		now = func() time.Duration { d, _ := gemmThreadClock(); return d }
	}
	call := gemmBenchCall(c)
	call()
	best := time.Duration(1 << 62)
	start := time.Now()
	for i := 0; i < 3 || time.Since(start) < window; i++ {
		t0 := now()
		call()
		best = min(best, now()-t0)
	}
	return 2 * float64(c.m) * float64(c.n) * float64(c.k) / best.Seconds() / 1e9
}

// openblasPeer is the running peer script.
type openblasPeer struct {
	info openblasReport
	in   io.Writer
	out  *bufio.Scanner
}

// startOpenBLASPeer starts the peer script in --serve mode with OPENBLAS_NUM_THREADS =
// threads and every other OPENBLAS_* variable removed (OPENBLAS_CORETYPE and
// OPENBLAS_L2_SIZE, set on some machines, pin a slower core). It is stopped at cleanup.
func startOpenBLASPeer(t *testing.T, python, script string, threads int) *openblasPeer {
	t.Helper()
	cmd := exec.Command(python, script, "--serve", "--reps", "3")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "OPENBLAS_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", threads))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "starting %s", script)
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	p := &openblasPeer{in: in, out: bufio.NewScanner(out)}
	require.True(t, p.out.Scan(), "%s printed no info line: %v", script, p.out.Err())
	require.NoError(t, json.Unmarshal(p.out.Bytes(), &p.info), "parsing the info line of %s", script)
	return p
}

// time returns OpenBLAS's best GFLOP/s for case c over at least window, timed by clock
// ("wall" or "thread").
func (p *openblasPeer) time(t *testing.T, c gemmBenchCase, window time.Duration, clock string) float64 {
	t.Helper()
	_, err := fmt.Fprintf(p.in, "%dx%dx%d:%s %g %s\n", c.m, c.n, c.k, c.op, window.Seconds(), clock)
	require.NoError(t, err, "writing to the OpenBLAS peer")
	require.True(t, p.out.Scan(), "OpenBLAS peer stopped: %v", p.out.Err())
	var r struct {
		openblasCase
		Error string
	}
	require.NoError(t, json.Unmarshal(p.out.Bytes(), &r), "parsing %q", p.out.Text())
	require.Empty(t, r.Error, "OpenBLAS peer")
	require.Equal(t, []any{c.m, c.n, c.k, c.op}, []any{r.M, r.N, r.K, r.Trans}, "OpenBLAS peer answered another case")
	return r.GFLOPS
}
