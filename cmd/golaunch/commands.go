package main

import (
	"fmt"
	"sort"
)

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

func builtinList() string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	s := ""
	for _, n := range names {
		s += fmt.Sprintf("  %-10s %s\n", n, builtins[n].summary)
	}
	return s
}
