package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// Cross-entropy pieces over a logits shard [N, V] holding vocab ids [start, start+V), in
// the order Megatron's vocab-parallel cross entropy combines them across tensor-parallel
// ranks: RowMax (then all-reduce max), SumExp with the global max (then all-reduce sum),
// TargetLogit (then all-reduce sum), loss_n = log se[n] + mx[n] − tl[n].

func ceRows(op string, logits *tensor.Tensor, perRow ...*tensor.Tensor) (n, v int) {
	n, v = rowsCols(logits)
	for _, t := range perRow {
		if t.Numel() != n {
			panic(fmt.Sprintf("cpu.%s: %v must have one element per row of logits %v", op, t, logits))
		}
	}
	return n, v
}

// RowMax: mx[n] = max_v logits[n, v].
func (b *Backend) RowMax(mx, logits *tensor.Tensor) {
	if b.bf16("RowMax", func(t []*tensor.Tensor) { b.RowMax(mx, t[0]) }, rd("logits", logits)) {
		return
	}
	n, v := ceRows("RowMax", logits, mx)
	ms, ls := f32("RowMax", mx), f32("RowMax", logits)
	parallelFor(n, grainFor(v), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			m := float32(math.Inf(-1))
			for _, x := range ls[r*v : (r+1)*v] {
				m = max(m, x)
			}
			ms[r] = m
		}
	})
}

// SumExp: se[n] = Σ_v exp(logits[n, v] − mx[n]) (expf terms summed in float64), for a
// given (global) mx.
func (b *Backend) SumExp(se, logits, mx *tensor.Tensor) {
	if b.bf16("SumExp", func(t []*tensor.Tensor) { b.SumExp(se, t[0], mx) }, rd("logits", logits)) {
		return
	}
	n, v := ceRows("SumExp", logits, se, mx)
	ss, ls, ms := f32("SumExp", se), f32("SumExp", logits), f32("SumExp", mx)
	parallelFor(n, grainFor(8*v), func(lo, hi int) {
		buf := b.getScratch(v)
		defer b.putScratch(buf)
		for r := lo; r < hi; r++ {
			expNegRow(buf.v, ls[r*v:(r+1)*v], ms[r])
			var s float64
			for _, e := range buf.v {
				s += float64(e)
			}
			ss[r] = float32(s)
		}
	})
}

// TargetLogit: tl[n] = logits[n, t−start] if start ≤ t = targets[n] < start+V, else 0.
// targets are I64 or I32.
func (b *Backend) TargetLogit(tl, logits, targets *tensor.Tensor, start int) {
	if b.bf16("TargetLogit", func(t []*tensor.Tensor) { b.TargetLogit(tl, t[0], targets, start) }, rd("logits", logits)) {
		return
	}
	n, v := ceRows("TargetLogit", logits, tl, targets)
	ts, ls := f32("TargetLogit", tl), f32("TargetLogit", logits)
	tg := indices("TargetLogit", targets)
	for r := range n {
		if c := tg(r) - int64(start); c >= 0 && c < int64(v) {
			ts[r] = ls[r*v+int(c)]
		} else {
			ts[r] = 0
		}
	}
}

// CrossEntropyBackward: dlogits[n, v] = (exp(logits[n, v] − mx[n])/se[n] − [v = t−start])·dloss[n]
// with the global mx and se. dlogits may alias logits (Megatron's in-place backward).
func (b *Backend) CrossEntropyBackward(dlogits, logits, mx, se, targets, dloss *tensor.Tensor, start int) {
	if b.bf16("CrossEntropyBackward", func(t []*tensor.Tensor) { b.CrossEntropyBackward(t[0], t[1], mx, se, targets, dloss, start) },
		wr("dlogits", dlogits), rd("logits", logits)) {
		return
	}
	op := "CrossEntropyBackward"
	sameShape(op, dlogits, logits)
	n, v := ceRows(op, logits, mx, se, targets, dloss)
	ds, ls, ms, ss, gs := f32(op, dlogits), f32(op, logits), f32(op, mx), f32(op, se), f32(op, dloss)
	tg := indices(op, targets)
	parallelFor(n, grainFor(8*v), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			m, inv, g := ms[r], 1/ss[r], gs[r]
			lr, dr := ls[r*v:(r+1)*v], ds[r*v:(r+1)*v]
			expNegRow(dr, lr, m) // dr may alias lr: elementwise
			tc := tg(r) - int64(start)
			in := tc >= 0 && tc < int64(v)
			var et float32
			if in {
				et = dr[tc]
			}
			for c, e := range dr {
				dr[c] = e * inv * g
			}
			if in {
				dr[tc] = (et*inv - 1) * g
			}
		}
	})
}
