package tcp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// golaunchBin is cmd/golaunch built by TestMain for the multi-process tests; empty (with
// golaunchErr saying why) when it does not build.
var golaunchBin, golaunchErr string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "commtcp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "golaunch")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/gomegatron/gomegatron/cmd/golaunch").CombinedOutput()
	if err != nil {
		golaunchErr = fmt.Sprintf("building cmd/golaunch: %v\n%s", err, out)
	} else {
		golaunchBin = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// launchEnv is the test's environment without anything that would make golaunch read a
// platform or a parent job.
func launchEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SLURM_"), strings.HasPrefix(k, "OMPI_"), strings.HasPrefix(k, "PMI"),
			strings.HasPrefix(k, "PET_"), strings.HasPrefix(k, "TORCHELASTIC_"), strings.HasPrefix(k, "GOMEGATRON_"),
			strings.HasPrefix(k, "GOLAUNCH_"), strings.HasPrefix(k, "MPI_"):
			continue
		}
		switch k {
		case "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
			"KUBERNETES_CONTAINER_RESOURCE_GPU", "OMP_NUM_THREADS":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// golaunch runs `golaunch args…` with a deadline and returns its combined output and exit code.
func golaunch(t *testing.T, deadline time.Duration, args ...string) (string, int) {
	t.Helper()
	if golaunchBin == "" {
		t.Skipf("cmd/golaunch cannot spawn workers yet: %s", golaunchErr)
	}
	out, code, err := runGolaunch(deadline, args...)
	require.NoError(t, err, "%s", out)
	return out, code
}

// runGolaunch is golaunch without the testing.T, for use from other goroutines.
func runGolaunch(deadline time.Duration, args ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, golaunchBin, args...)
	cmd.Env = launchEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), -1, fmt.Errorf("golaunch %v ran past %v", args, deadline)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode(), nil
	}
	return out.String(), 0, err
}

// TestMultiProcess runs _commtest (every collective and dtype against the serial reference,
// Split, Send/Recv, Barrier) in worlds of 1 to 8 processes started by golaunch.
func TestMultiProcess(t *testing.T) {
	for n := 1; n <= 8; n++ {
		t.Run(fmt.Sprintf("nproc%d", n), func(t *testing.T) {
			args := []string{"--nproc-per-node", fmt.Sprint(n), "_commtest", "-timeout", "30s"}
			if n == 3 { // the in-process tests cover 1000003 elements for every n
				args = append(args, "-large", "1000003")
			}
			out, code := golaunch(t, 60*time.Second, args...)
			require.Equal(t, 0, code, out)
			for r := range n {
				assert.Regexp(t, fmt.Sprintf(`rank %d: _commtest passed \(\d+ checks\)`, r), out)
			}
		})
	}
}

// TestMultiProcessKilledWorker: one worker is SIGKILLed mid-run. Every other rank must fail
// fast with an error naming it (not wait for the 60 s timeout), and golaunch must print its
// failure summary and exit 1.
func TestMultiProcessKilledWorker(t *testing.T) {
	for _, c := range []struct{ n, kill int }{{4, 2}, {8, 0}} {
		t.Run(fmt.Sprintf("nproc%d_kill%d", c.n, c.kill), func(t *testing.T) {
			start := time.Now()
			out, code := golaunch(t, 60*time.Second, "--nproc-per-node", fmt.Sprint(c.n),
				"_commtest", "-timeout", "60s", "-kill-rank", fmt.Sprint(c.kill))
			took := time.Since(start)
			assert.Equal(t, 1, code, out)
			assert.Less(t, took, 20*time.Second, out)
			// golaunch prints its failure summary. (Which rank it names as the root cause is
			// the launcher's business: the survivors fail within milliseconds of the kill, and
			// its monitor may observe one of them first.)
			assert.Contains(t, out, "_commtest FAILED")
			for r := range c.n {
				if r == c.kill {
					continue
				}
				re := regexp.MustCompile(fmt.Sprintf(`\[default%d\]:.*peer rank %d failed`, r, c.kill))
				assert.True(t, re.MatchString(out), "rank %d did not report rank %d:\n%s", r, c.kill, out)
			}
		})
	}
}

// TestMultiProcessTwoNodes simulates two nodes on this machine: two golaunch agents
// (--nnodes 2 --node-rank 0/1) whose four workers form one world through node 0's store.
func TestMultiProcessTwoNodes(t *testing.T) {
	if golaunchBin == "" {
		t.Skipf("cmd/golaunch cannot spawn workers yet: %s", golaunchErr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	type res struct {
		out  string
		code int
		err  error
	}
	results := make(chan res, 2)
	for node := range 2 {
		go func() {
			out, code, err := runGolaunch(60*time.Second, "--nnodes", "2", "--node-rank", fmt.Sprint(node),
				"--nproc-per-node", "2", "--master-port", port, "_commtest", "-timeout", "30s")
			results <- res{out, code, err}
		}()
	}
	var all string
	for range 2 {
		r := <-results
		require.NoError(t, r.err, "%s", r.out)
		assert.Equal(t, 0, r.code, r.out)
		all += r.out
	}
	for r := range 4 {
		assert.Regexp(t, fmt.Sprintf(`rank %d: _commtest passed`, r), all)
	}
}
