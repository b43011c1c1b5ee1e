package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// refEmbedding: out[n] = table[ids[n] − start] when in the shard [start, start+V), else 0.
func refEmbedding(table []float64, v, h int, ids []int64, start int) []float64 {
	out := make([]float64, len(ids)*h)
	for n, id := range ids {
		if r := int(id) - start; r >= 0 && r < v {
			copy(out[n*h:(n+1)*h], table[r*h:(r+1)*h])
		}
	}
	return out
}

// Embedding checks the vocab-parallel lookup (ids below, inside and above the shard,
// repeated ids, I64 and I32; F32 and BF16 tables) and EmbeddingBackward's accumulation into a nonzero dtable
// against finite differences.
func Embedding(t *testing.T, b kernels.Backend) {
	r := newRand(5)
	const v, h = 11, 6
	ids := []int64{0, 5, 6, 15, 16, 30, 7, 7, 5, 12, 4, 15, 9}
	for _, dt := range []tensor.DType{tensor.I64, tensor.I32} {
		for _, start := range []int{0, 5} {
			t.Run(fmt.Sprintf("%v/start=%d", dt, start), func(t *testing.T) {
				table := randVals(r, v*h, 1)
				n := len(ids)
				di := devIdx(b, dt, ids)
				out := b.Alloc(tensor.F32, n, h)
				// Prefill out so zero rows must be written.
				b.Fill(out, 9)
				b.Embedding(out, devF32(b, table, v, h), di, start)
				ft := f64s(table)
				requireClose(t, "out", get(b, out), refEmbedding(ft, v, h, ids, start), 0)

				rr := f64s(randVals(r, n*h, 1))
				prior := randVals(r, v*h, 1)
				dtable := devF32(b, prior, v, h)
				b.EmbeddingBackward(dtable, devF32(b, toF32(rr), n, h), di, start)
				want := numGrad(ft, func() float64 { return dot(rr, refEmbedding(ft, v, h, ids, start)) })
				requireClose(t, "dtable − prior", minus(get(b, dtable), prior), want, tolFD)

				// A BF16 table (16-bit model weights) looks up its values exactly, into F32
				// or BF16 rows.
				t16 := dev(b, tensor.BF16, table, v, h)
				want16 := refEmbedding(f64s(get(b, t16)), v, h, ids, start)
				for _, odt := range []tensor.DType{tensor.F32, tensor.BF16} {
					o := dev(b, odt, nans(n*h), n, h)
					b.Embedding(o, t16, di, start)
					requireClose(t, fmt.Sprintf("out %v from a bf16 table", odt), get(b, o), want16, 0)
				}
			})
		}
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// refRMSNorm: rstd = 1/sqrt(mean(x²) + eps), out = w⊙x·rstd per row.
func refRMSNorm(x, w []float64, h int, eps float64) (out, rstd []float64) {
	n := len(x) / h
	out, rstd = make([]float64, len(x)), make([]float64, n)
	for r := range n {
		var ss float64
		for _, v := range x[r*h : (r+1)*h] {
			ss += v * v
		}
		rstd[r] = 1 / math.Sqrt(ss/float64(h)+eps)
		for j := range h {
			out[r*h+j] = w[j] * x[r*h+j] * rstd[r]
		}
	}
	return out, rstd
}

// RMSNorm checks the forward (out and rstd) and, against finite differences, dx and the
// accumulated dw.
func RMSNorm(t *testing.T, b kernels.Backend) {
	r := newRand(6)
	for _, sh := range [][2]int{{1, 8}, {5, 16}, {7, 33}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			n, h := sh[0], sh[1]
			const eps = 1e-5
			x, w := randVals(r, n*h, 1.5), randVals(r, h, 1)
			for i := range w {
				w[i] += 1
			}
			fx, fw := f64s(x), f64s(w)
			dx, dw := devF32(b, x, n, h), devF32(b, w, h)
			out, rstd := b.Alloc(tensor.F32, n, h), b.Alloc(tensor.F32, n)
			b.RMSNorm(out, rstd, dx, dw, eps)
			wantOut, wantR := refRMSNorm(fx, fw, h, eps)
			requireClose(t, "out", get(b, out), wantOut, tolF32)
			requireClose(t, "rstd", get(b, rstd), wantR, tolF32)

			rr := f64s(randVals(r, n*h, 1))
			loss := func() float64 { o, _ := refRMSNorm(fx, fw, h, eps); return dot(rr, o) }
			prior := randVals(r, h, 1)
			gx, gw := b.Alloc(tensor.F32, n, h), devF32(b, prior, h)
			b.RMSNormBackward(gx, gw, devF32(b, toF32(rr), n, h), dx, dw, rstd)
			requireClose(t, "dx", get(b, gx), numGrad(fx, loss), tolFD)
			requireClose(t, "dw − prior", minus(get(b, gw), prior), numGrad(fw, loss), tolFD)
		})
	}
}

// refLayerNorm: x̂ = (x − mean)/sqrt(var + eps) (biased variance), out = w⊙x̂ + b.
func refLayerNorm(x, w, bias []float64, h int, eps float64) (out, mean, rstd []float64) {
	n := len(x) / h
	out, mean, rstd = make([]float64, len(x)), make([]float64, n), make([]float64, n)
	for r := range n {
		row := x[r*h : (r+1)*h]
		var s float64
		for _, v := range row {
			s += v
		}
		mu := s / float64(h)
		var ss float64
		for _, v := range row {
			ss += (v - mu) * (v - mu)
		}
		mean[r], rstd[r] = mu, 1/math.Sqrt(ss/float64(h)+eps)
		for j, v := range row {
			out[r*h+j] = w[j]*(v-mu)*rstd[r] + bias[j]
		}
	}
	return out, mean, rstd
}

// LayerNorm checks the forward (out, mean, rstd) and, against finite differences, dx and
// the accumulated dw and db.
func LayerNorm(t *testing.T, b kernels.Backend) {
	r := newRand(7)
	for _, sh := range [][2]int{{1, 8}, {5, 16}, {6, 31}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			n, h := sh[0], sh[1]
			const eps = 1e-5
			x, w, bias := randVals(r, n*h, 1.5), randVals(r, h, 0.3), randVals(r, h, 0.3)
			for i := range x {
				x[i] += 0.7 // a nonzero mean
			}
			for i := range w {
				w[i] += 1
			}
			fx, fw, fb := f64s(x), f64s(w), f64s(bias)
			dx, dw, db := devF32(b, x, n, h), devF32(b, w, h), devF32(b, bias, h)
			out, mean, rstd := b.Alloc(tensor.F32, n, h), b.Alloc(tensor.F32, n), b.Alloc(tensor.F32, n)
			b.LayerNorm(out, mean, rstd, dx, dw, db, eps)
			wo, wm, wr := refLayerNorm(fx, fw, fb, h, eps)
			requireClose(t, "out", get(b, out), wo, tolF32)
			requireClose(t, "mean", get(b, mean), wm, tolF32)
			requireClose(t, "rstd", get(b, rstd), wr, tolF32)

			rr := f64s(randVals(r, n*h, 1))
			loss := func() float64 { o, _, _ := refLayerNorm(fx, fw, fb, h, eps); return dot(rr, o) }
			pw, pb := randVals(r, h, 1), randVals(r, h, 1)
			gx, gw, gb := b.Alloc(tensor.F32, n, h), devF32(b, pw, h), devF32(b, pb, h)
			b.LayerNormBackward(gx, gw, gb, devF32(b, toF32(rr), n, h), dx, dw, mean, rstd)
			requireClose(t, "dx", get(b, gx), numGrad(fx, loss), tolFD)
			requireClose(t, "dw − prior", minus(get(b, gw), pw), numGrad(fw, loss), tolFD)
			requireClose(t, "db − prior", minus(get(b, gb), pb), numGrad(fb, loss), tolFD)
		})
	}
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// refSwiGLU: x [N, 2F] = [gate | up], out = silu(gate)⊙up.
func refSwiGLU(x []float64, f int) []float64 {
	n := len(x) / (2 * f)
	out := make([]float64, n*f)
	for r := range n {
		for j := range f {
			g, u := x[2*r*f+j], x[(2*r+1)*f+j]
			out[r*f+j] = g * sigmoid(g) * u
		}
	}
	return out
}

// SwiGLU checks the forward and the backward against finite differences.
func SwiGLU(t *testing.T, b kernels.Backend) {
	r := newRand(8)
	for _, sh := range [][2]int{{1, 4}, {6, 13}, {300, 130}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			n, f := sh[0], sh[1]
			x := randVals(r, n*2*f, 2)
			fx := f64s(x)
			dx, out := devF32(b, x, n, 2*f), b.Alloc(tensor.F32, n, f)
			b.SwiGLU(out, dx)
			requireClose(t, "out", get(b, out), refSwiGLU(fx, f), tolF32)
			if n*f > 1000 {
				return // the forward over many rows checks parallel splits; FD stays small
			}
			rr := f64s(randVals(r, n*f, 1))
			gx := b.Alloc(tensor.F32, n, 2*f)
			b.SwiGLUBackward(gx, devF32(b, toF32(rr), n, f), dx)
			requireClose(t, "dx", get(b, gx), numGrad(fx, func() float64 { return dot(rr, refSwiGLU(fx, f)) }), tolFD)
		})
	}
}

// refGeLU is the exact erf GeLU or its tanh approximation.
func refGeLU(x []float64, tanh bool) []float64 {
	out := make([]float64, len(x))
	for i, z := range x {
		if tanh {
			out[i] = 0.5 * z * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(z+0.044715*z*z*z)))
		} else {
			out[i] = 0.5 * z * (1 + math.Erf(z/math.Sqrt2))
		}
	}
	return out
}

// GeLU checks both variants' forward, and backward against finite differences.
func GeLU(t *testing.T, b kernels.Backend) {
	r := newRand(9)
	for _, tanh := range []bool{false, true} {
		for _, n := range []int{17, 50000} {
			t.Run(fmt.Sprintf("tanh=%v/n=%d", tanh, n), func(t *testing.T) {
				x := randVals(r, n, 2.5)
				fx := f64s(x)
				dx, out := devF32(b, x, n), b.Alloc(tensor.F32, n)
				b.GeLU(out, dx, tanh)
				requireClose(t, "out", get(b, out), refGeLU(fx, tanh), tolF32)
				rr := f64s(randVals(r, n, 1))
				gx := b.Alloc(tensor.F32, n)
				b.GeLUBackward(gx, devF32(b, toF32(rr), n), dx, tanh)
				var want []float64
				if n <= 1000 {
					want = numGrad(fx, func() float64 { return dot(rr, refGeLU(fx, tanh)) })
				} else {
					// Elementwise: one perturbation of every x at once gives each derivative.
					want = make([]float64, n)
					xp, xm := make([]float64, n), make([]float64, n)
					for i, z := range fx {
						xp[i], xm[i] = z+fdEps, z-fdEps
					}
					p, m := refGeLU(xp, tanh), refGeLU(xm, tanh)
					for i := range want {
						want[i] = rr[i] * (p[i] - m[i]) / (2 * fdEps)
					}
				}
				requireClose(t, "dx", get(b, gx), want, tolFD)
			})
		}
	}
}

// SquaredReLU checks max(x, 0)² and its backward 2·max(x, 0)·dout against float64 (the
// derivative is exact away from 0, which the random inputs never hit).
func SquaredReLU(t *testing.T, b kernels.Backend) {
	r := newRand(19)
	for _, n := range []int{17, 50000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			x := randVals(r, n, 2)
			fx := f64s(x)
			dx, out := devF32(b, x, n), b.Alloc(tensor.F32, n)
			b.SquaredReLU(out, dx)
			want, dwant := make([]float64, n), make([]float64, n)
			rr := f64s(randVals(r, n, 1))
			for i, z := range fx {
				if z > 0 {
					want[i], dwant[i] = z*z, rr[i]*2*z
				}
			}
			requireClose(t, "out", get(b, out), want, tolF32)
			gx := b.Alloc(tensor.F32, n)
			b.SquaredReLUBackward(gx, devF32(b, toF32(rr), n), dx)
			requireClose(t, "dx", get(b, gx), dwant, tolF32)
		})
	}
}
