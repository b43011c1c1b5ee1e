package cpu

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Embedding: out[n] = table[ids[n] − start] when start ≤ ids[n] < start+V, else a zero row
// (the vocab-parallel lookup of Megatron's VocabParallelEmbedding; start = 0 without TP).
// table is [V, H] (F32 or BF16), out is [N, H] (any leading dims), ids [N] is I64 or I32.
func (b *Backend) Embedding(out, table, ids *tensor.Tensor, start int) {
	if b.bf16("Embedding", func(t []*tensor.Tensor) { b.Embedding(t[0], table, ids, start) }, wr("out", out)) {
		return
	}
	v, h := embeddingDims("Embedding", table, out, ids)
	os := f32("Embedding", out)
	var copyRow func(dst []float32, r int)
	switch table.DType() {
	case tensor.BF16: // 16-bit model weights: widen the rows looked up
		ts := table.U16()
		copyRow = func(dst []float32, r int) {
			for j, x := range ts[r*h : (r+1)*h] {
				dst[j] = tensor.F32FromBF16(x)
			}
		}
	default:
		ts := f32("Embedding", table)
		copyRow = func(dst []float32, r int) { copy(dst, ts[r*h:(r+1)*h]) }
	}
	id := indices("Embedding", ids)
	parallelFor(ids.Numel(), grainFor(h), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			row := os[n*h : (n+1)*h]
			if r := id(n) - int64(start); r >= 0 && r < int64(v) {
				copyRow(row, int(r))
			} else {
				clear(row)
			}
		}
	})
}

// EmbeddingBackward: dtable[ids[n] − start] += dout[n] for the in-range ids. The scatter
// is parallel over column blocks, each adding the rows in n order, so repeated ids never
// race and the sum order is fixed.
func (b *Backend) EmbeddingBackward(dtable, dout, ids *tensor.Tensor, start int) {
	if b.bf16("EmbeddingBackward", func(t []*tensor.Tensor) { b.EmbeddingBackward(dtable, t[0], ids, start) }, rd("dout", dout)) {
		return
	}
	v, h := embeddingDims("EmbeddingBackward", dtable, dout, ids)
	ds, gs := f32("EmbeddingBackward", dtable), f32("EmbeddingBackward", dout)
	id := indices("EmbeddingBackward", ids)
	n := ids.Numel()
	nblk := (h + colBlock - 1) / colBlock
	parallelFor(nblk, 1, func(lo, hi int) {
		c0, c1 := lo*colBlock, min(hi*colBlock, h)
		for i := range n {
			r := id(i) - int64(start)
			if r < 0 || r >= int64(v) {
				continue
			}
			dst := ds[int(r)*h+c0 : int(r)*h+c1]
			src := gs[i*h+c0 : i*h+c1]
			for j, g := range src {
				dst[j] += g
			}
		}
	})
}

func embeddingDims(op string, table, rows, ids *tensor.Tensor) (v, h int) {
	if table.Rank() != 2 {
		panic(fmt.Sprintf("cpu.%s: table %v must be [V, H]", op, table))
	}
	v, h = table.Dim(0), table.Dim(1)
	if rows.Numel() != ids.Numel()*h {
		panic(fmt.Sprintf("cpu.%s: rows %v must be [%d, %d] for ids %v", op, rows, ids.Numel(), h, ids))
	}
	return v, h
}
