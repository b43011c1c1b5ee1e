package cpu

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// ropeKey identifies a cos/sin table: the base, the rotary dim d, the interpolation and
// the Llama 3.1 scaling.
type ropeKey struct {
	base    float64
	dim     int
	interp  float64
	scaling kernels.RoPEScaling
}

// ropeTable holds cos and sin of p·θᵢ for positions p < n and i < d/2, row-major [n, d/2].
// A published table is never modified; a longer one replaces it.
type ropeTable struct {
	n        int
	cos, sin []float32
}

// RoPEInvFreq returns θᵢ = Base^(−2i/d) for i < d/2 rounded the way Hugging Face's float32
// tables are built (inv_freq = 1/(base ** (arange(0, d, 2).float()/d))): the exponent
// 2i/d is a float32 quotient, the power is rounded to float32, and its reciprocal is a
// float32 division. This reproduces torch's inv_freq bit for bit on the common bases.
func RoPEInvFreq(base float64, d int) []float32 {
	inv := make([]float32, d/2)
	for i := range inv {
		e := float32(2*i) / float32(d)
		inv[i] = 1 / float32(math.Pow(base, float64(e)))
	}
	return inv
}

// RoPEInvFreqScaled is RoPEInvFreq with Llama 3.1's scaling applied (kernels.RoPEScaling)
// in float32 as Hugging Face's and Megatron's torch code computes it: λ = (1/θ)·f32(2π);
// θ/Factor beyond λ_low; between the bands the blend (1−s)·θ/Factor + s·θ with
// s = ((1/λ)·L − LowFreqFactor)/(HighFreqFactor − LowFreqFactor).
func RoPEInvFreqScaled(base float64, d int, sc kernels.RoPEScaling) []float32 {
	if sc.YaRN {
		return yarnInvFreq(base, d, sc)
	}
	inv := RoPEInvFreq(base, d)
	if sc.Factor == 0 {
		return inv
	}
	factor := float32(sc.Factor)
	low, high := float32(sc.LowFreqFactor), float32(sc.HighFreqFactor)
	old := float32(sc.OrigMaxPos)
	lowWave, highWave := float64(sc.OrigMaxPos)/sc.LowFreqFactor, float64(sc.OrigMaxPos)/sc.HighFreqFactor
	twoPi := float32(2 * math.Pi)
	for i, f := range inv {
		wave := (1 / f) * twoPi
		scaled := f
		if float64(wave) > lowWave {
			scaled = f / factor
		}
		if float64(wave) >= highWave && float64(wave) <= lowWave {
			s := ((1/wave)*old - low) / (high - low)
			scaled = (1-s)*scaled/factor + s*scaled
		}
		inv[i] = scaled
	}
	return inv
}

// yarnInvFreq is YaRN's θᵢ' (kernels.RoPEScaling) in float32 as transformers'
// _compute_yarn_parameters and Megatron-Core's YarnRotaryEmbedding compute it: the
// correction range in float64 (Python's math), the power, reciprocals, ramp and blend in
// float32.
func yarnInvFreq(base float64, d int, sc kernels.RoPEScaling) []float32 {
	dim := func(rot float64) float64 {
		return float64(d) * math.Log(float64(sc.OrigMaxPos)/(rot*2*math.Pi)) / (2 * math.Log(base))
	}
	lo, hi := dim(sc.BetaFast), dim(sc.BetaSlow)
	if sc.RoundCorrection {
		lo, hi = math.Floor(lo), math.Ceil(hi)
	}
	lo, hi = max(lo, 0), min(hi, float64(d-1))
	if lo == hi {
		hi += 0.001
	}
	inv := make([]float32, d/2)
	factor := float32(sc.Factor)
	for i := range inv {
		pos := float32(math.Pow(base, float64(float32(2*i)/float32(d))))
		ramp := min(max((float32(i)-float32(lo))/float32(hi-lo), 0), 1)
		extra := 1 - ramp // the share of the unscaled frequency
		inter, plain := 1/float32(factor*pos), 1/pos
		inv[i] = float32(inter*(1-extra)) + float32(plain*extra) // each product rounded, as torch
	}
	return inv
}

// RoPEFill writes cos and sin of the angles of positions [lo, hi) into rows of tables
// [·, len(inv)] with Megatron's and Hugging Face's float32 arithmetic: the position
// float32(p), times float32(1/interp) when interpolating (Megatron's seq *= 1/factor),
// times θᵢ (RoPEInvFreq) rounded to float32; cos/sin of that float32 angle are computed
// in float64 and rounded to float32. Both backends build their tables with it.
func RoPEFill(cos, sin, inv []float32, lo, hi int, interp float64, conc float32) {
	h := len(inv)
	scale := float32(1)
	if interp != 0 && interp != 1 {
		scale = float32(1 / interp)
	}
	for p := lo; p < hi; p++ {
		pf := float32(p)
		if scale != 1 {
			pf *= scale
		}
		for i, f := range inv {
			a := float64(pf * f)
			cos[p*h+i] = float32(math.Cos(a))
			sin[p*h+i] = float32(math.Sin(a))
			if conc != 1 { // YaRN's mscale, on the float32 cos and sin
				cos[p*h+i] *= conc
				sin[p*h+i] *= conc
			}
		}
	}
}

// ropeTables returns a table covering at least n positions, building (and caching, per
// backend) one when needed (RoPEFill).
func (b *Backend) ropeTables(base float64, d, n int, interp float64, sc kernels.RoPEScaling) *ropeTable {
	key := ropeKey{base, d, interp, sc}
	b.ropeMu.RLock()
	t := b.rope[key]
	b.ropeMu.RUnlock()
	if t != nil && t.n >= n {
		return t
	}
	b.ropeMu.Lock()
	defer b.ropeMu.Unlock()
	if t = b.rope[key]; t != nil && t.n >= n {
		return t
	}
	size := max(n, 4096)
	if t != nil {
		size = max(size, 2*t.n)
	}
	h := d / 2
	inv := RoPEInvFreqScaled(base, d, sc)
	t = &ropeTable{n: size, cos: make([]float32, size*h), sin: make([]float32, size*h)}
	parallelFor(size, grainFor(40*h), func(lo, hi int) { RoPEFill(t.cos, t.sin, inv, lo, hi, interp, sc.Conc()) })
	b.rope[key] = t
	return t
}

// RoPE rotates x [B, H, S, D] into out (which may alias x) in the rotate-half layout; see
// kernels.RoPEParams. RotaryDim 0 means D. Per pair, in float32 as HF computes
// q·cos + rotate_half(q)·sin:
//
//	out[i] = x[i]·cos a − x[i+d/2]·sin a,  out[i+d/2] = x[i+d/2]·cos a + x[i]·sin a
//
// with sin negated for Inverse (the backward); Interleaved pairs 2i and 2i+1 instead.
func (b *Backend) RoPE(out, x *tensor.Tensor, p kernels.RoPEParams) {
	if b.bf16("RoPE", func(t []*tensor.Tensor) { b.RoPE(t[0], t[1], p) }, wr("out", out), rd("x", x)) {
		return
	}
	sameShape("RoPE", out, x)
	if x.Rank() != 4 {
		panic(fmt.Sprintf("cpu.RoPE: x %v must be [B, H, S, D]", x))
	}
	s, dd := x.Dim(2), x.Dim(3)
	d := p.RotaryDim
	if d == 0 {
		d = dd
	}
	if d < 0 || d%2 != 0 || d > dd || p.PosOffset < 0 || p.Base <= 0 {
		panic(fmt.Sprintf("cpu.RoPE: x %v with params %+v: need even RotaryDim ≤ D, PosOffset ≥ 0, Base > 0", x, p))
	}
	xs, os := f32("RoPE", x), f32("RoPE", out)
	if x.Numel() == 0 {
		return
	}
	var positions []int32 // per token [B, S] (--reset-position-ids), else PosOffset + s
	if t := p.Positions; t != nil {
		if t.DType() != tensor.I32 || t.Numel() != x.Dim(0)*s || t.Device.Type != tensor.CPU || p.PosOffset != 0 {
			panic(fmt.Sprintf("cpu.RoPE: Positions %v must be an I32 host tensor [%d, %d], with PosOffset 0 (is %d)", t, x.Dim(0), s, p.PosOffset))
		}
		positions = t.I32()
		for _, v := range positions {
			if v < 0 || int(v) >= max(s, p.PosLimit) {
				panic(fmt.Sprintf("cpu.RoPE: position %d outside [0, %d)", v, max(s, p.PosLimit)))
			}
		}
	}
	rows := x.Numel() / dd
	heads := x.Dim(1)
	h := d / 2
	tab := b.ropeTables(p.Base, d, max(p.PosOffset+s, p.PosLimit), p.Interpolation, p.Scaling)
	sign := float32(1)
	if p.Inverse {
		sign = -1
	}
	lo1, hi1 := 1, h // pair i is (lo1·i, lo1·i + hi1)
	if p.Interleaved {
		lo1, hi1 = 2, 1
	}
	parallelFor(rows, grainFor(3*dd), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			pos := p.PosOffset + r%s
			if positions != nil {
				pos = int(positions[r/(heads*s)*s+r%s])
			}
			cs, sn := tab.cos[pos*h:(pos+1)*h], tab.sin[pos*h:(pos+1)*h]
			xr, or := xs[r*dd:(r+1)*dd], os[r*dd:(r+1)*dd]
			for i := range h {
				c, si := cs[i], sign*sn[i]
				a, b := lo1*i, lo1*i+hi1
				x1, x2 := xr[a], xr[b]
				or[a] = float32(x1*c) - float32(x2*si)
				or[b] = float32(x2*c) + float32(x1*si)
			}
			if d < dd {
				copy(or[d:], xr[d:])
			}
		}
	})
}
