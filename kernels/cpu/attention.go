package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Attention is computed flash-attention style: queries in blocks of attnBlockQ rows, keys
// in blocks of attnBlockK, each score block Q_i·K_jᵀ a single-threaded Sgemm, softmax
// online with a running row max and sum, so no more than one attnBlockQ×attnBlockK score
// block per goroutine is ever held. Key blocks wholly hidden by the causal mask or the
// sliding window are skipped; the (batch, head, query block) tasks are handed out one at a
// time so their uneven costs balance over the cores.
const (
	attnBlockQ = 64
	attnBlockK = 64
)

// attnGeom is the geometry of one attention call.
type attnGeom struct {
	b, h, g, s, t, d, rep int
	p                     kernels.AttnParams
	keyStart              []int32 // p.KeyStart's values [B, S], nil without
}

func attnCheck(op string, q, k, v, out, lse *tensor.Tensor, p kernels.AttnParams) attnGeom {
	if q.Rank() != 4 || k.Rank() != 4 || !tensor.SameShape(k.Shape(), v.Shape()) || !tensor.SameShape(q.Shape(), out.Shape()) {
		panic(fmt.Sprintf("cpu.%s: want q, out [B, H, S, D] and k, v [B, G, T, D]; got q %v k %v v %v out %v", op, q, k, v, out))
	}
	g := attnGeom{b: q.Dim(0), h: q.Dim(1), s: q.Dim(2), d: q.Dim(3), g: k.Dim(1), t: k.Dim(2), p: p}
	if k.Dim(0) != g.b || k.Dim(3) != g.d || g.g == 0 || g.h%g.g != 0 {
		panic(fmt.Sprintf("cpu.%s: q %v and k %v: need equal B and D and H %% G == 0", op, q, k))
	}
	if lse.Numel() != g.b*g.h*g.s {
		panic(fmt.Sprintf("cpu.%s: lse %v must be [%d, %d, %d]", op, lse, g.b, g.h, g.s))
	}
	if p.ALiBiSlopes != nil && len(p.ALiBiSlopes) != g.h {
		panic(fmt.Sprintf("cpu.%s: %d ALiBi slopes for %d heads", op, len(p.ALiBiSlopes), g.h))
	}
	g.rep = g.h / g.g
	if ks := p.KeyStart; ks != nil {
		if ks.DType() != tensor.I32 || ks.Numel() != g.b*g.s || ks.Device.Type != tensor.CPU {
			panic(fmt.Sprintf("cpu.%s: KeyStart %v must be an I32 host tensor [%d, %d]", op, ks, g.b, g.s))
		}
		g.keyStart = ks.I32()
	}
	return g
}

// keyRange is the range [lo, hi) of keys that some query in rows [i0, i1) of batch bi may
// see.
func (g *attnGeom) keyRange(bi, i0, i1 int) (lo, hi int) {
	lo, hi = 0, g.t
	if g.p.Causal {
		hi = min(hi, g.p.QOffset+i1)
	}
	if w := g.p.SlidingWindow; w > 0 {
		lo = max(lo, g.p.QOffset+i0-w+1)
	}
	if g.keyStart != nil { // documents before every row's own are skipped
		first := g.t
		for _, k := range g.keyStart[bi*g.s+i0 : bi*g.s+i1] {
			first = min(first, int(k))
		}
		lo = max(lo, first)
	}
	return lo, max(lo, hi)
}

// queryRange is the range [lo, hi) of queries that may see some key in [j0, j1).
func (g *attnGeom) queryRange(j0, j1 int) (lo, hi int) {
	lo, hi = 0, g.s
	if g.p.Causal {
		lo = max(lo, j0-g.p.QOffset)
	}
	if w := g.p.SlidingWindow; w > 0 {
		hi = min(hi, j1-1+w-g.p.QOffset)
	}
	return lo, max(lo, hi)
}

// scores fills sb [nq, nk] with the masked scores s_ij of batch bi, head h for query rows
// i0..i0+nq−1 and keys j0..j0+nk−1 (−Inf where masked). qs and ks start at row i0 of the
// head's queries and row j0 of the group's keys.
func (g *attnGeom) scores(sb, qs, ks []float32, bi, h, i0, nq, j0, nk int) {
	p := &g.p
	var slope float32
	if p.ALiBiSlopes != nil {
		slope = p.ALiBiSlopes[h]
	}
	before := slope != 0 && p.ALiBiBeforeScale
	alpha := p.Scale
	if before {
		alpha = 1
	}
	blockGemm(false, true, nq, nk, g.d, alpha, qs, g.d, ks, g.d, 0, sb, nk)
	ninf := float32(math.Inf(-1))
	for r := range nq {
		qpos := p.QOffset + i0 + r
		first := 0
		if g.keyStart != nil {
			first = int(g.keyStart[bi*g.s+i0+r])
		}
		row := sb[r*nk : (r+1)*nk]
		for c := range row {
			j := j0 + c
			if (p.Causal && j > qpos) || (p.SlidingWindow > 0 && j <= qpos-p.SlidingWindow) || j < first {
				row[c] = ninf
				continue
			}
			if before {
				row[c] = p.Scale * (row[c] + slope*float32(j))
			} else if slope != 0 {
				row[c] += slope * float32(j)
			}
		}
	}
}

// Attention: see kernels.AttnParams. Parallel over (batch, head, query block). A query row
// that sees no key gets out = 0 and lse = −Inf.
func (b *Backend) Attention(out, lse, q, k, v *tensor.Tensor, p kernels.AttnParams) {
	if b.bf16("Attention", func(t []*tensor.Tensor) { b.Attention(t[0], lse, t[1], t[2], t[3], p) },
		wr("out", out), rd("q", q), rd("k", k), rd("v", v)) {
		return
	}
	g := attnCheck("Attention", q, k, v, out, lse, p)
	op := "Attention"
	os, ls, qs, ks, vs := f32(op, out), f32(op, lse), f32(op, q), f32(op, k), f32(op, v)
	nqb := (g.s + attnBlockQ - 1) / attnBlockQ
	d := g.d
	parallelTasks(g.b*g.h*nqb, func(task int) {
		buf := b.getScratch(attnBlockQ*attnBlockK + 2*attnBlockQ)
		defer b.putScratch(buf)
		sb := buf.v[:attnBlockQ*attnBlockK]
		m := buf.v[attnBlockQ*attnBlockK : attnBlockQ*attnBlockK+attnBlockQ]
		l := buf.v[attnBlockQ*attnBlockK+attnBlockQ:]
		bh, qb := task/nqb, task%nqb
		bi, h := bh/g.h, bh%g.h
		i0 := qb * attnBlockQ
		i1 := min(i0+attnBlockQ, g.s)
		nq := i1 - i0
		qoff := (bh*g.s + i0) * d
		koff := (bi*g.g + h/g.rep) * g.t * d
		o := os[qoff : qoff+nq*d]
		clear(o)
		for r := range nq {
			m[r], l[r] = float32(math.Inf(-1)), 0
		}
		jlo, jhi := g.keyRange(bi, i0, i1)
		for j0 := jlo; j0 < jhi; j0 += attnBlockK {
			nk := min(attnBlockK, jhi-j0)
			g.scores(sb, qs[qoff:], ks[koff+j0*d:], bi, h, i0, nq, j0, nk)
			for r := range nq {
				row := sb[r*nk : (r+1)*nk]
				mx := m[r]
				for _, s := range row {
					mx = max(mx, s)
				}
				if math.IsInf(float64(mx), -1) {
					clear(row)
					continue
				}
				expNegRow(row, row, mx)
				var sum float32
				for _, e := range row {
					sum += e
				}
				if corr := expNeg(m[r] - mx); corr != 1 {
					l[r] *= corr
					or := o[r*d : (r+1)*d]
					for c := range or {
						or[c] *= corr
					}
				}
				l[r] += sum
				m[r] = mx
				g.dropRow(row, bi, h, i0+r, j0)
			}
			blockGemm(false, false, nq, d, nk, 1, sb, nk, vs[koff+j0*d:], d, 1, o, d)
		}
		for r := range nq {
			or := o[r*d : (r+1)*d]
			if l[r] == 0 {
				clear(or)
				ls[bh*g.s+i0+r] = float32(math.Inf(-1))
				continue
			}
			inv := 1 / l[r]
			for c := range or {
				or[c] *= inv
			}
			ls[bh*g.s+i0+r] = m[r] + float32(math.Log(float64(l[r])))
		}
	})
}

// dropRow applies attention dropout to a row of query i (batch bi, head h) holding keys
// j0, j0+1, …: each element is scaled by 1/(1−p) or zeroed (kernels.AttnParams).
func (g *attnGeom) dropRow(row []float32, bi, h, i, j0 int) {
	p := g.p.DropoutP
	if p <= 0 {
		return
	}
	thr, scale := dropThreshold(p), 1/(1-p)
	base := g.p.DropoutCounter(g.h, bi, h, i, j0, g.s, g.t)
	for c := range row {
		if float32(DropoutBits(g.p.DropoutSeed, base+uint64(c))>>40) >= thr {
			row[c] *= scale
		} else {
			row[c] = 0
		}
	}
}

// probs turns a score block into P_ij = exp(s_ij − lse_i) (0 where masked or where the
// row saw no key).
func probs(sb, lse []float32, nq, nk int) {
	for r := range nq {
		row := sb[r*nk : (r+1)*nk]
		li := lse[r]
		if math.IsInf(float64(li), -1) {
			clear(row)
			continue
		}
		expNegRow(row, row, li)
	}
}

// AttentionBackward recomputes P from lse block by block, as the kernels.Backend doc says:
// dP = dout·vᵀ, D_i = Σ_d dout_i·out_i, dS = P⊙(dP − D), dq = Scale·dS·k,
// dk = Scale·dSᵀ·q and dv = Pᵀ·dout, with dk and dv summed over the heads of a group.
// Two passes keep every output owned by one goroutine (so sums have a fixed order):
// dk and dv in parallel over (batch, group, key block), then dq over (batch, head, query
// block).
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *tensor.Tensor, p kernels.AttnParams) {
	if b.bf16("AttentionBackward", func(t []*tensor.Tensor) { b.AttentionBackward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], lse, p) },
		wr("dq", dq), wr("dk", dk), wr("dv", dv), rd("dout", dout), rd("q", q), rd("k", k), rd("v", v), rd("out", out)) {
		return
	}
	g := attnCheck("AttentionBackward", q, k, v, out, lse, p)
	sameShape("AttentionBackward", q, dq, dout)
	sameShape("AttentionBackward", k, dk, dv)
	op := "AttentionBackward"
	dqs, dks, dvs, gs := f32(op, dq), f32(op, dk), f32(op, dv), f32(op, dout)
	qs, ks, vs, os, ls := f32(op, q), f32(op, k), f32(op, v), f32(op, out), f32(op, lse)
	d := g.d
	// D_i = Σ_d dout_i·out_i, in pooled scratch.
	rows := g.b * g.h * g.s
	dbuf := b.getScratch(rows)
	defer b.putScratch(dbuf)
	dd := dbuf.v
	parallelFor(rows, grainFor(d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			var s float32
			gr, or := gs[r*d:(r+1)*d], os[r*d:(r+1)*d]
			for c := range gr {
				s += gr[c] * or[c]
			}
			dd[r] = s
		}
	})
	// dS for rows i0.. of head bh against keys j0..: fills pb with P and sb with dS.
	grad := func(pb, sb []float32, bh, h, i0, nq, koff, j0, nk int) {
		qoff := (bh*g.s + i0) * d
		g.scores(pb, qs[qoff:], ks[koff+j0*d:], bh/g.h, h, i0, nq, j0, nk)
		probs(pb, ls[bh*g.s+i0:], nq, nk)
		blockGemm(false, true, nq, nk, d, 1, gs[qoff:], d, vs[koff+j0*d:], d, 0, sb, nk)
		for r := range nq {
			di := dd[bh*g.s+i0+r]
			pr, sr := pb[r*nk:(r+1)*nk], sb[r*nk:(r+1)*nk]
			if g.p.DropoutP > 0 { // dP = mask/(1−p)·dout·vᵀ; dv takes P̃ = mask/(1−p)·P
				g.dropRow(sr, bh/g.h, bh%g.h, i0+r, j0)
				for c := range sr {
					sr[c] = pr[c] * (sr[c] - di)
				}
				g.dropRow(pr, bh/g.h, bh%g.h, i0+r, j0)
				continue
			}
			for c := range sr {
				sr[c] = pr[c] * (sr[c] - di)
			}
		}
	}
	blk := attnBlockQ * attnBlockK
	nkb := (g.t + attnBlockK - 1) / attnBlockK
	parallelTasks(g.b*g.g*nkb, func(task int) {
		buf := b.getScratch(2 * blk)
		defer b.putScratch(buf)
		pb, sb := buf.v[:blk], buf.v[blk:]
		bg, kb := task/nkb, task%nkb
		bi, gi := bg/g.g, bg%g.g
		j0 := kb * attnBlockK
		j1 := min(j0+attnBlockK, g.t)
		nk := j1 - j0
		koff := bg * g.t * d
		dkr, dvr := dks[koff+j0*d:koff+j1*d], dvs[koff+j0*d:koff+j1*d]
		clear(dkr)
		clear(dvr)
		ilo, ihi := g.queryRange(j0, j1)
		for h := gi * g.rep; h < (gi+1)*g.rep; h++ {
			bh := bi*g.h + h
			for i0 := ilo; i0 < ihi; i0 += attnBlockQ {
				nq := min(attnBlockQ, ihi-i0)
				qoff := (bh*g.s + i0) * d
				grad(pb, sb, bh, h, i0, nq, koff, j0, nk)
				blockGemm(true, false, nk, d, nq, 1, pb, nk, gs[qoff:], d, 1, dvr, d)
				blockGemm(true, false, nk, d, nq, p.Scale, sb, nk, qs[qoff:], d, 1, dkr, d)
			}
		}
	})
	nqb := (g.s + attnBlockQ - 1) / attnBlockQ
	parallelTasks(g.b*g.h*nqb, func(task int) {
		buf := b.getScratch(2 * blk)
		defer b.putScratch(buf)
		pb, sb := buf.v[:blk], buf.v[blk:]
		bh, qb := task/nqb, task%nqb
		bi, h := bh/g.h, bh%g.h
		i0 := qb * attnBlockQ
		i1 := min(i0+attnBlockQ, g.s)
		nq := i1 - i0
		qoff := (bh*g.s + i0) * d
		koff := (bi*g.g + h/g.rep) * g.t * d
		dqr := dqs[qoff : qoff+nq*d]
		clear(dqr)
		jlo, jhi := g.keyRange(bi, i0, i1)
		for j0 := jlo; j0 < jhi; j0 += attnBlockK {
			nk := min(attnBlockK, jhi-j0)
			grad(pb, sb, bh, h, i0, nq, koff, j0, nk)
			blockGemm(false, false, nq, d, nk, p.Scale, sb, nk, ks[koff+j0*d:], d, 1, dqr, d)
		}
	})
}

// blockGemm multiplies one attention block on the calling goroutine: the blocks are
// already spread over every core, so a multi-threaded GEMM would only add hand-offs.
func blockGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(gemmDefaultKernel, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
