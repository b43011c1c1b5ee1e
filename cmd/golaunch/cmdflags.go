package main

import (
	"io"
	"os"

	"github.com/alecthomas/kong"
)

// kongExit carries kong's exit request (after --help) out of the parser.
type kongExit int

// parseCommand parses a builtin command's flags into cmd with kong. done is true when the
// command should stop without error (--help was printed).
func parseCommand(cmd any, name, desc string, args []string, stdout io.Writer) (done bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			done = true
			if code != 0 {
				err = errUsage
			}
		}
	}()
	parser, err := kong.New(cmd, kong.Name(name), kong.Description(desc),
		kong.Exit(func(code int) { panic(kongExit(code)) }), kong.Writers(stdout, os.Stderr))
	if err != nil {
		return false, err
	}
	_, err = parser.Parse(args)
	return false, err
}

type usageError struct{}

func (usageError) Error() string { return "invalid usage" }

var errUsage error = usageError{}
