package launch

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
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
