package main

// A builtin is a command golaunch runs in-process: alone (`golaunch evaluate …`), or as the
// worker program every launched process runs (`golaunch --nproc-per-node 8 pretrain …`).
type builtin struct {
	summary string
	run     func(args []string) error
}

// builtins is the command registry, filled by each command's init.
var builtins = map[string]builtin{}

func register(name, summary string, run func(args []string) error) {
	if _, dup := builtins[name]; dup {
		panic("golaunch: command registered twice: " + name)
	}
	builtins[name] = builtin{summary, run}
}
