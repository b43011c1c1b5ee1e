// Command golaunch is gomegatron's one user binary: a torchrun-compatible launcher, followed
// by a built-in command (pretrain, finetune, generate, evaluate, …) or any executable.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: golaunch [launcher flags] COMMAND [args]\n\ncommands:\n%s", builtinList())
		os.Exit(2)
	}
	if b, ok := builtins[os.Args[1]]; ok {
		if err := b.run(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "golaunch %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "golaunch: unknown command %q\n\ncommands:\n%s", os.Args[1], builtinList())
	os.Exit(2)
}
