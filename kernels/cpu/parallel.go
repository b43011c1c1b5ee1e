package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelFor runs fn over [0, n) split into contiguous chunks, one goroutine per chunk,
// with at most GOMAXPROCS chunks and at least grain items per chunk (so small ops stay on
// the calling goroutine). fn must write disjoint outputs for disjoint ranges; chunking
// never changes results because no op reduces across chunks.
func parallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := runtime.GOMAXPROCS(0)
	if w := n / grain; w < workers {
		workers = w
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	fn(0, min(chunk, n))
	wg.Wait()
}

// grainFor returns a chunk size (in items) so that a chunk does about 32k units of work when
// one item costs perItem units.
func grainFor(perItem int) int {
	if perItem < 1 {
		perItem = 1
	}
	return max(1, 32768/perItem)
}

// parallelTasks runs fn(i) for every task i < n on up to GOMAXPROCS goroutines that take
// tasks one at a time, so uneven tasks (causal attention blocks) balance. Tasks must write
// disjoint outputs; which goroutine runs a task never changes its result.
func parallelTasks(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			fn(i)
		}
	}
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
