package launch

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// worker is one spawned process of the local worker group.
type worker struct {
	localRank, rank int
	cmd             *exec.Cmd
	errFile         string
	outDone         chan struct{}
	readEnds        []*os.File
	exited          bool
}

// exitEvent reports that a worker's process ended.
type exitEvent struct {
	idx  int
	code int // negative: killed by that signal
	at   time.Time
}

// spawner starts processes from one goroutine locked to its OS thread for the launcher's
// lifetime: Pdeathsig fires when the thread that forked a child exits, so the thread must
// outlive the workers (it dies with the launcher, which is what we want).
type spawner struct{ req chan spawnReq }

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{req: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for r := range s.req {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.req <- spawnReq{cmd, done}
	return <-done
}

// envList merges overrides into a base environment (later keys replace earlier ones).
func envList(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		k := kv
		if i := indexByte(kv, '='); i >= 0 {
			k = kv[:i]
		}
		if _, ok := over[k]; !ok {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+over[k])
	}
	return out
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// WorkerEnv is torchrun's worker environment (LocalElasticAgent._start_workers) for one
// local rank of a node-level layout, or for this process of a process-level one, plus
// gomegatron's store address and job token. baseHas reports whether the parent environment
// already sets a variable (OMP_NUM_THREADS and TORCH_NCCL_ASYNC_ERROR_HANDLING are only
// defaulted).
func WorkerEnv(l *Layout, localRank, restart int, masterPort int, errFile, storeAddr, token string, baseHas func(string) bool) map[string]string {
	rank, world, localWorld := l.NodeRank*l.NProcPerNode+localRank, l.NNodes*l.NProcPerNode, l.NProcPerNode
	if l.ProcessLevel {
		rank, world, localRank, localWorld = l.Rank, l.WorldSize, l.LocalRank, l.LocalWorldSize
	}
	itoa := strconv.Itoa
	env := map[string]string{
		"LOCAL_RANK":                   itoa(localRank),
		"RANK":                         itoa(rank),
		"GROUP_RANK":                   itoa(l.NodeRank),
		"ROLE_RANK":                    itoa(rank),
		"ROLE_NAME":                    l.Role,
		"LOCAL_WORLD_SIZE":             itoa(localWorld),
		"WORLD_SIZE":                   itoa(world),
		"GROUP_WORLD_SIZE":             itoa(l.NNodes),
		"ROLE_WORLD_SIZE":              itoa(world),
		"MASTER_ADDR":                  l.MasterAddr,
		"MASTER_PORT":                  itoa(masterPort),
		"TORCHELASTIC_RESTART_COUNT":   itoa(restart),
		"TORCHELASTIC_MAX_RESTARTS":    itoa(l.MaxRestarts),
		"TORCHELASTIC_RUN_ID":          l.RunID,
		"TORCHELASTIC_USE_AGENT_STORE": "True",
		"TORCHELASTIC_ERROR_FILE":      errFile,
		"GOMEGATRON_STORE_ADDR":        storeAddr,
		"GOMEGATRON_JOB_TOKEN":         token,
	}
	if !baseHas("TORCH_NCCL_ASYNC_ERROR_HANDLING") {
		env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"
	}
	if localWorld > 1 && !baseHas("OMP_NUM_THREADS") {
		env["OMP_NUM_THREADS"] = "1"
	}
	return env
}

// exitCode turns a finished process's state into torchelastic's convention: the exit status,
// or minus the signal that killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -int(syscall.SIGKILL)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return ps.ExitCode()
}

// killGroup signals a worker's process group (its pid is the group id, from Setpgid).
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		syscall.Kill(-pid, sig)
	}
}

// openLog creates a log file in the attempt directory of a local rank.
func openLog(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("worker log: %w", err)
	}
	return f, nil
}

// startWorker spawns local rank lr in its own process group with its output routed.
func (a *agent) startWorker(attempt, lr int, baseHas func(string) bool, idx int, events chan<- exitEvent) (*worker, error) {
	l := a.l
	dir := filepath.Join(a.runDir, "attempt_"+strconv.Itoa(attempt), strconv.Itoa(lr))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("worker log directory: %w", err)
	}
	errFile := filepath.Join(dir, "error.json")
	env := WorkerEnv(l, lr, attempt, a.port, errFile, a.storeAddr, a.token, baseHas)
	rank, _ := strconv.Atoi(env["RANK"])
	localRank, _ := strconv.Atoi(env["LOCAL_RANK"])
	w := &worker{localRank: localRank, rank: rank, errFile: errFile, outDone: make(chan struct{})}

	cmd := exec.Command(a.Argv[0], a.Argv[1:]...)
	cmd.Env = envList(a.Env, env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if l.NProcPerNode == 1 || l.ProcessLevel {
		cmd.Stdin = os.Stdin
	}
	prefix := ""
	if !l.ProcessLevel && l.NProcPerNode > 1 {
		prefix = linePrefix(a.getenv("TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"), l.Role, rank, localRank)
	}
	var pumps []func()
	var closeAfterStart []*os.File
	for s, bit := range []Std{StdOut, StdErr} {
		name, sink := "stdout.log", a.stdout
		if s == 1 {
			name, sink = "stderr.log", a.stderr
		}
		toFile := a.LogDir != "" || a.redirect(lr)&bit != 0 || a.tee(lr)&bit != 0
		toConsole := (a.filter == nil || a.filter[lr]) && (a.redirect(lr)&bit == 0 || a.tee(lr)&bit != 0)
		var dst *os.File
		switch {
		case !toFile && !toConsole:
			continue // /dev/null
		case !toFile && prefix == "":
			if f, ok := sink.w.(*os.File); ok {
				dst = f // inherit the console directly: keeps a terminal a terminal
			}
		}
		if dst == nil {
			r, wp, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			var file *os.File
			if toFile {
				if file, err = openLog(dir, name); err != nil {
					return nil, err
				}
			}
			var console *lineSink
			if toConsole {
				console = sink
			}
			dst = wp
			closeAfterStart = append(closeAfterStart, wp)
			w.readEnds = append(w.readEnds, r)
			pumps = append(pumps, func() { pump(r, file, console, prefix) })
		}
		if s == 0 {
			cmd.Stdout = dst
		} else {
			cmd.Stderr = dst
		}
	}
	w.cmd = cmd
	err := a.spawn.start(cmd)
	for _, f := range closeAfterStart {
		f.Close()
	}
	if err != nil {
		for _, r := range w.readEnds {
			r.Close()
		}
		return nil, fmt.Errorf("starting worker local rank %d (%s): %w", lr, a.Argv[0], err)
	}
	var wg sync.WaitGroup
	for _, p := range pumps {
		wg.Add(1)
		go func() { defer wg.Done(); p() }()
	}
	go func() { wg.Wait(); close(w.outDone) }()
	go func() {
		cmd.Wait()
		events <- exitEvent{idx: idx, code: exitCode(cmd.ProcessState), at: time.Now()}
	}()
	return w, nil
}

// stop sends sig to every live worker's process group, waits up to the grace period for
// them to exit, then SIGKILLs the stragglers; then reaps.
// It returns the failures of workers that exited for reasons of their own rather than from
// the signals sent here (a non-zero code, or a signal golaunch did not send): their exit
// events can reach the monitor after another worker's (a SIGKILLed rank's wait may return
// after its peers have already failed on its account), and the summary must still list them.
func (a *agent) stop(workers []*worker, events <-chan exitEvent, sig syscall.Signal) []Failure {
	var earlier []Failure
	live := 0
	for _, w := range workers {
		if !w.exited {
			killGroup(w.cmd.Process.Pid, sig)
			live++
		}
	}
	grace := time.NewTimer(a.l.GracePeriod)
	defer grace.Stop()
	killed := false
	for live > 0 {
		select {
		case ev := <-events:
			workers[ev.idx].exited = true
			live--
			if ev.code != 0 && ev.code != -int(sig) && !(killed && ev.code == -int(syscall.SIGKILL)) {
				earlier = append(earlier, a.failure(workers[ev.idx], ev))
			}
		case <-grace.C:
			if !killed {
				killed = true
				for _, w := range workers {
					if !w.exited {
						killGroup(w.cmd.Process.Pid, syscall.SIGKILL)
					}
				}
			}
		}
	}
	a.reap(workers)
	return earlier
}

// reap kills whatever is left in the workers' process groups (no orphan survives) and waits
// for their output to drain.
func (a *agent) reap(workers []*worker) {
	for _, w := range workers {
		killGroup(w.cmd.Process.Pid, syscall.SIGKILL)
	}
	timeout := time.After(2 * time.Second)
	for _, w := range workers {
		select {
		case <-w.outDone:
		case <-timeout:
			for _, r := range w.readEnds {
				r.Close()
			}
		}
	}
}
