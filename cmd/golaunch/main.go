// Command golaunch is gomegatron's one user binary: a torchrun-compatible launcher, followed
// by a built-in command (pretrain, finetune, generate, evaluate, …) or any executable.
//
//	golaunch [launcher flags] COMMAND [args…]
//
// Launcher flags are torchrun's (--nproc-per-node, --nnodes, --node-rank, --master-addr,
// --master-port, --standalone, --max-restarts, --log-dir, -r/--redirects, -t/--tee,
// --local-ranks-filter, --rdzv-id/--run-id, --role) plus --env-style; they stop at the first
// positional argument, and everything after it belongs to COMMAND.
//
// With no launcher flag, no platform environment and a builtin COMMAND, the builtin runs in
// this process (world size 1). Otherwise golaunch spawns the local workers — this binary
// running `COMMAND args…` for a builtin, else the executable — with torchrun's worker
// environment, or, under a process-level platform (Slurm one task per GPU, mpirun, or a
// parent launcher), runs COMMAND directly as the rank the environment names.
//
// Unlike torchrun, worker output lines are always prefixed with "[<role><local_rank>]:" when
// a node runs more than one worker (torchrun prefixes only with --tee/--redirects), and with
// --log-dir every rank's stdout.log and stderr.log are written even without -r/-t.
package main

import (
	"errors"
	"fmt"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/launch"
)

func main() {
	os.Exit(golaunch(os.Args[1:]))
}

func usage() string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		if !strings.HasPrefix(n, "_") { // hidden test commands
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: golaunch [launcher flags] COMMAND [args…]\n\nCOMMAND is a builtin or any executable.\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, builtins[n].summary)
	}
	b.WriteString("\n")
	b.WriteString(launch.Usage())
	return b.String()
}

func golaunch(args []string) int {
	opts, rest, err := launch.ParseArgs(args, os.Getenv)
	if errors.Is(err, launch.ErrHelp) {
		fmt.Print(usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "golaunch: %v\n", err)
		return 2
	}
	if len(rest) == 0 {
		fmt.Fprint(os.Stderr, usage())
		return 2
	}
	name, cmdArgs := rest[0], rest[1:]
	b, isBuiltin := builtins[name]
	var argv []string
	if isBuiltin {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "golaunch: cannot find its own executable to start workers: %v\n", err)
			return 1
		}
		argv = append([]string{self, name}, cmdArgs...)
	} else {
		path, err := exec.LookPath(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "golaunch: unknown command %q: not a builtin and not an executable (%v)\n\n%s", name, err, usage())
			return 2
		}
		argv = append([]string{path}, cmdArgs...)
	}

	layout, err := launch.Resolve(opts, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "golaunch: %v\n", err)
		return 2
	}
	runBuiltin := func() error { return b.run(cmdArgs) }

	if isBuiltin && !opts.FlagsGiven() && !layout.ProcessLevel && layout.NNodes == 1 &&
		layout.Source["nnodes"] == "default" && layout.Source["nproc-per-node"] == "default" {
		// Nothing asks for more than one process: run the builtin here, world size 1.
		if err := runBuiltin(); err != nil {
			fmt.Fprintf(os.Stderr, "golaunch %s: %v\n", name, err)
			return 1
		}
		return 0
	}
	worker := layout.ProcessLevel && layout.AgentStore != "" && layout.AgentStore != "torch"
	if !worker && (!layout.ProcessLevel || layout.Rank == 0) {
		layout.Print(os.Stderr, name)
	}
	if layout.ProcessLevel && isBuiltin {
		return launch.RunInProcess(layout, os.Getenv, os.Stderr, runBuiltin)
	}
	return launch.Run(launch.Spec{
		Layout:      layout,
		Entrypoint:  name,
		Argv:        argv,
		Env:         withCUDALibDirs(os.Environ()),
		LogDir:      opts.LogDir,
		Redirects:   opts.Redirects,
		Tee:         opts.Tee,
		RanksFilter: opts.LocalRanksFilter,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
	})
}

// withCUDALibDirs passes the CUDA/NCCL library folders found here (pip wheels, CUDA_HOME, …)
// to the workers: GOMEGATRON_CUDA_LIB_DIRS for our loader, and in front of LD_LIBRARY_PATH
// because NVRTC loads its builtins library by soname.
func withCUDALibDirs(env []string) []string {
	dirs := dl.LibDirsFromEnv()
	if len(dirs) == 0 {
		return env
	}
	joined := strings.Join(dirs, ":")
	ld := joined
	if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
		ld += ":" + old
	}
	return append(env, "GOMEGATRON_CUDA_LIB_DIRS="+joined, "LD_LIBRARY_PATH="+ld)
}
