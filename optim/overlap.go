package optim

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// DefaultBucketSize is Megatron's bucket size with --overlap-grad-reduce: max(40M, 1M·DP)
// elements.
func DefaultBucketSize(dp int) int { return max(40_000_000, 1_000_000*dp) }

// overlap reduces gradient buckets over data parallelism while backward still runs
// (--overlap-grad-reduce). Buckets follow Megatron's rule — parameters in buffer order
// (reverse registration order, the order backward finishes them), a bucket closing once it
// spans BucketSize elements — and a bucket is reduced by a background goroutine on its own
// DP communicator as soon as the last microbatch's backward has finished every parameter
// in it. Parameters marked late (the tied embedding shared across pipeline stages) get a
// bucket of their own that is reduced by Finish, after the embedding-group all-reduce.
//
// Each bucket is all-reduced; with the distributed optimizer the buckets are the layout's
// (NewAdamBuckets) and each is reduce-scattered into this rank's shard of it, as Megatron's.
type overlap struct {
	a        *Adam
	dp, edp  comm.Comm // the DP and expert-DP groups' communicators for the background
	buckets  [][2]int  // [lo, hi) in the grad buffer
	late     []bool
	expert   []bool // buckets of expert weights (reduced over expert DP)
	pending  []int  // parameters of each bucket not yet finished this iteration
	size     []int  // parameters per bucket
	bucketOf map[*layers.Param]int
	queue    chan int
	errs     chan error
	started  bool
	early    int // buckets queued by backward (not by WaitGradSync) since EnableOverlap
}

// EnableOverlap turns on overlapped data-parallel gradient reduction with buckets of at
// least bucketSize elements; late marks parameters reduced only by ReduceGrads. Collective
// over the DP group (it splits a communicator for the background reductions).
func (a *Adam) EnableOverlap(params layers.Params, bucketSize int, late func(*layers.Param) bool) error {
	if a.g.DP == nil || a.g.DP.Size() == 1 {
		return nil
	}
	params = params.Trainable()
	dp, err := a.g.DP.Split(0, a.g.DP.Rank())
	if err != nil {
		return fmt.Errorf("--overlap-grad-reduce: %w", err)
	}
	o := &overlap{a: a, dp: dp, bucketOf: map[*layers.Param]int{}}
	if a.g.ExpertDP != nil {
		if o.edp, err = a.g.ExpertDP.Split(0, a.g.ExpertDP.Rank()); err != nil {
			return fmt.Errorf("--overlap-grad-reduce (expert-data-parallel group): %w", err)
		}
	}
	lay := a.buf.Layout
	if a.Distributed || o.edp != nil {
		// The layout's buckets (NewAdamBuckets with the same size): with the distributed
		// optimizer each is reduce-scattered into this rank's shard; under expert
		// parallelism the expert weights' buckets go over the expert-data-parallel group.
		for _, k := range lay.Buckets {
			o.buckets = append(o.buckets, [2]int{k.Lo, k.Hi})
			o.late = append(o.late, true)
			o.expert = append(o.expert, k.Expert)
			o.size = append(o.size, 0)
		}
		for i, p := range params {
			b := lay.bucketOf(lay.Offsets[i])
			o.bucketOf[p] = b
			o.size[b]++
			o.late[b] = o.late[b] && late(p)
		}
		o.pending = make([]int, len(o.buckets))
		a.overlap = o
		return nil
	}
	var lateIDs []int
	start, open := -1, -1
	for i := len(params) - 1; i >= 0; i-- { // buffer order
		p := params[i]
		lo, hi := lay.Offsets[i], lay.Offsets[i]+p.Numel()
		if late(p) {
			lateIDs = append(lateIDs, i)
			continue
		}
		if open < 0 {
			o.buckets = append(o.buckets, [2]int{lo, hi})
			o.late = append(o.late, false)
			o.expert = append(o.expert, false)
			o.size = append(o.size, 0)
			open, start = len(o.buckets)-1, lo
		}
		o.buckets[open][1] = hi
		o.bucketOf[p] = open
		o.size[open]++
		if hi-start >= bucketSize {
			open = -1
		}
	}
	for _, i := range lateIDs { // one bucket per late parameter
		p := params[i]
		o.buckets = append(o.buckets, [2]int{lay.Offsets[i], lay.Offsets[i] + p.Numel()})
		o.late = append(o.late, true)
		o.expert = append(o.expert, false)
		o.size = append(o.size, 1)
		o.bucketOf[p] = len(o.buckets) - 1
	}
	o.pending = make([]int, len(o.buckets))
	a.overlap = o
	return nil
}

// EarlyReductions counts the buckets whose reduction started while backward was still
// running (for tests and logs).
func (a *Adam) EarlyReductions() int {
	if a.overlap == nil {
		return 0
	}
	return a.overlap.early
}

// Buckets returns the bucket ranges [lo, hi) of the grad buffer (for tests and logs).
func (a *Adam) Buckets() [][2]int {
	if a.overlap == nil {
		return nil
	}
	return append([][2]int(nil), a.overlap.buckets...)
}

// StartGradSync arms the overlapped reduction for the last microbatch: GradsReady then
// reports finished parameters. It returns nil when overlap is off.
func (a *Adam) StartGradSync() func([]*layers.Param) {
	o := a.overlap
	if o == nil {
		return nil
	}
	copy(o.pending, o.size)
	o.queue = make(chan int, len(o.buckets))
	o.errs = make(chan error, 1)
	o.started = true
	go func() {
		var first error
		for b := range o.queue {
			if first == nil {
				first = o.reduce(b)
			}
		}
		o.errs <- first
	}()
	return o.ready
}

// ready counts finished parameters and queues each bucket that is complete.
func (o *overlap) ready(ps []*layers.Param) {
	for _, p := range ps {
		b, ok := o.bucketOf[p]
		if !ok || o.late[b] {
			continue
		}
		if o.pending[b]--; o.pending[b] == 0 {
			o.early++
			o.queue <- b
		}
	}
}

// reduce averages one bucket over DP: fp16 rounding (as the fp16 grad buffer holds it),
// scale by 1/DP, all-reduce over its group (or, for the distributed optimizer,
// reduce-scatter into the shard). Expert buckets go over the expert-DP group: summed over
// the ranks holding the same experts, still scaled by 1/DP (as ReduceGrads).
func (o *overlap) reduce(b int) error {
	g := o.a.buf.Grad.Slice(o.buckets[b][0], o.buckets[b][1])
	if o.a.modelDType == tensor.F16 {
		o.a.be.Round(g, tensor.F16)
	}
	o.a.be.Scale(g, float32(1/float64(o.dp.Size())))
	c := o.dp
	if o.expert[b] {
		c = o.edp
	}
	if o.a.Distributed {
		return o.a.reduceScatter(c, b)
	}
	if err := c.AllReduce(g, comm.Sum); err != nil {
		return fmt.Errorf("overlapped data-parallel all-reduce of bucket %d: %w", b, err)
	}
	return nil
}

// WaitGradSync queues every bucket the backward did not complete (late ones excepted) and
// waits for the background reductions. Call it before touching the gradients again (the
// embedding-group and sequence-parallel all-reduces); ReduceGrads then reduces the late
// buckets. A no-op without overlap.
func (a *Adam) WaitGradSync() error {
	o := a.overlap
	if o == nil {
		return nil
	}
	if !o.started {
		return fmt.Errorf("internal: overlapped gradient reduction waited on without being started")
	}
	o.started = false
	for b := range o.buckets {
		if !o.late[b] && o.pending[b] > 0 {
			o.pending[b] = 0
			o.queue <- b
		}
	}
	close(o.queue)
	return <-o.errs
}

// finish reduces the late buckets.
func (o *overlap) finish() error {
	if o.started {
		if err := o.a.WaitGradSync(); err != nil {
			return err
		}
	}
	for b := range o.buckets {
		if o.late[b] {
			if err := o.reduce(b); err != nil {
				return err
			}
		}
	}
	return nil
}
