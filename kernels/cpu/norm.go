package cpu

import (
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// RMSNorm over the last dim H (Llama): rstd = 1/sqrt(mean(x²) + eps), out = w ⊙ (x·rstd),
// rstd [N] saved for backward. mean(x²) is accumulated in float64; the products are
// rounded in the order Hugging Face's LlamaRMSNorm uses (x·rstd first, then ·w).
func (b *Backend) RMSNorm(out, rstd, x, w *tensor.Tensor, eps float32) {
	if b.bf16("RMSNorm", func(t []*tensor.Tensor) { b.RMSNorm(t[0], rstd, t[1], w, eps) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("RMSNorm", out, x)
	n, h := rowsCols(x)
	wantNumel("RMSNorm", "w", w, h)
	wantNumel("RMSNorm", "rstd", rstd, n)
	os, rs, xs, ws := f32("RMSNorm", out), f32("RMSNorm", rstd), f32("RMSNorm", x), f32("RMSNorm", w)
	parallelFor(n, grainFor(2*h), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, or := xs[r*h:(r+1)*h], os[r*h:(r+1)*h]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			rr := float32(1 / math.Sqrt(ss/float64(h)+float64(eps)))
			rs[r] = rr
			for j, v := range xr {
				or[j] = ws[j] * (v * rr)
			}
		}
	})
}

// RMSNormBackward: with x̂ = x·rstd, dx = rstd·(w⊙dout − x̂·mean(w⊙dout⊙x̂)) and
// dw += Σ_n dout⊙x̂ (column-parallel, float64 sums in row order).
func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd *tensor.Tensor) {
	if b.bf16("RMSNormBackward", func(t []*tensor.Tensor) { b.RMSNormBackward(t[0], dw, t[1], t[2], w, rstd) },
		wr("dx", dx), rd("dout", dout), rd("x", x)) {
		return
	}
	sameShape("RMSNormBackward", dx, dout, x)
	n, h := rowsCols(x)
	wantNumel("RMSNormBackward", "w", w, h)
	wantNumel("RMSNormBackward", "dw", dw, h)
	wantNumel("RMSNormBackward", "rstd", rstd, n)
	op := "RMSNormBackward"
	dxs, dws, gs, xs, ws, rs := f32(op, dx), f32(op, dw), f32(op, dout), f32(op, x), f32(op, w), f32(op, rstd)
	parallelFor(n, grainFor(3*h), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, gr, dr := xs[r*h:(r+1)*h], gs[r*h:(r+1)*h], dxs[r*h:(r+1)*h]
			rr := rs[r]
			var dot float64
			for j, v := range xr {
				dot += float64(ws[j]*gr[j]) * float64(v*rr)
			}
			m := float32(dot / float64(h))
			for j, v := range xr {
				dr[j] = rr * (ws[j]*gr[j] - v*rr*m)
			}
		}
	})
	b.columnSums(n, h, func(acc []float64, r, c0, c1 int) {
		rr := rs[r]
		xr, gr := xs[r*h+c0:r*h+c1], gs[r*h+c0:r*h+c1]
		for j, g := range gr {
			acc[j] += float64(g * (xr[j] * rr))
		}
	}, func(c0 int, acc []float64) {
		for j, v := range acc {
			dws[c0+j] += float32(v)
		}
	})
}

// LayerNorm over the last dim H: mean and biased variance (float64, two passes),
// rstd = 1/sqrt(var + eps), x̂ = (x − mean)·rstd, out = w⊙x̂ + b; mean and rstd [N] saved.
func (b *Backend) LayerNorm(out, mean, rstd, x, w, bias *tensor.Tensor, eps float32) {
	if b.bf16("LayerNorm", func(t []*tensor.Tensor) { b.LayerNorm(t[0], mean, rstd, t[1], w, bias, eps) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("LayerNorm", out, x)
	n, h := rowsCols(x)
	wantNumel("LayerNorm", "w", w, h)
	wantNumel("LayerNorm", "b", bias, h)
	wantNumel("LayerNorm", "mean", mean, n)
	wantNumel("LayerNorm", "rstd", rstd, n)
	op := "LayerNorm"
	os, ms, rs, xs, ws, bs := f32(op, out), f32(op, mean), f32(op, rstd), f32(op, x), f32(op, w), f32(op, bias)
	parallelFor(n, grainFor(3*h), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, or := xs[r*h:(r+1)*h], os[r*h:(r+1)*h]
			var s float64
			for _, v := range xr {
				s += float64(v)
			}
			mu := s / float64(h)
			var ss float64
			for _, v := range xr {
				d := float64(v) - mu
				ss += d * d
			}
			m32 := float32(mu)
			rr := float32(1 / math.Sqrt(ss/float64(h)+float64(eps)))
			ms[r], rs[r] = m32, rr
			for j, v := range xr {
				or[j] = ws[j]*((v-m32)*rr) + bs[j]
			}
		}
	})
}

// LayerNormBackward: with x̂ = (x − mean)·rstd and ĝ = w⊙dout,
// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)); dw += Σ_n dout⊙x̂, db += Σ_n dout.
func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *tensor.Tensor) {
	if b.bf16("LayerNormBackward", func(t []*tensor.Tensor) { b.LayerNormBackward(t[0], dw, db, t[1], t[2], w, mean, rstd) },
		wr("dx", dx), rd("dout", dout), rd("x", x)) {
		return
	}
	op := "LayerNormBackward"
	sameShape(op, dx, dout, x)
	n, h := rowsCols(x)
	wantNumel(op, "w", w, h)
	wantNumel(op, "dw", dw, h)
	wantNumel(op, "db", db, h)
	wantNumel(op, "mean", mean, n)
	wantNumel(op, "rstd", rstd, n)
	dxs, dws, dbs, gs, xs := f32(op, dx), f32(op, dw), f32(op, db), f32(op, dout), f32(op, x)
	ws, ms, rs := f32(op, w), f32(op, mean), f32(op, rstd)
	parallelFor(n, grainFor(3*h), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, gr, dr := xs[r*h:(r+1)*h], gs[r*h:(r+1)*h], dxs[r*h:(r+1)*h]
			mu, rr := ms[r], rs[r]
			var sg, sgx float64
			for j, v := range xr {
				g := ws[j] * gr[j]
				sg += float64(g)
				sgx += float64(g) * float64((v-mu)*rr)
			}
			mg, mgx := float32(sg/float64(h)), float32(sgx/float64(h))
			for j, v := range xr {
				dr[j] = rr * (ws[j]*gr[j] - mg - (v-mu)*rr*mgx)
			}
		}
	})
	b.columnSums(n, h, func(acc []float64, r, c0, c1 int) {
		mu, rr := ms[r], rs[r]
		xr, gr := xs[r*h+c0:r*h+c1], gs[r*h+c0:r*h+c1]
		for j, g := range gr {
			acc[j] += float64(g * ((xr[j] - mu) * rr))
		}
	}, func(c0 int, acc []float64) {
		for j, v := range acc {
			dws[c0+j] += float32(v)
		}
	})
	b.columnSums(n, h, func(acc []float64, r, c0, c1 int) {
		for j, g := range gs[r*h+c0 : r*h+c1] {
			acc[j] += float64(g)
		}
	}, func(c0 int, acc []float64) {
		for j, v := range acc {
			dbs[c0+j] += float32(v)
		}
	})
}
