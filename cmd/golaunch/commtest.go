package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/tensor"
)

// _commtest is the worker of comm/tcp's multi-process tests and of its all-reduce benchmark
// (hidden: names starting with "_" are left out of the help).
func init() {
	register("_commtest", "collective checks and benchmark over comm/tcp (tests)", commTest)
}

// commTest joins the world from the launcher's environment and, by flags:
//
//	(default)        runs every collective on every dtype and size in -sizes (F32 and BF16
//	                 also at -large elements; reduce-scatter and all-gather in place too)
//	                 against comm.ReduceSerial, plus Split,
//	                 Send/Recv and Barrier, and prints "rank R: _commtest passed (N checks)"
//	-kill-rank R     rank R SIGKILLs itself after a barrier; the others all-reduce until they
//	                 fail and print "rank R: error: …" (the error must name rank R)
//	-bench SIZES     all-reduce (sum, f32) SIZES bytes -iters times each; rank 0 prints
//	                 "bench <bytes> <seconds per all-reduce> <CPU seconds per all-reduce,
//	                 all ranks>" (best of -rounds)
func commTest(args []string) error {
	fs := flag.NewFlagSet("_commtest", flag.ContinueOnError)
	sizes := fs.String("sizes", "0,1,7,1003", "element counts to check")
	large := fs.Int("large", 0, "also check F32/BF16 at this many elements (0: no)")
	timeout := fs.Duration("timeout", 20*time.Second, "per-operation timeout")
	killRank := fs.Int("kill-rank", -1, "rank that kills itself")
	bench := fs.String("bench", "", "benchmark sizes in bytes")
	iters := fs.Int("iters", 10, "benchmark iterations per size")
	rounds := fs.Int("rounds", 3, "benchmark rounds (best kept)")
	seg := fs.Int("seg", 0, "comm/tcp SegmentBytes (0: default)")
	small := fs.Int("small", 0, "comm/tcp SmallBytes (0: default)")
	profile := fs.String("cpuprofile", "", "write a CPU profile per rank to this prefix + rank")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile + os.Getenv("RANK"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := tcp.InitFromEnv(ctx, tcp.Options{Timeout: *timeout, SegmentBytes: *seg, SmallBytes: *small})
	if err != nil {
		return err
	}
	defer c.Close()
	switch {
	case *killRank >= 0:
		return killTest(c, *killRank)
	case *bench != "":
		return benchAllReduce(c, *bench, *iters, *rounds)
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("-sizes: %q: %v", s, err)
		}
		ns = append(ns, n)
	}
	checks := 0
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.I32, tensor.I64, tensor.U8} {
		ops := []comm.Op{comm.Sum, comm.Max, comm.Min}
		if dt.IsFloat() {
			ops = append(ops, comm.Avg)
		}
		for _, m := range ns {
			k, err := checkCollectives(c, dt, m, m, ops)
			if err != nil {
				return fmt.Errorf("rank %d: %v, %d elements: %w", c.Rank(), dt, m, err)
			}
			checks += k
		}
		if *large > 0 && (dt == tensor.F32 || dt == tensor.BF16) {
			// Reduce-scatter and all-gather move *large elements in all (not per rank).
			k, err := checkCollectives(c, dt, *large, *large/c.Size()+1, []comm.Op{comm.Sum})
			if err != nil {
				return fmt.Errorf("rank %d: %v, %d elements: %w", c.Rank(), dt, *large, err)
			}
			checks += k
		}
	}
	k, err := checkGroups(c)
	if err != nil {
		return fmt.Errorf("rank %d: %w", c.Rank(), err)
	}
	fmt.Printf("rank %d: _commtest passed (%d checks)\n", c.Rank(), checks+k)
	return nil
}

// commInput is rank r's tensor: the same on every process, so each can compute the reference.
func commInput(dt tensor.DType, m, r int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(uint64(m), uint64(r)<<8|uint64(dt)))
	t := tensor.New(dt, m)
	if dt.IsFloat() {
		v := make([]float32, m)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(10)))
		}
		tensor.ConvertFromF32(t, v)
		return t
	}
	for i := range t.Data {
		t.Data[i] = byte(rng.Uint32())
	}
	return t
}

// checkCollectives checks all-reduce and broadcast of m elements and reduce-scatter and
// all-gather of g elements per rank.
func checkCollectives(c comm.Comm, dt tensor.DType, m, g int, ops []comm.Op) (int, error) {
	n, me := c.Size(), c.Rank()
	in := make([]*tensor.Tensor, n)
	big := make([]*tensor.Tensor, n)
	small := make([]*tensor.Tensor, n)
	for r := range in {
		in[r] = commInput(dt, m, r)
		big[r] = commInput(dt, n*g, r+1000)
		small[r] = commInput(dt, g, r+2000)
	}
	checks := 0
	for _, op := range ops {
		want, err := comm.ReduceSerial(in, op)
		if err != nil {
			return checks, err
		}
		x := in[me].Clone()
		if err := c.AllReduce(x, op); err != nil {
			return checks, err
		}
		if !bytes.Equal(x.Data, want.Data) {
			return checks, fmt.Errorf("AllReduce %v differs from the serial reference", op)
		}
		want, _ = comm.ReduceSerial(big, op)
		out := tensor.New(dt, g)
		if err := c.ReduceScatter(out, big[me], op); err != nil {
			return checks, err
		}
		es := dt.Size()
		if !bytes.Equal(out.Data, want.Data[me*g*es:(me+1)*g*es]) {
			return checks, fmt.Errorf("ReduceScatter %v differs from the serial reference", op)
		}
		// In place (NCCL's form, the distributed optimizer's): out is this rank's chunk of in.
		buf := big[me].Clone()
		if err := c.ReduceScatter(buf.Slice(me*g, (me+1)*g), buf, op); err != nil {
			return checks, err
		}
		if !bytes.Equal(buf.Data[me*g*es:(me+1)*g*es], want.Data[me*g*es:(me+1)*g*es]) {
			return checks, fmt.Errorf("in-place ReduceScatter %v differs from the serial reference", op)
		}
		checks += 3
	}
	all := tensor.New(dt, n*g)
	if err := c.AllGather(all, small[me]); err != nil {
		return checks, err
	}
	inPlace := tensor.New(dt, n*g)
	copy(inPlace.Data[me*g*dt.Size():], small[me].Data)
	if err := c.AllGather(inPlace, inPlace.Slice(me*g, (me+1)*g)); err != nil {
		return checks, err
	}
	for r := range n {
		if !bytes.Equal(all.Data[r*g*dt.Size():(r+1)*g*dt.Size()], small[r].Data) {
			return checks, fmt.Errorf("AllGather: chunk %d differs", r)
		}
	}
	if !bytes.Equal(inPlace.Data, all.Data) {
		return checks, fmt.Errorf("in-place AllGather differs from the out-of-place one")
	}
	checks++
	root := m % n
	x := in[me].Clone()
	if err := c.Broadcast(x, root); err != nil {
		return checks, err
	}
	if !bytes.Equal(x.Data, in[root].Data) {
		return checks, fmt.Errorf("Broadcast from %d differs", root)
	}
	return checks + 2, nil
}

// checkGroups splits the world into even and odd ranks (reverse order by key), reduces the
// world ranks over each, passes a token around the world ring and ends with a barrier.
func checkGroups(c comm.Comm) (int, error) {
	n, me := c.Size(), c.Rank()
	sub, err := c.Split(me%2, -me)
	if err != nil {
		return 0, err
	}
	var members []int64
	for r := n - 1; r >= 0; r-- {
		if r%2 == me%2 {
			members = append(members, int64(r))
		}
	}
	if sub.Size() != len(members) || members[sub.Rank()] != int64(me) {
		return 0, fmt.Errorf("Split: rank %d of %d, want position of %d in %v", sub.Rank(), sub.Size(), me, members)
	}
	got := tensor.New(tensor.I64, sub.Size())
	if err := sub.AllGather(got, tensor.FromI64([]int64{int64(me)}, 1)); err != nil {
		return 0, err
	}
	for i, v := range got.I64() {
		if v != members[i] {
			return 0, fmt.Errorf("Split: group gathers %v, want %v", got.I64(), members)
		}
	}
	if n > 1 {
		tok := tensor.FromI64([]int64{int64(me)}, 1)
		if err := c.Send(tok, (me+1)%n); err != nil {
			return 0, err
		}
		if err := c.Recv(tok, (me+n-1)%n); err != nil {
			return 0, err
		}
		if tok.I64()[0] != int64((me+n-1)%n) {
			return 0, fmt.Errorf("Recv: got %d from rank %d", tok.I64()[0], (me+n-1)%n)
		}
	}
	return 2, c.Barrier()
}

// killTest: rank kill dies by SIGKILL in the middle of the run; the others must fail fast
// with an error naming it. Survivors delay the launcher's SIGTERM until they have reported.
func killTest(c comm.Comm, kill int) error {
	start := time.Now()
	done := make(chan struct{})
	// report prints the outcome before releasing a pending SIGTERM exit.
	report := func(err error) error {
		fmt.Fprintf(os.Stderr, "rank %d: error after %.3fs: %v\n", c.Rank(), time.Since(start).Seconds(), err)
		close(done)
		if err == nil {
			return fmt.Errorf("rank %d: rank %d was killed but the all-reduces kept succeeding", c.Rank(), kill)
		}
		return err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		os.Exit(143)
	}()
	if err := c.Barrier(); err != nil {
		return report(err)
	}
	if c.Rank() == kill {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	x := tensor.New(tensor.F32, 1<<18)
	var err error
	for i := 0; err == nil && i < 100000; i++ {
		err = c.AllReduce(x, comm.Sum)
	}
	return report(err)
}

// cpuSeconds is this process's user + system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func benchAllReduce(c comm.Comm, sizes string, iters, rounds int) error {
	for _, s := range strings.Split(sizes, ",") {
		nb, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("-bench: %q: %v", s, err)
		}
		x := tensor.New(tensor.F32, max(1, nb/4))
		if err := c.AllReduce(x, comm.Sum); err != nil { // warm-up
			return err
		}
		best, bestCPU := time.Duration(1<<62), 1e300
		for range rounds {
			if err := c.Barrier(); err != nil {
				return err
			}
			cpu0 := cpuSeconds()
			start := time.Now()
			for range iters {
				if err := c.AllReduce(x, comm.Sum); err != nil {
					return err
				}
			}
			// A round takes as long as its slowest rank; its CPU cost is the sum over ranks.
			el := tensor.FromF32([]float32{float32(time.Since(start).Seconds())}, 1)
			if err := c.AllReduce(el, comm.Max); err != nil {
				return err
			}
			cpu := tensor.New(tensor.F64, 1)
			cpu.F64()[0] = cpuSeconds() - cpu0
			if err := c.AllReduce(cpu, comm.Sum); err != nil {
				return err
			}
			best = min(best, time.Duration(float64(el.F32()[0])*float64(time.Second)/float64(iters)))
			bestCPU = min(bestCPU, cpu.F64()[0]/float64(iters))
		}
		if c.Rank() == 0 {
			fmt.Printf("bench %d %.9f %.9f\n", x.Bytes(), best.Seconds(), bestCPU)
		}
	}
	return nil
}
