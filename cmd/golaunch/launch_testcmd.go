package main

import (
	"context"
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

	"github.com/gomegatron/gomegatron/comm/store"
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
//	-ignore-term     ignore SIGTERM (the launcher must SIGKILL after the grace period)
//	-barrier         join a store barrier of WORLD_SIZE ranks through GOMEGATRON_STORE_ADDR
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
	ignoreTerm := fs.Bool("ignore-term", false, "")
	barrier := fs.Bool("barrier", false, "")
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
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	if *barrier {
		if err := storeBarrier(rank); err != nil {
			return err
		}
		fmt.Printf("rank %d passed the barrier\n", rank)
	}
	if *pidDir != "" {
		child := exec.Command("sleep", "1000")
		if err := child.Start(); err != nil {
			return err
		}
		// Written then renamed, so a reader never sees a half-written file.
		for name, pid := range map[string]int{"child": child.Process.Pid, "pid": os.Getpid()} {
			tmp := filepath.Join(*pidDir, fmt.Sprintf(".%d.%s.tmp", rank, name))
			os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644)
			os.Rename(tmp, filepath.Join(*pidDir, fmt.Sprintf("%d.%s", rank, name)))
		}
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

func storeBarrier(rank int) error {
	world, err := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	if err != nil {
		return fmt.Errorf("WORLD_SIZE: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := store.Dial(ctx, os.Getenv("GOMEGATRON_STORE_ADDR"), os.Getenv("GOMEGATRON_JOB_TOKEN"))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Barrier(ctx, "testworker/"+os.Getenv("TORCHELASTIC_RESTART_COUNT"), rank, world)
}
