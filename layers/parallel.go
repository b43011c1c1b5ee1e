package layers

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// Parallel places one model replica's shard: its tensor-parallel group, sequence
// parallelism, and its pipeline stage.
type Parallel struct {
	TP               comm.Comm // tensor-parallel group; nil means TP = 1
	SequenceParallel bool      // --sequence-parallel: norms, dropout and residuals on [s/TP, b, h]
	PPRank, PPSize   int       // pipeline stage and stage count (0 and 1 without PP)
	// VPRank and VPSize place a model chunk of the interleaved schedule
	// (--num-layers-per-virtual-pipeline-stage): chunk v of stage p holds the layers from
	// v·L/VP + p·L/(PP·VP). 0 and 1 without virtual stages.
	VPRank, VPSize int
	// TPRank and TPSize place a shard without a communicator (Specs, checkpoint
	// conversion); TP's rank and size win when TP is set.
	TPRank, TPSize int
	// EP is the expert-parallel group (--expert-model-parallel-size): each rank holds
	// NumExperts/EP experts and MoE layers exchange tokens over it; nil means EP = 1.
	// EPRank and EPSize place a shard without a communicator.
	EP             comm.Comm
	EPRank, EPSize int
	// CP is the context-parallel group (--context-parallel-size): each rank holds 2 of the
	// 2·CP chunks of every sequence (see context.go); nil means CP = 1.
	CP comm.Comm
}

func (p Parallel) epSize() int {
	if p.EP != nil {
		return p.EP.Size()
	}
	return max(p.EPSize, 1)
}

func (p Parallel) epRank() int {
	if p.EP != nil {
		return p.EP.Rank()
	}
	return p.EPRank
}

// epGather all-gathers rows over expert parallelism (rank order).
func (p Parallel) epGather(full, local *tensor.Tensor, what string) error {
	if err := p.EP.AllGather(full, local); err != nil {
		return fmt.Errorf("expert-parallel all-gather of %s: %w", what, err)
	}
	return nil
}

// epReduceScatter sums full over expert parallelism and keeps this rank's block.
func (p Parallel) epReduceScatter(local, full *tensor.Tensor, what string) error {
	if err := p.EP.ReduceScatter(local, full, comm.Sum); err != nil {
		return fmt.Errorf("expert-parallel reduce-scatter of %s: %w", what, err)
	}
	return nil
}

func (p Parallel) tpSize() int {
	if p.TP != nil {
		return p.TP.Size()
	}
	return max(p.TPSize, 1)
}

func (p Parallel) tpRank() int {
	if p.TP != nil {
		return p.TP.Rank()
	}
	return p.TPRank
}

// sp reports whether sequence parallelism is in effect (it needs TP > 1).
func (p Parallel) sp() bool { return p.SequenceParallel && p.tpSize() > 1 }

// dropSeg is a run of a rank's rows [lo, hi) whose dropout counters are contiguous in the
// whole sequence's [S·b, h] tensor, from counter off.
type dropSeg struct {
	lo, hi int
	off    uint64
}

// dropoutSegments splits local [rows, h] into dropSegs, so that hidden-dropout masks are
// the single process's rows (as attention dropout's heads are): with sequence parallelism
// this rank holds rows from tpRank·rows on; with context parallelism the rank's rows are
// its two chunks of the sequence, each one run (a sequence-parallel shard may hold parts of
// both).
// The segments are segs[:n] (at most two: no allocation per call).
func (p Parallel) dropoutSegments(rows, h int) (segs [2]dropSeg, n int) {
	q0, total := 0, rows // this rank's first row among its CP rank's rows, and their count
	if p.sp() {
		q0, total = p.tpRank()*rows, rows*p.tpSize()
	}
	if p.cpSize() == 1 {
		segs[0] = dropSeg{0, rows, uint64(q0 * h)}
		return segs, 1
	}
	half := total / 2
	for j, c := range p.cpChunks() {
		a, b := max(q0, j*half), min(q0+rows, (j+1)*half)
		if a < b {
			segs[n] = dropSeg{a - q0, b - q0, uint64((c*half + a - j*half) * h)}
			n++
		}
	}
	return segs, n
}

// First and Last report the pipeline position.
func (p Parallel) First() bool { return p.PPRank == 0 && p.VPRank == 0 }
func (p Parallel) Last() bool {
	return p.PPRank == max(p.PPSize, 1)-1 && p.VPRank == max(p.VPSize, 1)-1
}

// allReduce sums t over the TP group (Megatron's reduce_from_tensor_model_parallel_region,
// and the backward of copy_to_tensor_model_parallel_region).
func (p Parallel) allReduce(t *tensor.Tensor, what string) error {
	if p.tpSize() == 1 {
		return nil
	}
	if err := p.TP.AllReduce(t, comm.Sum); err != nil {
		return fmt.Errorf("tensor-parallel all-reduce of %s: %w", what, err)
	}
	return nil
}

// gatherRows all-gathers the sequence shards [N/TP, h] into full [N, h]
// (gather_from_sequence_parallel_region); without SP full and local are the same tensor.
func (p Parallel) gatherRows(full, local *tensor.Tensor, what string) error {
	if !p.sp() {
		return nil
	}
	if err := p.TP.AllGather(full, local); err != nil {
		return fmt.Errorf("sequence-parallel all-gather of %s: %w", what, err)
	}
	return nil
}

// reduceRows turns a partial sum [N, h] into the reduced local rows: reduce-scatter with SP
// (reduce_scatter_to_sequence_parallel_region), all-reduce in place without.
func (p Parallel) reduceRows(local, partial *tensor.Tensor, what string) error {
	if !p.sp() {
		return p.allReduce(partial, what)
	}
	if err := p.TP.ReduceScatter(local, partial, comm.Sum); err != nil {
		return fmt.Errorf("sequence-parallel reduce-scatter of %s: %w", what, err)
	}
	return nil
}

// ShardRange is the [lo, hi) slice of n items that TP rank r of size owns.
func ShardRange(n, r, size int) (int, int) { return n * r / size, n * (r + 1) / size }

// Shard cuts a parameter's full tensor (row-major values of shape full) into TP rank r's
// shard along dim: contiguous rows for dim 0 (whole query groups for linear_qkv, a vocabulary
// range for embeddings), contiguous columns for dim 1, and for a SwiGLU fc1 (glu) the
// rank-local [gate_r; up_r]. dim < 0 returns the full tensor.
func Shard(vals []float32, full []int, dim int, glu bool, r, size int) []float32 {
	if dim < 0 || size == 1 {
		return vals
	}
	inner := 1
	for _, d := range full[1:] {
		inner *= d
	}
	if dim == 0 {
		if glu {
			half := full[0] / 2
			lo, hi := ShardRange(half, r, size)
			out := append([]float32(nil), vals[lo*inner:hi*inner]...)
			return append(out, vals[(half+lo)*inner:(half+hi)*inner]...)
		}
		lo, hi := ShardRange(full[0], r, size)
		return vals[lo*inner : hi*inner]
	}
	rows, cols := full[0], full[1]
	lo, hi := ShardRange(cols, r, size)
	out := make([]float32, 0, rows*(hi-lo))
	for i := 0; i < rows; i++ {
		out = append(out, vals[i*cols+lo:i*cols+hi]...)
	}
	return out
}

// Unshard is the inverse of Shard: it joins every rank's shard into the full tensor.
func Unshard(shards [][]float32, full []int, dim int, glu bool) []float32 {
	size := len(shards)
	if dim < 0 || size == 1 {
		return shards[0]
	}
	n := 1
	for _, d := range full {
		n *= d
	}
	out := make([]float32, n)
	inner := n / full[0]
	for r, s := range shards {
		if dim == 0 {
			if glu {
				half := full[0] / 2
				lo, hi := ShardRange(half, r, size)
				copy(out[lo*inner:], s[:(hi-lo)*inner])
				copy(out[(half+lo)*inner:], s[(hi-lo)*inner:])
				continue
			}
			lo, _ := ShardRange(full[0], r, size)
			copy(out[lo*inner:], s)
			continue
		}
		rows, cols := full[0], full[1]
		lo, hi := ShardRange(cols, r, size)
		for i := 0; i < rows; i++ {
			copy(out[i*cols+lo:i*cols+hi], s[i*(hi-lo):(i+1)*(hi-lo)])
		}
	}
	return out
}

// ReduceSequenceParallelGrads all-reduces over TP the grads of parameters that every TP
// rank holds whole but saw only its sequence rows of (norm weights and row-parallel biases,
// flagged SequenceParallel), as Megatron's finalize_model_grads does with
// --sequence-parallel. Without SP those grads are already complete.
//
// Parameters flagged HeadPartial (--qk-layernorm's weights, applied to each rank's own
// heads) are all-reduced over TP in every layout.
func (m *GPTModel) ReduceSequenceParallelGrads() error {
	if m.Par.tpSize() == 1 {
		return nil
	}
	sp := m.Par.sp()
	for _, p := range m.Params {
		if p.HeadPartial || sp && p.SequenceParallel {
			if err := m.Par.TP.AllReduce(p.Grad, comm.Sum); err != nil {
				return fmt.Errorf("all-reduce of %s's grad over TP: %w", p.Name, err)
			}
		}
	}
	return nil
}
