package launch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gomegatron/gomegatron/comm/store"
)

// Spec is one launch: the resolved layout, the command every local worker runs, and the
// logging choices.
type Spec struct {
	Layout      *Layout
	Entrypoint  string   // the name in the failure summary ("pretrain", "./train")
	Argv        []string // Argv[0] is the executable's path
	Env         []string // parent environment; the workers inherit it
	LogDir      string   // --log-dir ("" = a temporary directory for error files)
	Redirects   string
	Tee         string
	RanksFilter string
	Stdout      io.Writer
	Stderr      io.Writer
	// RdzvTimeout bounds the join barrier (default 600 s, env GOLAUNCH_RDZV_TIMEOUT).
	RdzvTimeout time.Duration
}

// signals forwarded to the workers, as torchrun's --signals-to-handle default.
var handledSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

type agent struct {
	Spec
	l         *Layout
	host      string
	parts     int // rendezvous participants: nodes (node level) or ranks (process level)
	part      int
	token     string
	storeAddr string
	port      int // MASTER_PORT given to workers
	cli       *store.Client
	spawn     *spawner
	runDir    string
	tmpBase   string // temporary log base (no --log-dir), removed after a clean run
	redirect  func(int) Std
	tee       func(int) Std
	filter    map[int]bool
	stdout    *lineSink
	stderr    *lineSink

	sigNotify chan syscall.Signal
	gotSig    atomic.Int32
}

// outcome of one attempt.
type outcome struct {
	failures []Failure
	remote   string // another participant failed
	sig      syscall.Signal
	err      error
}

// JobToken is the token the store admits: GOMEGATRON_JOB_TOKEN when the user set one, a
// random one for --standalone, else a hash of what every node of the job agrees on (run id,
// master address and port, node count, platform job id).
func JobToken(l *Layout, getenv func(string) string) string {
	if t := getenv("GOMEGATRON_JOB_TOKEN"); t != "" {
		return t
	}
	if l.Standalone {
		return randomID()
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("gomegatron-job|%s|%s|%d|%d|%s", l.RunID, l.MasterAddr, l.MasterPort, l.NNodes, l.JobID)))
	return hex.EncodeToString(h[:16])
}

// Run launches the local workers of s.Layout and supervises them until they all succeed,
// one fails past --max-restarts, or golaunch gets a signal. It returns golaunch's exit
// code: 0, 1 (failure, after printing torchelastic's summary) or 128+signal.
func Run(s Spec) int {
	a := &agent{Spec: s, l: s.Layout, sigNotify: make(chan syscall.Signal, 8)}
	code, err := a.run()
	if err != nil {
		fmt.Fprintf(a.Stderr, "golaunch: error: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func (a *agent) getenv(k string) string {
	for i := len(a.Env) - 1; i >= 0; i-- {
		if kv := a.Env[i]; len(kv) > len(k) && kv[len(k)] == '=' && kv[:len(k)] == k {
			return kv[len(k)+1:]
		}
	}
	return ""
}

func (a *agent) run() (int, error) {
	l := a.l
	a.host, _ = os.Hostname()
	a.stdout, a.stderr = &lineSink{w: a.Stdout}, &lineSink{w: a.Stderr}
	var err error
	if a.redirect, err = parseStd("--redirects", a.Redirects); err != nil {
		return 1, err
	}
	if a.tee, err = parseStd("--tee", a.Tee); err != nil {
		return 1, err
	}
	if a.filter, err = parseRanksFilter(a.RanksFilter); err != nil {
		return 1, err
	}
	if len(a.Argv) == 0 {
		return 1, errors.New("no command to launch")
	}
	if a.RdzvTimeout <= 0 {
		a.RdzvTimeout = 600 * time.Second
		if v := a.getenv("GOLAUNCH_RDZV_TIMEOUT"); v != "" {
			secs, err := strconv.ParseFloat(v, 64)
			if err != nil || secs <= 0 {
				return 1, fmt.Errorf("GOLAUNCH_RDZV_TIMEOUT=%q: want seconds", v)
			}
			a.RdzvTimeout = time.Duration(secs * float64(time.Second))
		}
	}

	// Signals: remember the first, cancel rendezvous waits, wake the monitor.
	sigCh := make(chan os.Signal, 8)
	signal.Notify(sigCh, handledSignals...)
	defer signal.Stop(sigCh)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for s := range sigCh {
			sig := s.(syscall.Signal)
			a.gotSig.CompareAndSwap(0, int32(sig))
			cancel()
			select {
			case a.sigNotify <- sig:
			default:
			}
		}
	}()

	a.parts, a.part = l.NNodes, l.NodeRank
	if l.ProcessLevel {
		a.parts, a.part = l.WorldSize, l.Rank
	}
	srv, err := a.startStore(ctx)
	if srv != nil {
		defer srv.Close()
	}
	if err != nil {
		return a.sigCode(1), err
	}
	defer a.cli.Close()

	if err := a.makeRunDir(); err != nil {
		return 1, err
	}
	a.spawn = newSpawner()
	for attempt := 0; ; attempt++ {
		if err := a.rendezvous(ctx, attempt); err != nil {
			return a.sigCode(1), err
		}
		out := a.runAttempt(ctx, attempt)
		if out.sig != 0 {
			return 128 + int(out.sig), nil
		}
		if out.err != nil {
			return a.sigCode(1), out.err
		}
		if len(out.failures) == 0 && out.remote == "" {
			out = a.exitBarrier(ctx, attempt)
			if out.sig != 0 {
				return 128 + int(out.sig), nil
			}
			if out.err != nil {
				return a.sigCode(1), out.err
			}
			if out.remote == "" {
				if a.tmpBase != "" {
					os.RemoveAll(a.tmpBase)
				}
				return 0, nil
			}
		}
		if attempt < l.MaxRestarts {
			why := out.remote
			if why == "" {
				why = fmt.Sprintf("local worker rank %d exited with code %d", out.failures[0].Rank, out.failures[0].ExitCode)
			}
			fmt.Fprintf(a.Stderr, "golaunch: worker group failed (%s); restarting all workers (restart %d of %d)\n", why, attempt+1, l.MaxRestarts)
			continue
		}
		if len(out.failures) > 0 {
			fmt.Fprintln(a.Stderr, FormatSummary(a.Entrypoint, a.host, out.failures))
		} else {
			fmt.Fprintf(a.Stderr, "golaunch: %s; stopped the local workers\n", out.remote)
		}
		return 1, nil
	}
}

// sigCode returns 128+signal when a signal interrupted the launcher, else code.
func (a *agent) sigCode(code int) int {
	if s := a.gotSig.Load(); s != 0 {
		return 128 + int(s)
	}
	return code
}

// key names a rendezvous key of this run; node-level agents and process-level launchers
// (which may share a parent's store) use separate namespaces.
func (a *agent) key(attempt int, name string) string {
	level := "nodes"
	if a.l.ProcessLevel {
		level = "ranks"
	}
	return fmt.Sprintf("golaunch/%s/%s/attempt%d/%s", a.l.RunID, level, attempt, name)
}

// startStore hosts the store on participant 0 (unless a parent agent hosts one) and connects.
func (a *agent) startStore(ctx context.Context) (*store.Server, error) {
	l := a.l
	a.token = JobToken(l, a.getenv)
	port := l.MasterPort
	a.port = port
	var srv *store.Server
	switch {
	case l.AgentStore != "" && l.AgentStore != "torch":
		a.storeAddr = l.AgentStore
		a.token = a.getenv("GOMEGATRON_JOB_TOKEN")
	default:
		if l.AgentStore == "torch" {
			port++ // torchrun's own c10d store holds MASTER_PORT
		}
		a.storeAddr = net.JoinHostPort(l.MasterAddr, strconv.Itoa(port))
		if a.part == 0 {
			listen := net.JoinHostPort(l.MasterAddr, strconv.Itoa(port))
			if a.parts > 1 {
				listen = net.JoinHostPort("", strconv.Itoa(port))
			}
			var err error
			if srv, err = store.Listen(listen, a.token); err != nil {
				return nil, fmt.Errorf("hosting the rendezvous store (master %s:%d): %w", l.MasterAddr, port, err)
			}
			fmt.Fprintf(a.Stderr, "golaunch: rendezvous store listening on %s\n", srv.Addr())
			_, p, _ := net.SplitHostPort(srv.Addr())
			if l.Standalone {
				a.port, _ = strconv.Atoi(p)
			}
			a.storeAddr = net.JoinHostPort(l.MasterAddr, p)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, a.RdzvTimeout)
	defer cancel()
	cli, err := store.Dial(dctx, a.storeAddr, a.token)
	if err != nil {
		return srv, fmt.Errorf("joining the rendezvous store: %w", err)
	}
	a.cli = cli
	return srv, nil
}

func (a *agent) makeRunDir() error {
	base := a.LogDir
	if base == "" {
		var err error
		if base, err = os.MkdirTemp("", "torchelastic_"); err != nil {
			return err
		}
		if a.Redirects == "" && a.Tee == "" {
			a.tmpBase = base
		}
	} else if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("--log-dir %s: %w", base, err)
	}
	dir, err := os.MkdirTemp(base, a.l.RunID+"_")
	if err != nil {
		return fmt.Errorf("--log-dir %s: %w", base, err)
	}
	a.runDir = dir
	fmt.Fprintf(a.Stderr, "golaunch: log directory set to: %s\n", dir)
	return nil
}

// rendezvous waits until every participant joined this attempt and checks that every node
// runs the same number of workers.
func (a *agent) rendezvous(ctx context.Context, attempt int) error {
	if a.parts == 1 {
		return nil
	}
	if !a.l.ProcessLevel {
		if err := a.cli.Set(a.key(attempt, "nproc/"+strconv.Itoa(a.part)), []byte(strconv.Itoa(a.l.NProcPerNode))); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, a.RdzvTimeout)
	defer cancel()
	if err := a.cli.Barrier(rctx, a.key(attempt, "join"), a.part, a.parts); err != nil {
		return fmt.Errorf("rendezvous of attempt %d (node rank %d of %d): %w", attempt, a.part, a.parts, err)
	}
	if a.l.ProcessLevel {
		return nil
	}
	for p := 0; p < a.parts; p++ {
		v, err := a.cli.Get(rctx, a.key(attempt, "nproc/"+strconv.Itoa(p)))
		if err != nil {
			return err
		}
		if string(v) != strconv.Itoa(a.l.NProcPerNode) {
			return fmt.Errorf("node %d runs %s workers per node but this node (rank %d) runs %d: --nproc-per-node must agree on every node", p, v, a.part, a.l.NProcPerNode)
		}
	}
	return nil
}

// exitBarrier keeps this node (and the store, on node 0) alive until every participant's
// workers finished; a failure elsewhere meanwhile turns into a remote failure.
func (a *agent) exitBarrier(ctx context.Context, attempt int) outcome {
	if a.parts == 1 {
		return outcome{}
	}
	n, err := a.cli.Add(a.key(attempt, "exit/count"), 1)
	if err != nil {
		return outcome{err: err}
	}
	if n == int64(a.parts) {
		if err := a.cli.Set(a.key(attempt, "exit/done"), []byte("1")); err != nil {
			return outcome{err: err}
		}
	}
	deadline := time.Now().Add(300 * time.Second)
	for {
		if ok, err := a.cli.Check(a.key(attempt, "exit/done")); err != nil {
			return outcome{err: err}
		} else if ok {
			return outcome{err: a.exitAck(attempt)}
		}
		if out, done := a.remoteFailed(attempt); done {
			return out
		}
		if time.Now().After(deadline) {
			return outcome{err: fmt.Errorf("exit barrier: other nodes did not finish within 300 s of this one")}
		}
		select {
		case sig := <-a.sigNotify:
			return outcome{sig: sig}
		case <-time.After(a.l.MonitorInterval):
		}
	}
}

// exitAck: everyone saw the exit barrier complete before the host closes the store (it
// waits up to 30 s for the acknowledgements).
func (a *agent) exitAck(attempt int) error {
	if _, err := a.cli.Add(a.key(attempt, "exit/ack"), 1); err != nil {
		return err
	}
	if a.part != 0 {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		n, err := a.cli.Add(a.key(attempt, "exit/ack"), 0)
		if err != nil || n >= int64(a.parts) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (a *agent) remoteFailed(attempt int) (outcome, bool) {
	v, err := a.cli.Check(a.key(attempt, "failed"))
	if err != nil {
		return outcome{err: fmt.Errorf("lost the rendezvous store: %w", err)}, true
	}
	if !v {
		return outcome{}, false
	}
	who, _ := a.cli.Get(context.Background(), a.key(attempt, "failed"))
	kind := "node"
	if a.l.ProcessLevel {
		kind = "rank"
	}
	return outcome{remote: fmt.Sprintf("%s %s reported a failed worker in attempt %d", kind, who, attempt)}, true
}

// runAttempt starts the local workers and monitors them.
func (a *agent) runAttempt(ctx context.Context, attempt int) outcome {
	n := a.l.NProcPerNode
	if a.l.ProcessLevel {
		n = 1
	}
	baseHas := func(k string) bool { return a.getenv(k) != "" }
	if attempt == 0 && n > 1 && !baseHas("OMP_NUM_THREADS") {
		fmt.Fprintf(a.Stderr, "golaunch: setting OMP_NUM_THREADS=1 for each worker to avoid overloading the system; tune it for best performance\n")
	}
	workers := make([]*worker, 0, n)
	events := make(chan exitEvent, n)
	var out outcome
	for lr := 0; lr < n; lr++ {
		w, err := a.startWorker(attempt, lr, baseHas, len(workers), events)
		if err != nil {
			out = outcome{err: err}
			break
		}
		workers = append(workers, w)
	}
	if out.err != nil {
		a.stop(workers, events, syscall.SIGTERM)
		return out
	}
	var tick <-chan time.Time
	if a.parts > 1 {
		t := time.NewTicker(a.l.MonitorInterval)
		defer t.Stop()
		tick = t.C
	}
	live := len(workers)
	for live > 0 {
		select {
		case ev := <-events:
			live--
			workers[ev.idx].exited = true
			if ev.code == 0 {
				continue
			}
			out.failures = append(out.failures, a.failure(workers[ev.idx], ev))
			// Failures already seen belong to the same poll, as in torchelastic.
		drain:
			for {
				select {
				case ev := <-events:
					live--
					workers[ev.idx].exited = true
					if ev.code != 0 {
						out.failures = append(out.failures, a.failure(workers[ev.idx], ev))
					}
				default:
					break drain
				}
			}
			for _, f := range out.failures {
				fmt.Fprintf(a.Stderr, "golaunch: failed (exitcode: %d) local_rank: %d (pid: %d) of binary: %s\n",
					f.ExitCode, f.LocalRank, f.PID, a.Argv[0])
			}
			if a.parts > 1 {
				// Tell the other nodes first, so they stop while we wait for ours.
				a.cli.Set(a.key(attempt, "failed"), []byte(strconv.Itoa(a.part)))
			}
			out.failures = append(out.failures, a.stop(workers, events, syscall.SIGTERM)...)
			return out
		case sig := <-a.sigNotify:
			fmt.Fprintf(a.Stderr, "golaunch: received %s, forwarding it to the workers\n", sigName(sig))
			a.stop(workers, events, sig)
			return outcome{sig: sig}
		case <-tick:
			if o, done := a.remoteFailed(attempt); done {
				a.stop(workers, events, syscall.SIGTERM)
				return o
			}
		}
	}
	a.reap(workers)
	return out
}

func (a *agent) failure(w *worker, ev exitEvent) Failure {
	return newFailure(w.rank, w.localRank, w.cmd.Process.Pid, ev.code, w.errFile, ev.at)
}

func sigName(s syscall.Signal) string {
	if n := unixSignalName(s); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}
