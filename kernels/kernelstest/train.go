package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// dropoutKeep is the documented counter-based mask (kernels/cpu.DropoutBits): element with
// counter c is kept iff (u >> 40) ≥ p·2²⁴, u = mix64(mix64(seed) + (c+1)·0x9E3779B97F4A7C15).
func dropoutKeep(seed, c uint64, p float32) bool {
	mix := func(z uint64) uint64 {
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		return z ^ (z >> 31)
	}
	u := mix(mix(seed) + (c+1)*0x9E3779B97F4A7C15)
	return float32(u>>40) >= p*(1<<24)
}

// Dropout checks that the mask is the documented pure function of (seed, offset+i) (so
// every backend and every recompute draws the same), its keep rate, the scaling, p = 0,
// and the backward against finite differences.
func Dropout(t *testing.T, b kernels.Backend) {
	r := newRand(11)
	const n = 100003
	x := randVals(r, n, 1)
	run := func(x []float32, p float32, seed, offset uint64) (out []float32, mask []byte) {
		dout, dm := b.Alloc(tensor.F32, len(x)), b.Alloc(tensor.U8, len(x))
		b.Dropout(dout, dm, devF32(b, x, len(x)), p, seed, offset)
		return get(b, dout), host(b, dm).Data
	}
	for _, p := range []float32{0.1, 0.5} {
		t.Run(fmt.Sprint("p=", p), func(t *testing.T) {
			const seed, offset = 1234, 777
			out, mask := run(x, p, seed, offset)
			kept := 0
			want := make([]float64, n)
			for i := range mask {
				k := dropoutKeep(seed, offset+uint64(i), p)
				require.Equalf(t, k, mask[i] == 1, "mask[%d] = %d", i, mask[i])
				if k {
					kept++
					want[i] = float64(x[i]) / (1 - float64(p))
				}
			}
			// Keep rate within 5 standard deviations of 1−p.
			sd := math.Sqrt(float64(n) * float64(p) * float64(1-p))
			require.InDelta(t, float64(n)*float64(1-p), float64(kept), 5*sd)
			requireClose(t, "out", out, want, 1e-7)

			_, again := run(x, p, seed, offset)
			require.Equal(t, mask, again, "same seed and offset")
			_, shifted := run(x[1000:], p, seed, offset+1000)
			require.Equal(t, mask[1000:], shifted, "mask depends on offset+i only")
			_, other := run(x, p, seed, offset+1)
			_, otherSeed := run(x, p, seed+1, offset)
			for _, m := range [][]byte{other, otherSeed} {
				same := 0
				for i := range m {
					if m[i] == mask[i] {
						same++
					}
				}
				// Independent masks agree on a fraction p² + (1−p)² of elements.
				pp := float64(p)
				require.InDelta(t, pp*pp+(1-pp)*(1-pp), float64(same)/n, 0.02)
			}

			// Backward: dx = dout·mask/(1−p), against finite differences of the masked map.
			const m = 50
			xs := f64s(x[:m])
			rr := f64s(randVals(r, m, 1))
			ref := func() []float64 {
				o := make([]float64, m)
				for i := range o {
					if mask[i] == 1 {
						o[i] = xs[i] / (1 - float64(p))
					}
				}
				return o
			}
			gx := b.Alloc(tensor.F32, m)
			dm := b.Alloc(tensor.U8, m)
			b.Upload(dm, mustBytes(tensor.U8, mask[:m]))
			b.DropoutBackward(gx, devF32(b, toF32(rr), m), dm, p)
			requireClose(t, "dx", get(b, gx), numGrad(xs, func() float64 { return dot(rr, ref()) }), tolFD)
		})
	}
	t.Run("p=0", func(t *testing.T) {
		out, mask := run(x[:999], 0, 5, 6)
		require.Equal(t, x[:999], out)
		for i, m := range mask {
			require.Equalf(t, byte(1), m, "mask[%d]", i)
		}
	})
}

func mustBytes(dt tensor.DType, b []byte) *tensor.Tensor {
	t, err := tensor.FromBytes(dt, []int{len(b) / dt.Size()}, append([]byte(nil), b...))
	if err != nil {
		panic(err)
	}
	return t
}

// refCE is Σ_n dloss[n]·(logsumexp(logits[n]) − logits[n, t]) over the full vocabulary; a
// target outside [0, V) contributes only the logsumexp (no shard holds its logit).
func refCE(logits []float64, v int, targets []int64, dloss []float64) float64 {
	var total float64
	for n := range targets {
		row := logits[n*v : (n+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, x)
		}
		var s float64
		for _, x := range row {
			s += math.Exp(x - mx)
		}
		l := math.Log(s) + mx
		if t := targets[n]; t >= 0 && t < int64(v) {
			l -= row[t]
		}
		total += dloss[n] * l
	}
	return total
}

// CrossEntropy splits the logits over vocab shards (uneven, as with a padded vocabulary
// they need not be), combines RowMax, SumExp and TargetLogit across shards as tensor
// parallelism does, and checks the per-row loss against the reference and every shard's
// CrossEntropyBackward (in place over the logits, too) against finite differences.
func CrossEntropy(t *testing.T, b kernels.Backend) {
	r := newRand(12)
	const n, v = 7, 23
	targets := []int64{0, 22, 9, 10, 15, -100, 40}
	for _, dt := range []tensor.DType{tensor.I64, tensor.I32} {
		for _, shards := range [][]int{{0, 23}, {0, 10, 23}, {0, 5, 9, 23}} {
			t.Run(fmt.Sprintf("%v/shards=%v", dt, shards), func(t *testing.T) {
				logits := randVals(r, n*v, 3)
				dloss := randVals(r, n, 1)
				tg := devIdx(b, dt, targets)
				gmx := make([]float32, n)
				for i := range gmx {
					gmx[i] = float32(math.Inf(-1))
				}
				shardLogits := make([]*tensor.Tensor, len(shards)-1)
				for s := range shardLogits {
					lo, hi := shards[s], shards[s+1]
					part := make([]float32, 0, n*(hi-lo))
					for row := range n {
						part = append(part, logits[row*v+lo:row*v+hi]...)
					}
					shardLogits[s] = devF32(b, part, n, hi-lo)
					mx := b.Alloc(tensor.F32, n)
					b.RowMax(mx, shardLogits[s])
					for i, m := range get(b, mx) {
						gmx[i] = max(gmx[i], m)
					}
				}
				dmx := devF32(b, gmx, n)
				se, tl := make([]float64, n), make([]float64, n)
				for s, sl := range shardLogits {
					dse, dtl := b.Alloc(tensor.F32, n), b.Alloc(tensor.F32, n)
					b.SumExp(dse, sl, dmx)
					b.TargetLogit(dtl, sl, tg, shards[s])
					for i := range n {
						se[i] += float64(get(b, dse)[i])
						tl[i] += float64(get(b, dtl)[i])
					}
				}
				fl := f64s(logits)
				fd := f64s(dloss)
				loss := make([]float32, n)
				want := make([]float64, n)
				for i := range n {
					loss[i] = float32(math.Log(se[i]) + float64(gmx[i]) - tl[i])
					one := make([]float64, n)
					one[i] = 1
					want[i] = refCE(fl, v, targets, one)
				}
				requireClose(t, "loss", loss, want, tolF32)

				dse := devF32(b, toF32(se), n)
				dd := devF32(b, dloss, n)
				var grad []float32
				for s, sl := range shardLogits {
					dl := b.Alloc(tensor.F32, sl.Shape()...)
					if s%2 == 1 {
						dl = sl // in place
					}
					b.CrossEntropyBackward(dl, sl, dmx, dse, tg, dd, shards[s])
					g := get(b, dl)
					w := shards[s+1] - shards[s]
					if grad == nil {
						grad = make([]float32, n*v)
					}
					for row := range n {
						copy(grad[row*v+shards[s]:row*v+shards[s]+w], g[row*w:(row+1)*w])
					}
				}
				requireClose(t, "dlogits", grad, numGrad(fl, func() float64 { return refCE(fl, v, targets, fd) }), tolFD)
			})
		}
	}
}

// AdamW checks five steps with weight decay against a float64 torch.optim.AdamW.
func AdamW(t *testing.T, b kernels.Backend) {
	r := newRand(13)
	const n = 20011
	h := kernels.AdamParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	p0 := randVals(r, n, 1)
	p, m, v := devF32(b, p0, n), b.Alloc(tensor.F32, n), b.Alloc(tensor.F32, n)
	fp, fm, fv := f64s(p0), make([]float64, n), make([]float64, n)
	lr, b1, b2, eps, wd := float64(h.LR), float64(h.Beta1), float64(h.Beta2), float64(h.Eps), float64(h.WeightDecay)
	for step := 1; step <= 5; step++ {
		g := randVals(r, n, 0.5)
		if step == 3 {
			for i := range g[:100] {
				g[i] = 0 // exercise v → small denominators
			}
		}
		h.Step = step
		b.AdamW(p, devF32(b, g, n), m, v, h)
		for i := range fp {
			gi := float64(g[i])
			fp[i] *= 1 - lr*wd
			fm[i] = b1*fm[i] + (1-b1)*gi
			fv[i] = b2*fv[i] + (1-b2)*gi*gi
			mh := fm[i] / (1 - math.Pow(b1, float64(step)))
			vh := fv[i] / (1 - math.Pow(b2, float64(step)))
			fp[i] -= lr * mh / (math.Sqrt(vh) + eps)
		}
		requireClose(t, fmt.Sprint("m step ", step), get(b, m), fm, tolF32)
		requireClose(t, fmt.Sprint("v step ", step), get(b, v), fv, tolF32)
		requireClose(t, fmt.Sprint("p step ", step), get(b, p), fp, 1e-6)
	}
	// The accumulated update p − p0 itself, not only p, matches.
	gp := get(b, p)
	upd := make([]float64, n)
	for i := range upd {
		upd[i] = fp[i] - float64(p0[i])
	}
	requireClose(t, "p − p0", minus(gp, p0), upd, 1e-4)
}

// CastWithAmax checks the rounding into each low-precision dtype (round to nearest even,
// FP8 saturating) against the tensor package's exact conversions, and amax = max|src|
// before scaling.
func CastWithAmax(t *testing.T, b kernels.Backend) {
	r := newRand(14)
	const n = 70001
	src := randVals(r, n, 40)
	src[123] = -1000 // the amax, and beyond E4M3's 448 after scaling
	src[5000] = 1e-9 // underflows
	src[6000] = 0
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F8E4M3, tensor.F8E5M2} {
		for _, scale := range []float32{1, 0.37, 60} {
			t.Run(fmt.Sprintf("%v/scale=%v", dt, scale), func(t *testing.T) {
				dst := b.Alloc(dt, n)
				amax := b.CastWithAmax(dst, devF32(b, src, n), scale)
				require.Equal(t, float32(1000), amax)
				scaled := make([]float32, n)
				for i, x := range src {
					scaled[i] = x * scale
				}
				want := tensor.FromF32Values(dt, scaled, n)
				require.Equal(t, want.Data, host(b, dst).Data)
				// The Into form folds into a running amax: a smaller part leaves it, the
				// whole raises it.
				am := devF32(b, []float32{500}, 1)
				b.CastWithAmaxInto(dst.Slice(0, 100), devF32(b, src[:100], 100), scale, am)
				require.Equal(t, float32(500), host(b, am).F32()[0])
				b.CastWithAmaxInto(dst, devF32(b, src, n), scale, am)
				require.Equal(t, float32(1000), host(b, am).F32()[0])
				require.Equal(t, want.Data, host(b, dst).Data)
			})
		}
	}
}

// Cast checks every conversion among F32, BF16 and F16 against the tensor package's exact
// ones (nearest even; F16 overflow to ±Inf; exact widening), and Round against Cast there
// and back.
func Cast(t *testing.T, b kernels.Backend) {
	r := newRand(15)
	const n = 40003
	src := randVals(r, n, 30)
	src[7] = 1e6                            // F16 overflow
	src[8] = -7e-8                          // F16 subnormal
	src[9] = 1e-40                          // F32 subnormal
	src[10] = float32(math.Copysign(0, -1)) // signed zero (a -0.0 literal is +0 in Go)
	src[11] = 1.00390625                    // exactly halfway between two BF16 values: ties to even
	floats := []tensor.DType{tensor.F32, tensor.BF16, tensor.F16}
	for _, sd := range floats {
		for _, dd := range floats {
			t.Run(fmt.Sprintf("%v->%v", sd, dd), func(t *testing.T) {
				in := tensor.FromF32Values(sd, src, n)
				s := b.Alloc(sd, n)
				b.Upload(s, in)
				d := b.Alloc(dd, n)
				b.Cast(d, s)
				want := tensor.FromF32Values(dd, in.ToF32(), n)
				require.Equal(t, want.Data, host(b, d).Data)
			})
		}
	}
	for _, sd := range []tensor.DType{tensor.F8E4M3, tensor.F8E5M2} {
		t.Run(fmt.Sprintf("%v->float32", sd), func(t *testing.T) {
			// Every bit pattern, NaNs included (compared as bits, canonical NaN either way).
			in := tensor.New(sd, 256)
			for i := range in.Data {
				in.Data[i] = byte(i)
			}
			s := b.Alloc(sd, 256)
			b.Upload(s, in)
			d := b.Alloc(tensor.F32, 256)
			b.Cast(d, s)
			got, want := host(b, d).F32(), in.ToF32()
			for i := range want {
				if want[i] != want[i] {
					require.True(t, got[i] != got[i], "%v %#02x: want NaN, got %v", sd, i, got[i])
					continue
				}
				require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "%v %#02x", sd, i)
			}
		})
	}
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16} {
		t.Run(fmt.Sprintf("Round/%v", dt), func(t *testing.T) {
			x := devF32(b, src, n)
			b.Round(x, dt)
			want := tensor.FromF32Values(tensor.F32, tensor.FromF32Values(dt, src, n).ToF32(), n)
			require.Equal(t, want.Data, host(b, x).Data)
		})
	}
}
