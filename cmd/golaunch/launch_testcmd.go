package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// Hidden builtins (names start with "_", left out of the help) that the launcher tests run
// as workers: they exercise the builtin path (same binary, in-process run, RecordErrors).
func init() {
	register("_envdump", "print the environment, sorted (launcher tests)", func(args []string) error {
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Println(kv)
		}
		return nil
	})
	register("_testworker", "configurable misbehaving worker (launcher tests)", testWorker)
}

// testWorker does what its flags say, as the rank named by RANK:
//
//	-fail-rank R     this rank fails (the others sleep -sleep, then succeed)
//	-how H           how it fails: exit (code -code), error, panic, sigkill
//	-first-only      fail only when TORCHELASTIC_RESTART_COUNT is 0
//	-lines N         print N numbered lines on stdout and on stderr first
//	-piddir D        write D/<rank>.pid and D/<rank>.child (a grandchild `sleep`)
//	-trap            on SIGTERM print "rank R got SIGTERM" and exit 143
func testWorker(args []string) error {
	fs := flag.NewFlagSet("_testworker", flag.ContinueOnError)
	failRank := fs.Int("fail-rank", -1, "")
	how := fs.String("how", "exit", "")
	code := fs.Int("code", 3, "")
	sleep := fs.Duration("sleep", 0, "")
	firstOnly := fs.Bool("first-only", false, "")
	lines := fs.Int("lines", 0, "")
	pidDir := fs.String("piddir", "", "")
	trap := fs.Bool("trap", false, "")
	delay := fs.Duration("delay", 0, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rank, _ := strconv.Atoi(os.Getenv("RANK"))
	if *trap {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		go func() {
			<-ch
			fmt.Printf("rank %d got SIGTERM\n", rank)
			os.Exit(143)
		}()
	}
	if *pidDir != "" {
		child := exec.Command("sleep", "1000")
		if err := child.Start(); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(*pidDir, fmt.Sprintf("%d.child", rank)), []byte(strconv.Itoa(child.Process.Pid)), 0o644)
		os.WriteFile(filepath.Join(*pidDir, fmt.Sprintf("%d.pid", rank)), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	for i := 0; i < *lines; i++ {
		fmt.Printf("out %d rank %d\n", i, rank)
		fmt.Fprintf(os.Stderr, "err %d rank %d\n", i, rank)
	}
	fail := rank == *failRank && (!*firstOnly || os.Getenv("TORCHELASTIC_RESTART_COUNT") == "0")
	if !fail {
		time.Sleep(*sleep)
		return nil
	}
	time.Sleep(*delay)
	switch *how {
	case "exit":
		os.Exit(*code)
	case "error":
		return fmt.Errorf("rank %d failed on purpose", rank)
	case "panic":
		panic(fmt.Sprintf("rank %d panics on purpose", rank))
	case "sigkill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	return fmt.Errorf("-how %q: want exit, error, panic or sigkill", *how)
}
