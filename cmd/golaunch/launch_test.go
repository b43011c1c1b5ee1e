package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// golaunchBin is the golaunch binary built once by TestMain; the launcher tests run it as a
// user would.
var golaunchBin, launcherTmp string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "golaunch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	golaunchBin = filepath.Join(dir, "golaunch")
	launcherTmp = filepath.Join(dir, "tmp") // TMPDIR of the launched golaunch: its torchelastic_* dirs go here
	os.Mkdir(launcherTmp, 0o755)
	build := exec.Command("go", "build", "-o", golaunchBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building golaunch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// cleanEnv is the parent environment without anything that would make golaunch read a
// platform (a CI runner under Slurm, a test run inside a golaunch worker).
func cleanEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SLURM_") || strings.HasPrefix(k, "OMPI_") || strings.HasPrefix(k, "PMI") ||
			strings.HasPrefix(k, "PET_") || strings.HasPrefix(k, "TORCHELASTIC_") || strings.HasPrefix(k, "GOMEGATRON_") ||
			strings.HasPrefix(k, "GOLAUNCH_") || strings.HasPrefix(k, "MPI_") {
			continue
		}
		switch k {
		case "TMPDIR", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
			"KUBERNETES_CONTAINER_RESOURCE_GPU", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "TMPDIR="+launcherTmp)
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func command(env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.Command(golaunchBin, args...)
	cmd.Env = cleanEnv(env)
	return cmd
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("golaunch %v did not finish in 90 s\nstdout:\n%s\nstderr:\n%s", cmd.Args[1:], out.String(), errb.String())
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode(), time.Since(start)}
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCmd(t, command(env, args...))
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// prefixedEnv splits `[default<i>]:KEY=VALUE` lines into one environment per local rank.
func prefixedEnv(t *testing.T, out string) map[int]map[string]string {
	t.Helper()
	re := regexp.MustCompile(`^\[default(\d+)\]:([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	envs := map[int]map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lr, _ := strconv.Atoi(m[1])
		if envs[lr] == nil {
			envs[lr] = map[string]string{}
		}
		envs[lr][m[2]] = m[3]
	}
	return envs
}

func plainEnv(out string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestWorkerEnvironment(t *testing.T) {
	for _, nproc := range []int{1, 3} {
		t.Run(fmt.Sprintf("nproc=%d", nproc), func(t *testing.T) {
			logDir := t.TempDir()
			port := freePort(t)
			r := run(t, nil, "--nproc-per-node", strconv.Itoa(nproc), "--master-port", port, "--log-dir", logDir, "_envdump")
			require.Equal(t, 0, r.code, r.stderr)
			var envs map[int]map[string]string
			if nproc == 1 {
				envs = map[int]map[string]string{0: plainEnv(r.stdout)}
				assert.NotContains(t, r.stdout, "[default0]:", "one worker per node: no prefix")
			} else {
				envs = prefixedEnv(t, r.stdout)
			}
			require.Len(t, envs, nproc)
			runDirs, _ := filepath.Glob(filepath.Join(logDir, "none_*"))
			require.Len(t, runDirs, 1)
			token := envs[0]["GOMEGATRON_JOB_TOKEN"]
			assert.NotEmpty(t, token)
			for lr := 0; lr < nproc; lr++ {
				e := envs[lr]
				want := map[string]string{
					"RANK": strconv.Itoa(lr), "LOCAL_RANK": strconv.Itoa(lr), "GROUP_RANK": "0", "ROLE_RANK": strconv.Itoa(lr),
					"ROLE_NAME": "default", "LOCAL_WORLD_SIZE": strconv.Itoa(nproc), "WORLD_SIZE": strconv.Itoa(nproc),
					"GROUP_WORLD_SIZE": "1", "ROLE_WORLD_SIZE": strconv.Itoa(nproc), "MASTER_ADDR": "127.0.0.1",
					"MASTER_PORT": port, "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0",
					"TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_USE_AGENT_STORE": "True",
					"TORCHELASTIC_ERROR_FILE":         filepath.Join(runDirs[0], "attempt_0", strconv.Itoa(lr), "error.json"),
					"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
					"GOMEGATRON_STORE_ADDR":           "127.0.0.1:" + port, "GOMEGATRON_JOB_TOKEN": token,
				}
				if nproc > 1 {
					want["OMP_NUM_THREADS"] = "1"
				}
				for k, v := range want {
					assert.Equal(t, v, e[k], "local rank %d: %s", lr, k)
				}
				if nproc == 1 {
					assert.NotContains(t, e, "OMP_NUM_THREADS", "OMP_NUM_THREADS is only defaulted when nproc > 1")
				}
			}
			assert.Contains(t, r.stderr, "golaunch: starting with launch layout:")
			assert.Contains(t, r.stderr, fmt.Sprintf("nproc_per_node   : %d (--nproc-per-node)", nproc))
		})
	}
	t.Run("inherited OMP_NUM_THREADS and an executable command", func(t *testing.T) {
		r := run(t, map[string]string{"OMP_NUM_THREADS": "7"}, "--nproc", "2", "--standalone", "env")
		require.Equal(t, 0, r.code, r.stderr)
		envs := prefixedEnv(t, r.stdout)
		require.Len(t, envs, 2)
		for lr, e := range envs {
			assert.Equal(t, "7", e["OMP_NUM_THREADS"])
			assert.Equal(t, strconv.Itoa(lr), e["RANK"])
			assert.Len(t, e["TORCHELASTIC_RUN_ID"], 36, "--standalone picks a uuid run id")
			assert.Equal(t, "127.0.0.1:"+e["MASTER_PORT"], e["GOMEGATRON_STORE_ADDR"], "--standalone: the store's picked port is MASTER_PORT")
		}
	})
	t.Run("workers reach the store with the token they were given", func(t *testing.T) {
		r := run(t, nil, "--nproc", "3", "--standalone", "_testworker", "-barrier")
		require.Equal(t, 0, r.code, r.stderr)
		for lr := 0; lr < 3; lr++ {
			assert.Contains(t, r.stdout, fmt.Sprintf("[default%d]:rank %d passed the barrier\n", lr, lr))
		}
	})
}

// torchrun (Debian's python3-torch 1.13 under Python 3.12 needs its Std.from_str fixed to
// start at all) gives the reference worker environment.
const torchrunPy = `
import re, sys
import torch.distributed.elastic.multiprocessing.api as api
from torch.distributed.elastic.multiprocessing.api import Std
def _from_str(cls, vm):
    if re.match(api._VALUE_REGEX, vm):
        return Std(int(vm))
    return {int(i): Std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
Std.from_str = classmethod(_from_str)
from torch.distributed.run import main
sys.argv[0] = "torchrun"
main()
`

func TestWorkerEnvironmentMatchesTorchrun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs torchrun (slow)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch.distributed.run").Run(); err != nil {
		t.Skipf("needs /usr/bin/python3 with torch (python3-torch): %v", err)
	}
	dumps := map[string]string{"torchrun": t.TempDir(), "golaunch": t.TempDir()}
	logs := map[string]string{"torchrun": t.TempDir(), "golaunch": t.TempDir()}
	script := `env | sort > "$DUMP/$LOCAL_RANK"`
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	for _, who := range []string{"torchrun", "golaunch"} {
		port := freePort(t)
		args := []string{"--nproc_per_node", "2", "--master_port", port, "--log_dir", logs[who], "--no_python", "sh", "-c", script}
		var cmd *exec.Cmd
		if who == "torchrun" {
			cmd = exec.Command("/usr/bin/python3", append([]string{"-c", torchrunPy}, args...)...)
		} else {
			cmd = exec.Command(golaunchBin, args...)
		}
		cmd.Env = append(base, "DUMP="+dumps[who])
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", who, out)
	}
	for lr := 0; lr < 2; lr++ {
		read := func(who string) map[string]string {
			data, err := os.ReadFile(filepath.Join(dumps[who], strconv.Itoa(lr)))
			require.NoError(t, err)
			env := plainEnv(string(data))
			// Per-run values: ports, log directories, python's own additions.
			for _, k := range []string{"MASTER_PORT", "PWD", "LC_CTYPE", "SHLVL", "_", "DUMP"} {
				delete(env, k)
			}
			env["TORCHELASTIC_ERROR_FILE"] = regexp.MustCompile(`^.*/none_[^/]+/`).ReplaceAllString(env["TORCHELASTIC_ERROR_FILE"], "<logdir>/none_<rand>/")
			return env
		}
		want, got := read("torchrun"), read("golaunch")
		// torch 1.13 spells it NCCL_ASYNC_ERROR_HANDLING; torch ≥ 2.2 (the spec) TORCH_NCCL_….
		if v, ok := want["NCCL_ASYNC_ERROR_HANDLING"]; ok {
			delete(want, "NCCL_ASYNC_ERROR_HANDLING")
			want["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = v
		}
		assert.NotEmpty(t, got["GOMEGATRON_JOB_TOKEN"])
		assert.NotEmpty(t, got["GOMEGATRON_STORE_ADDR"])
		delete(got, "GOMEGATRON_JOB_TOKEN")
		delete(got, "GOMEGATRON_STORE_ADDR")
		assert.Equal(t, want, got, "local rank %d", lr)
	}
}

func TestLogsPrefixesAndFilters(t *testing.T) {
	cases := []struct {
		name      string
		flags     []string
		consoleOK map[string]bool // "<stream><local rank>" that reach the console
		files     map[string]bool // "<stream><local rank>" written to log files
	}{
		{name: "log dir, filter 0,2", flags: []string{"--local-ranks-filter", "0,2"},
			consoleOK: map[string]bool{"out0": true, "err0": true, "out2": true, "err2": true},
			files:     map[string]bool{"out0": true, "err0": true, "out1": true, "err1": true, "out2": true, "err2": true}},
		{name: "redirect all, tee stdout of rank 0", flags: []string{"-r", "3", "--tee", "0:1"},
			consoleOK: map[string]bool{"out0": true},
			files:     map[string]bool{"out0": true, "err0": true, "out1": true, "err1": true, "out2": true, "err2": true}},
		{name: "redirect stderr only", flags: []string{"--redirects=2"},
			consoleOK: map[string]bool{"out0": true, "out1": true, "out2": true},
			files:     map[string]bool{"out0": true, "err0": true, "out1": true, "err1": true, "out2": true, "err2": true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logDir := t.TempDir()
			args := append([]string{"--nproc-per-node", "3", "--standalone", "--run-id", "job", "--log-dir", logDir}, tc.flags...)
			r := run(t, nil, append(args, "_testworker", "-lines", "3")...)
			require.Equal(t, 0, r.code, r.stderr)
			runDirs, _ := filepath.Glob(filepath.Join(logDir, "job_*"))
			require.Len(t, runDirs, 1, "<log_dir>/<run_id>_<rand>")
			for lr := 0; lr < 3; lr++ {
				for _, s := range []string{"out", "err"} {
					console, file := r.stdout, ""
					if s == "err" {
						console = r.stderr
						file = filepath.Join(runDirs[0], "attempt_0", strconv.Itoa(lr), "stderr.log")
					} else {
						file = filepath.Join(runDirs[0], "attempt_0", strconv.Itoa(lr), "stdout.log")
					}
					var lines, prefixed string
					for i := 0; i < 3; i++ {
						line := fmt.Sprintf("%s %d rank %d\n", s, i, lr)
						lines += line
						prefixed += fmt.Sprintf("[default%d]:%s", lr, line)
					}
					key := s + strconv.Itoa(lr)
					if tc.consoleOK[key] {
						// Workers interleave; one worker's lines stay whole and in order.
						var mine string
						for _, l := range strings.SplitAfter(console, "\n") {
							if strings.HasPrefix(l, fmt.Sprintf("[default%d]:%s ", lr, s)) {
								mine += l
							}
						}
						assert.Equal(t, prefixed, mine, key)
					} else {
						assert.NotContains(t, console, fmt.Sprintf("%s 0 rank %d", s, lr), key)
					}
					data, err := os.ReadFile(file)
					if tc.files[key] {
						require.NoError(t, err, key)
						assert.Equal(t, lines, string(data), "%s: log files hold the unprefixed output", key)
					} else {
						assert.True(t, os.IsNotExist(err), key)
					}
				}
			}
		})
	}
}

// pidsFrom reads the worker and grandchild pids that `_testworker -piddir` wrote.
func pidsFrom(t *testing.T, dir string) []int {
	t.Helper()
	var pids []int
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	children, _ := filepath.Glob(filepath.Join(dir, "*.child"))
	for _, f := range append(files, children...) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		pid, err := strconv.Atoi(string(data))
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func assertAllGone(t *testing.T, pids []int) {
	t.Helper()
	assert.Eventually(t, func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "orphans left: some of %v still run", pids)
	for _, p := range pids {
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

func TestFailureSummary(t *testing.T) {
	cases := []struct {
		how       string
		exitcode  string
		traceback string
		errorFile bool
	}{
		{how: "exit", exitcode: "3", traceback: "To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"},
		{how: "sigkill", exitcode: "-9", traceback: "Signal 9 (SIGKILL) received by PID "},
		{how: "panic", exitcode: "2", traceback: "panic: rank 1 panics on purpose\n  \n  goroutine ", errorFile: true},
		{how: "error", exitcode: "1", traceback: "error: rank 1 failed on purpose", errorFile: true},
	}
	for _, tc := range cases {
		t.Run(tc.how, func(t *testing.T) {
			pidDir, logDir := t.TempDir(), t.TempDir()
			r := run(t, nil, "--nproc-per-node", "3", "--standalone", "--log-dir", logDir, "_testworker",
				"-fail-rank", "1", "-how", tc.how, "-sleep", "60s", "-piddir", pidDir, "-delay", "300ms")
			assert.Equal(t, 1, r.code, r.stderr)
			assert.Less(t, r.took, 30*time.Second, "the other workers must be stopped, not awaited")
			pids := pidsFrom(t, pidDir)
			assert.Len(t, pids, 6, "3 workers and their grandchildren")
			assertAllGone(t, pids)

			i := strings.Index(r.stderr, "\n=====")
			require.GreaterOrEqual(t, i, 0, r.stderr)
			summary := r.stderr[i:]
			// Rules are as wide as the widest line, at most 60 (torchelastic's format_msg).
			m := regexp.MustCompile(`^\n(=+)\n_testworker FAILED\n(-+)\nFailures:\n  <NO_OTHER_FAILURES>\n(-+)\nRoot Cause \(first observed failure\):\n\[0\]:\n  time      : `).FindStringSubmatch(summary)
			require.NotNil(t, m, summary)
			width := 0
			for _, line := range strings.Split(summary, "\n") {
				width = max(width, len(line))
			}
			width = min(width, 60)
			assert.Equal(t, []string{strings.Repeat("=", width), strings.Repeat("-", width), strings.Repeat("-", width)}, m[1:])
			assert.Contains(t, summary, "\n  rank      : 1 (local_rank: 1)\n  exitcode  : "+tc.exitcode+" (pid: ")
			assert.Contains(t, summary, "\n  traceback : "+tc.traceback)
			host, _ := os.Hostname()
			assert.Contains(t, summary, "\n  host      : "+host+"\n")
			assert.Regexp(t, `time      : \d{4}-\d\d-\d\d_\d\d:\d\d:\d\d\n`, summary)
			if tc.errorFile {
				assert.Regexp(t, `error_file: .*/attempt_0/1/error.json\n`, summary)
			} else {
				assert.Contains(t, summary, "error_file: <N/A>\n")
			}
			assert.True(t, strings.HasSuffix(summary, "\n"+m[1]+"\n"), summary)
			pid := regexp.MustCompile(`exitcode  : -?\d+ \(pid: (\d+)\)`).FindStringSubmatch(summary)
			require.NotNil(t, pid)
			assert.Contains(t, pids, atoi(t, pid[1]), "the pid in the summary is the failed worker's")
		})
	}
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

func TestGracePeriodThenSIGKILL(t *testing.T) {
	pidDir := t.TempDir()
	r := run(t, map[string]string{"GOLAUNCH_GRACE_PERIOD": "1"}, "--nproc", "2", "--standalone", "_testworker",
		"-fail-rank", "0", "-ignore-term", "-sleep", "60s", "-piddir", pidDir, "-delay", "300ms")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Less(t, r.took, 30*time.Second)
	assert.GreaterOrEqual(t, r.took, time.Second, "SIGKILL only after the grace period")
	assertAllGone(t, pidsFrom(t, pidDir))
}

func TestMaxRestarts(t *testing.T) {
	t.Run("restart after a first failure succeeds", func(t *testing.T) {
		logDir := t.TempDir()
		r := run(t, nil, "--nproc", "2", "--standalone", "--max-restarts", "1", "--log-dir", logDir,
			"_testworker", "-fail-rank", "1", "-first-only", "-barrier", "-sleep", "200ms")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "restarting all workers (restart 1 of 1)")
		assert.NotContains(t, r.stderr, "FAILED")
		attempts, _ := filepath.Glob(filepath.Join(logDir, "*", "attempt_*"))
		assert.Len(t, attempts, 2)
	})
	t.Run("failures past max restarts", func(t *testing.T) {
		logDir := t.TempDir()
		r := run(t, nil, "--nproc", "2", "--standalone", "--max-restarts", "1", "--log-dir", logDir,
			"_testworker", "-fail-rank", "0", "-how", "exit", "-code", "5", "-sleep", "60s")
		assert.Equal(t, 1, r.code, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "restarting all workers"))
		assert.Contains(t, r.stderr, "exitcode  : 5 (pid: ")
		attempts, _ := filepath.Glob(filepath.Join(logDir, "*", "attempt_*"))
		assert.Len(t, attempts, 2)
	})
}

func TestSignalForwarding(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			pidDir := t.TempDir()
			cmd := command(nil, "--nproc", "2", "--standalone", "_testworker", "-trap", "-sleep", "60s", "-piddir", pidDir)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			require.NoError(t, cmd.Start())
			require.Eventually(t, func() bool { return len(pidsFrom(t, pidDir)) == 4 }, 30*time.Second, 20*time.Millisecond)
			pids := pidsFrom(t, pidDir)
			start := time.Now()
			require.NoError(t, cmd.Process.Signal(sig))
			err := cmd.Wait()
			_ = err
			assert.Less(t, time.Since(start), 20*time.Second)
			assert.Equal(t, 128+int(sig), cmd.ProcessState.ExitCode(), errb.String())
			if sig == syscall.SIGTERM {
				// The workers saw the signal itself (their handler ran).
				assert.Contains(t, out.String(), "[default0]:rank 0 got SIGTERM\n")
				assert.Contains(t, out.String(), "[default1]:rank 1 got SIGTERM\n")
			}
			assertAllGone(t, pids)
		})
	}
}

func TestNoOrphansAfterACleanExit(t *testing.T) {
	pidDir := t.TempDir()
	r := run(t, nil, "--nproc", "2", "--standalone", "_testworker", "-piddir", pidDir)
	require.Equal(t, 0, r.code, r.stderr)
	pids := pidsFrom(t, pidDir)
	assert.Len(t, pids, 4)
	assertAllGone(t, pids) // the workers' `sleep 1000` children die with their process group
}

func TestWorkersDieWithALauncherKilledHard(t *testing.T) {
	pidDir := t.TempDir()
	cmd := command(nil, "--nproc", "2", "--standalone", "_testworker", "-sleep", "60s", "-piddir", pidDir)
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return len(pidsFrom(t, pidDir)) == 4 }, 30*time.Second, 20*time.Millisecond)
	var workers []int
	for _, f := range []string{"0.pid", "1.pid"} {
		data, err := os.ReadFile(filepath.Join(pidDir, f))
		require.NoError(t, err)
		workers = append(workers, atoi(t, string(data)))
	}
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	// Pdeathsig: the workers die with the launcher (their own children are beyond its reach).
	assertAllGone(t, workers)
	for _, p := range pidsFrom(t, pidDir) {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func TestTwoNodesOnOneMachine(t *testing.T) {
	port := freePort(t)
	start := func(node int, extra ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		args := append([]string{"--nnodes", "2", "--node-rank", strconv.Itoa(node), "--nproc-per-node", "2",
			"--master-port", port, "--max-restarts", "0"}, extra...)
		cmd := command(map[string]string{"GOLAUNCH_GRACE_PERIOD": "2"}, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		require.NoError(t, cmd.Start())
		return cmd, &out, &errb
	}
	wait := func(cmd *exec.Cmd) int {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("node did not finish in 60 s")
		}
		return cmd.ProcessState.ExitCode()
	}
	t.Run("ranks and store", func(t *testing.T) {
		c1, out1, err1 := start(1, "_testworker", "-barrier", "-lines", "1") // node 1 first: it waits for the store
		c0, out0, err0 := start(0, "_testworker", "-barrier", "-lines", "1")
		require.Equal(t, 0, wait(c0), err0.String())
		require.Equal(t, 0, wait(c1), err1.String())
		for node, out := range []*bytes.Buffer{out0, out1} {
			for lr := 0; lr < 2; lr++ {
				rank := node*2 + lr
				assert.Contains(t, out.String(), fmt.Sprintf("[default%d]:out 0 rank %d\n", lr, rank))
				assert.Contains(t, out.String(), fmt.Sprintf("[default%d]:rank %d passed the barrier\n", lr, rank))
			}
		}
	})
	t.Run("both nodes restart after a failure on node 1", func(t *testing.T) {
		port = freePort(t)
		c0, out0, err0 := start(0, "--max-restarts", "1", "_testworker", "-barrier", "-sleep", "300ms")
		c1, out1, err1 := start(1, "--max-restarts", "1", "_testworker", "-barrier", "-fail-rank", "2", "-first-only", "-delay", "100ms", "-sleep", "300ms")
		assert.Equal(t, 0, wait(c1), err1.String())
		assert.Equal(t, 0, wait(c0), err0.String())
		assert.Contains(t, err1.String(), "restarting all workers (restart 1 of 1)")
		assert.Contains(t, err0.String(), "node 1 reported a failed worker in attempt 0); restarting all workers (restart 1 of 1)")
		// Attempt 1 ran on both nodes: every rank passed the second barrier.
		for node, out := range []*bytes.Buffer{out0, out1} {
			for lr := 0; lr < 2; lr++ {
				assert.Equal(t, 2, strings.Count(out.String(), fmt.Sprintf("[default%d]:rank %d passed the barrier\n", lr, node*2+lr)))
			}
		}
	})
	t.Run("a failure on node 1 stops node 0", func(t *testing.T) {
		port = freePort(t)
		c0, _, err0 := start(0, "_testworker", "-sleep", "60s")
		c1, _, err1 := start(1, "_testworker", "-fail-rank", "3", "-how", "exit", "-code", "4", "-sleep", "60s", "-delay", "300ms")
		assert.Equal(t, 1, wait(c1), err1.String())
		assert.Contains(t, err1.String(), "rank      : 3 (local_rank: 1)")
		assert.Equal(t, 1, wait(c0), err0.String())
		assert.Contains(t, err0.String(), "node 1 reported a failed worker in attempt 0")
	})
}

func TestProcessLevelPlatforms(t *testing.T) {
	t.Run("builtin without flags runs in-process", func(t *testing.T) {
		r := run(t, nil, "_envdump")
		require.Equal(t, 0, r.code, r.stderr)
		e := plainEnv(r.stdout)
		assert.NotContains(t, e, "RANK")
		assert.NotContains(t, r.stderr, "launch layout", "nothing to report for a single in-process run")
	})
	t.Run("Slurm one task per GPU", func(t *testing.T) {
		port := freePort(t)
		var cmds []*exec.Cmd
		var outs []*bytes.Buffer
		for rank := 0; rank < 2; rank++ {
			cmd := command(map[string]string{"SLURM_JOB_ID": "42", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
				"SLURM_JOB_NODELIST": "localhost", "SLURM_PROCID": strconv.Itoa(rank), "SLURM_LOCALID": strconv.Itoa(rank),
				"SLURM_NTASKS": "2", "SLURM_TASKS_PER_NODE": "2", "MASTER_PORT": port}, "_testworker", "-barrier")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			require.NoError(t, cmd.Start())
			cmds, outs = append(cmds, cmd), append(outs, &out)
		}
		for rank, cmd := range cmds {
			require.NoError(t, cmd.Wait(), "rank %d", rank)
			assert.Equal(t, fmt.Sprintf("rank %d passed the barrier\n", rank), outs[rank].String(), "no spawning, no prefix")
		}
	})
	t.Run("Open MPI runs an executable as its rank", func(t *testing.T) {
		port := freePort(t)
		var cmds []*exec.Cmd
		var outs, errs []*bytes.Buffer
		for rank := 0; rank < 2; rank++ {
			cmd := command(map[string]string{"OMPI_COMM_WORLD_RANK": strconv.Itoa(rank), "OMPI_COMM_WORLD_SIZE": "2",
				"OMPI_COMM_WORLD_LOCAL_RANK": strconv.Itoa(rank), "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_PORT": port},
				"sh", "-c", `echo "$RANK/$WORLD_SIZE $LOCAL_RANK/$LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR:$MASTER_PORT"`)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			require.NoError(t, cmd.Start())
			cmds, outs, errs = append(cmds, cmd), append(outs, &out), append(errs, &errb)
		}
		for rank, cmd := range cmds {
			require.NoError(t, cmd.Wait(), "rank %d: %s", rank, errs[rank])
			assert.Equal(t, fmt.Sprintf("%d/2 %d/2 0 127.0.0.1:%s\n", rank, rank, port), outs[rank].String())
		}
		assert.Contains(t, errs[0].String(), "env_style        : mpi")
		assert.Contains(t, errs[0].String(), "process-level: this process is rank 0 of 2")
	})
	t.Run("a golaunch worker does not spawn again", func(t *testing.T) {
		r := run(t, map[string]string{"PET_NPROC_PER_NODE": "4", "PET_NNODES": "1"}, "--nproc", "2", "--standalone", "_testworker", "-barrier")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "launch layout"), "only the launcher prints its layout")
		assert.Equal(t, 2, strings.Count(r.stdout, "passed the barrier"))
	})
}

func TestBadLauncherInput(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--nprocs", "2", "_envdump"}, want: "unknown launcher flag --nprocs"},
		{args: []string{"--nproc-per-node", "two", "_envdump"}, want: "--nproc-per-node: want a positive integer"},
		{args: []string{"no-such-command-xyz"}, want: `unknown command "no-such-command-xyz"`},
		{args: []string{"--env-style", "slurm", "_envdump"}, want: "--env-style slurm: SLURM_JOB_ID is not set"},
		{args: []string{"--redirects", "7", "--standalone", "_envdump"}, want: `--redirects "7"`},
		{args: []string{"_envdump"}, env: map[string]string{"PET_NODE_RANK": "x"}, want: "environment PET_NODE_RANK"},
	}
	for _, tc := range cases {
		r := run(t, tc.env, tc.args...)
		assert.NotEqual(t, 0, r.code, tc.args)
		assert.Contains(t, r.stderr, tc.want, tc.args)
	}
	r := run(t, nil, "--help")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "--nproc-per-node, --nproc")
	assert.NotContains(t, r.stdout, "_testworker", "test commands stay hidden")
	_ = context.Background
}
