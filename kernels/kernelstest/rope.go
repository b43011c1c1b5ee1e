package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// ropeAngle is a = p·θᵢ with the float32 rounding of Hugging Face's tables, which the
// backends reproduce: θᵢ = 1/float32(Base^float32(2i/d)) (float32 exponent and
// reciprocal), a = float32(p)·θᵢ rounded to float32; cos and sin are then exact.
//
// With an interpolation factor f the position is float32(p)·float32(1/f) first, as
// Megatron's RotaryEmbedding scales its float32 positions.
func ropeAngle(base float64, d, p, i int, interp float64) float64 {
	e := float32(2*i) / float32(d)
	inv := 1 / float32(math.Pow(base, float64(e)))
	pf := float32(p)
	if interp != 0 && interp != 1 {
		pf *= float32(1 / interp)
	}
	return float64(pf * inv)
}

// refRoPE rotates x [B, H, S, D] by the angles of positions PosOffset+s, or pos[b, s] when
// pos is set (−a for Inverse): channel pairs (i, i+d/2), or (2i, 2i+1) Interleaved.
func refRoPE(x []float64, h, s, dd int, p kernels.RoPEParams, positions []int32) []float64 {
	out := append([]float64(nil), x...)
	d := p.RotaryDim
	for row := range len(x) / dd {
		pos := p.PosOffset + row%s
		if positions != nil {
			pos = int(positions[row/(h*s)*s+row%s])
		}
		for i := range d / 2 {
			a := ropeAngle(p.Base, d, pos, i, p.Interpolation)
			if p.Inverse {
				a = -a
			}
			c, sn := math.Cos(a), math.Sin(a)
			i1, i2 := row*dd+i, row*dd+i+d/2
			if p.Interleaved {
				i1, i2 = row*dd+2*i, row*dd+2*i+1
			}
			x1, x2 := x[i1], x[i2]
			out[i1] = x1*c - x2*sn
			out[i2] = x2*c + x1*sn
		}
	}
	return out
}

// RoPE checks the forward (full and partial rotary dims, large position offsets where
// the float32 angle rounding matters, per-token positions restarting with each document,
// in place) and that the Inverse rotation is the backward, against finite differences.
func RoPE(t *testing.T, b kernels.Backend) {
	restart := func(bb, s int, lens ...int) []int32 { // position within each document
		pos := docStarts(bb, s, lens...)
		for i := range pos {
			pos[i] = int32(i%s) - pos[i]
		}
		return pos
	}
	cases := []struct {
		bb, h, s, d int
		p           kernels.RoPEParams
		positions   []int32
	}{
		{2, 3, 5, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 16}, nil},
		{1, 2, 7, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 8, PosOffset: 3}, nil},
		{1, 2, 6, 12, kernels.RoPEParams{Base: 1e6, RotaryDim: 12, PosOffset: 1000}, nil},
		{1, 1, 4, 64, kernels.RoPEParams{Base: 500000, RotaryDim: 64, PosOffset: 7000}, nil},
		{2, 3, 9, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 12}, restart(2, 9, 4, 2, 5)},
		{1, 2, 6, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 16, PosOffset: 4000, Interpolation: 4}, nil},
		{2, 1, 9, 12, kernels.RoPEParams{Base: 1e6, RotaryDim: 12, Interpolation: 3}, restart(2, 9, 4, 2, 5)},
		// --rotary-interleaved (ChatGLM, GLM-4): full, half (their rotary dim), per-token positions.
		{2, 3, 5, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 16, Interleaved: true}, nil},
		{1, 2, 7, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 8, PosOffset: 3000, Interleaved: true}, nil},
		{2, 3, 9, 16, kernels.RoPEParams{Base: 10000, RotaryDim: 8, Interleaved: true}, restart(2, 9, 4, 2, 5)},
	}
	r := newRand(10)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d×%d×%d×%d/%+v", c.bb, c.h, c.s, c.d, c.p), func(t *testing.T) {
			n := c.bb * c.h * c.s * c.d
			shape := []int{c.bb, c.h, c.s, c.d}
			x := randVals(r, n, 1)
			fx := f64s(x)
			dx, out := devF32(b, x, shape...), b.Alloc(tensor.F32, shape...)
			if c.positions != nil {
				c.p.Positions = devI32(b, c.positions, c.bb, c.s)
			}
			b.RoPE(out, dx, c.p)
			want := refRoPE(fx, c.h, c.s, c.d, c.p, c.positions)
			requireClose(t, "out", get(b, out), want, tolF32)
			b.RoPE(dx, dx, c.p) // in place
			require.Equal(t, get(b, out), get(b, dx), "in-place RoPE")

			rr := f64s(randVals(r, n, 1))
			inv := c.p
			inv.Inverse = true
			gx := b.Alloc(tensor.F32, shape...)
			b.RoPE(gx, devF32(b, toF32(rr), shape...), inv)
			fd := numGrad(fx, func() float64 { return dot(rr, refRoPE(fx, c.h, c.s, c.d, c.p, c.positions)) })
			requireClose(t, "dx (Inverse)", get(b, gx), fd, tolFD)
		})
	}
	// Interpolation by 2 rotates position 2p exactly as no interpolation rotates p.
	x := randVals(r, 2*4*16, 1)
	even, plain := b.Alloc(tensor.F32, 1, 2, 4, 16), b.Alloc(tensor.F32, 1, 2, 4, 16)
	b.RoPE(even, devF32(b, x, 1, 2, 4, 16), kernels.RoPEParams{Base: 10000, Positions: devI32(b, []int32{0, 2, 4, 6}, 1, 4), PosLimit: 8, Interpolation: 2})
	b.RoPE(plain, devF32(b, x, 1, 2, 4, 16), kernels.RoPEParams{Base: 10000, Positions: devI32(b, []int32{0, 1, 2, 3}, 1, 4)})
	require.Equal(t, get(b, plain), get(b, even), "interpolation by 2 halves the positions")
}
