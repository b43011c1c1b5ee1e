package cpu

import (
	"sync"
	"sync/atomic"
)

// gemmWorkers is the pool of goroutines that join Sgemm calls. A call reserves idle
// workers (never more than are parked or about to park on the channel), so every hand-off
// completes at once, a call never waits for another call's work, and a participant never
// waits on one that has not started. The pool grows to the largest thread count asked for
// and lives for the process; it is the GEMM's second piece of package state.
type gemmWorkers struct {
	mu      sync.Mutex   // serialises starting workers
	started atomic.Int32 // workers started
	idle    atomic.Int32 // workers parked (or about to park) on ch and not reserved
	ch      chan gemmTask
}

// gemmTask hands participant slot pid of job to a worker.
type gemmTask struct {
	job *gemmJob
	pid int
}

var gemmPool = gemmWorkers{ch: make(chan gemmTask)}

// ensure starts workers until n exist and waits until the new ones are idle, so the
// first call after SetGemmThreads already runs in parallel.
func (w *gemmWorkers) ensure(n int) {
	if int(w.started.Load()) >= n {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var ready sync.WaitGroup
	for ; int(w.started.Load()) < n; w.started.Add(1) {
		ready.Add(1)
		go w.loop(&ready)
	}
	ready.Wait()
}

func (w *gemmWorkers) loop(ready *sync.WaitGroup) {
	w.idle.Add(1)
	ready.Done()
	for t := range w.ch {
		t.job.run(t.pid)
		// Become reservable before the caller can return, so back-to-back calls find us.
		w.idle.Add(1)
		t.job.done.Done()
	}
}

// reserve claims one idle worker; the caller must then send it exactly one task.
func (w *gemmWorkers) reserve() bool {
	for {
		v := w.idle.Load()
		if v <= 0 {
			return false
		}
		if w.idle.CompareAndSwap(v, v-1) {
			return true
		}
	}
}
