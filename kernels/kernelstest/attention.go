package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// attnCase is one attention geometry: q [B, H, S, D], k and v [B, G, T, D].
type attnCase struct {
	name             string
	b, h, g, s, t, d int
	p                kernels.AttnParams
	keyStart         []int32 // [B, S]: set as p.KeyStart by runAttention (nil: none)
}

// visible reports whether query i (position QOffset+i) of batch bi sees key j.
func (c *attnCase) visible(bi, i, j int) bool {
	qp := c.p.QOffset + i
	if c.p.Causal && j > qp {
		return false
	}
	if w := c.p.SlidingWindow; w > 0 && j <= qp-w {
		return false
	}
	return c.keyStart == nil || j >= int(c.keyStart[bi*c.s+i])
}

// docStarts is KeyStart for sequences of s tokens packed from documents of the given
// lengths (repeated to fill s): each token's document start.
func docStarts(b, s int, lens ...int) []int32 {
	out := make([]int32, b*s)
	for bi := range b {
		start, k := 0, bi // each batch row its own cut
		for i := range s {
			if i-start == lens[k%len(lens)] {
				start, k = i, k+1
			}
			out[bi*s+i] = int32(start)
		}
	}
	return out
}

// score is s_ij for head h: Scale·(q·k) + slope·j, or Scale·(q·k + slope·j) with
// ALiBiBeforeScale.
func (c *attnCase) score(qk float64, h, j int) float64 {
	sc := float64(c.p.Scale)
	var slope float64
	if c.p.ALiBiSlopes != nil {
		slope = float64(c.p.ALiBiSlopes[h])
	}
	if c.p.ALiBiBeforeScale {
		return sc * (qk + slope*float64(j))
	}
	return sc*qk + slope*float64(j)
}

// drop is the attention-dropout factor of element (bi, h, i, j): 1 without dropout, else
// 1/(1−p) where Dropout's counter-based rule keeps it and 0 where it drops it:
// u = mix(mix(seed) + (counter+1)·0x9E3779B97F4A7C15), kept iff float32(u>>40) ≥ p·2²⁴.
func (c *attnCase) drop(bi, h, i, j int) float64 {
	p := c.p.DropoutP
	if p <= 0 {
		return 1
	}
	mix := func(z uint64) uint64 {
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		return z ^ z>>31
	}
	n := c.p.DropoutCounter(c.h, bi, h, i, j, c.s, c.t)
	if float32(mix(mix(c.p.DropoutSeed)+(n+1)*0x9E3779B97F4A7C15)>>40) >= p*(1<<24) {
		return float64(1 / (1 - p))
	}
	return 0
}

// probs returns P_ij for every j of query row (bi, h, i) (0 where masked) and lse_i.
func (c *attnCase) probs(q, k []float64, bi, h, i int) ([]float64, float64) {
	d, grp := c.d, h/(c.h/c.g)
	qi := q[((bi*c.h+h)*c.s+i)*d:][:d]
	s := make([]float64, c.t)
	mx := math.Inf(-1)
	for j := range c.t {
		if !c.visible(bi, i, j) {
			s[j] = math.Inf(-1)
			continue
		}
		kj := k[((bi*c.g+grp)*c.t+j)*d:][:d]
		s[j] = c.score(dot(qi, kj), h, j)
		mx = math.Max(mx, s[j])
	}
	if math.IsInf(mx, -1) {
		return make([]float64, c.t), mx
	}
	var sum float64
	for j := range s {
		s[j] = math.Exp(s[j] - mx)
		sum += s[j]
	}
	for j := range s {
		s[j] /= sum
	}
	return s, mx + math.Log(sum)
}

// refAttention is softmax attention straight from kernels.AttnParams' math.
func refAttention(c *attnCase, q, k, v []float64) (out, lse []float64) {
	d := c.d
	out, lse = make([]float64, c.b*c.h*c.s*d), make([]float64, c.b*c.h*c.s)
	for bi := range c.b {
		for h := range c.h {
			grp := h / (c.h / c.g)
			for i := range c.s {
				row := (bi*c.h+h)*c.s + i
				p, l := c.probs(q, k, bi, h, i)
				lse[row] = l
				for j, pj := range p {
					vj := v[((bi*c.g+grp)*c.t+j)*d:][:d]
					pj *= c.drop(bi, h, i, j)
					for e := range d {
						out[row*d+e] += pj * vj[e]
					}
				}
			}
		}
	}
	return out, lse
}

// refAttentionBackward is the analytic gradient of Σ dout⊙out (checked against finite
// differences on the small cases).
func refAttentionBackward(c *attnCase, q, k, v, dout []float64) (dq, dk, dv []float64) {
	d := c.d
	dq, dk, dv = make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	sc := float64(c.p.Scale)
	for bi := range c.b {
		for h := range c.h {
			grp := h / (c.h / c.g)
			for i := range c.s {
				row := (bi*c.h+h)*c.s + i
				p, _ := c.probs(q, k, bi, h, i)
				g := dout[row*d:][:d]
				dp := make([]float64, c.t)
				var dd float64
				for j := range c.t {
					dp[j] = c.drop(bi, h, i, j) * dot(g, v[((bi*c.g+grp)*c.t+j)*d:][:d])
					dd += p[j] * dp[j]
				}
				for j := range c.t {
					if p[j] == 0 {
						continue
					}
					ds := p[j] * (dp[j] - dd)
					ko := ((bi*c.g+grp)*c.t + j) * d
					pd := p[j] * c.drop(bi, h, i, j)
					for e := range d {
						dq[row*d+e] += sc * ds * k[ko+e]
						dk[ko+e] += sc * ds * q[row*d+e]
						dv[ko+e] += pd * g[e]
					}
				}
			}
		}
	}
	return dq, dk, dv
}

// alibiSlopes are BLOOM's slopes for a power-of-two head count: 2^(−8(h+1)/n).
func alibiSlopes(n int) []float32 {
	s := make([]float32, n)
	for h := range s {
		s[h] = float32(math.Pow(2, -8*float64(h+1)/float64(n)))
	}
	return s
}

// runAttention runs the backend forward and backward on random inputs of case c and
// compares the forward with refAttention; it returns the inputs, dout and the backend's
// gradients.
func runAttention(t *testing.T, b kernels.Backend, c *attnCase, seed uint64) (q, k, v, dout []float64, dq, dk, dv []float32) {
	r := newRand(seed)
	qs, ks, vs := randVals(r, c.b*c.h*c.s*c.d, 1), randVals(r, c.b*c.g*c.t*c.d, 1), randVals(r, c.b*c.g*c.t*c.d, 1)
	gs := randVals(r, c.b*c.h*c.s*c.d, 1)
	q, k, v, dout = f64s(qs), f64s(ks), f64s(vs), f64s(gs)
	dq4, dk4 := []int{c.b, c.h, c.s, c.d}, []int{c.b, c.g, c.t, c.d}
	tq, tk, tv := devF32(b, qs, dq4...), devF32(b, ks, dk4...), devF32(b, vs, dk4...)
	if c.keyStart != nil {
		c.p.KeyStart = devI32(b, c.keyStart, c.b, c.s)
	}
	out, lse := b.Alloc(tensor.F32, dq4...), b.Alloc(tensor.F32, c.b, c.h, c.s)
	b.Attention(out, lse, tq, tk, tv, c.p)
	wo, wl := refAttention(c, q, k, v)
	requireClose(t, "out", get(b, out), wo, tolF32)
	requireClose(t, "lse", get(b, lse), wl, tolF32)

	gq, gk, gv := b.Alloc(tensor.F32, dq4...), b.Alloc(tensor.F32, dk4...), b.Alloc(tensor.F32, dk4...)
	// Prefill: dq, dk, dv are overwritten, not accumulated.
	b.Fill(gq, 3)
	b.Fill(gk, 3)
	b.Fill(gv, 3)
	b.AttentionBackward(gq, gk, gv, devF32(b, gs, dq4...), tq, tk, tv, out, lse, c.p)
	return q, k, v, dout, get(b, gq), get(b, gk), get(b, gv)
}

// Attention checks small cases (GQA, MQA, causal with QOffset, both ALiBi placements,
// sliding windows with and without causal masking) against the reference forward and
// every gradient against finite differences of the reference.
func Attention(t *testing.T, b kernels.Backend) {
	sc := float32(1 / math.Sqrt(8))
	cases := []attnCase{
		{"mha", 2, 2, 2, 5, 7, 8, kernels.AttnParams{Scale: sc}, nil},
		{"gqa-causal-qoffset", 1, 4, 2, 5, 8, 8, kernels.AttnParams{Scale: sc, Causal: true, QOffset: 3}, nil},
		{"mqa-causal", 2, 3, 1, 6, 6, 8, kernels.AttnParams{Scale: sc, Causal: true}, nil},
		{"alibi-bloom", 1, 4, 4, 6, 6, 8, kernels.AttnParams{Scale: sc, Causal: true, ALiBiSlopes: alibiSlopes(4)}, nil},
		{"alibi-falcon-gqa", 1, 4, 2, 6, 6, 8, kernels.AttnParams{Scale: sc, Causal: true, ALiBiSlopes: alibiSlopes(4), ALiBiBeforeScale: true}, nil},
		{"window-causal", 1, 2, 1, 9, 9, 8, kernels.AttnParams{Scale: sc, Causal: true, SlidingWindow: 3}, nil},
		{"window-gqa-qoffset", 1, 4, 2, 4, 10, 8, kernels.AttnParams{Scale: sc, Causal: true, SlidingWindow: 5, QOffset: 6}, nil},
		{"window-noncausal", 1, 2, 2, 6, 6, 8, kernels.AttnParams{Scale: sc, SlidingWindow: 2}, nil},
		{"everything", 2, 4, 2, 5, 9, 8, kernels.AttnParams{Scale: sc, Causal: true, SlidingWindow: 4, QOffset: 4, ALiBiSlopes: alibiSlopes(4)}, nil},
		{"dropout-gqa-causal", 2, 4, 2, 6, 6, 8, kernels.AttnParams{Scale: sc, Causal: true, DropoutP: 0.3, DropoutSeed: 7, DropoutOffset: 1000}, nil},
		{"dropout-tp-heads", 1, 2, 2, 5, 7, 8, kernels.AttnParams{Scale: sc, DropoutP: 0.5, DropoutSeed: 9, DropoutHeads: 6, DropoutHead0: 2}, nil},
		{"documents-gqa", 2, 4, 2, 9, 9, 8, kernels.AttnParams{Scale: sc, Causal: true}, docStarts(2, 9, 3, 1, 4)},
		{"documents-window-dropout", 2, 2, 1, 8, 8, 8, kernels.AttnParams{Scale: sc, Causal: true, SlidingWindow: 3, DropoutP: 0.3, DropoutSeed: 5}, docStarts(2, 8, 5, 2)},
		{"dropout-context-chunk", 2, 4, 2, 4, 12, 8, kernels.AttnParams{Scale: sc, Causal: true, QOffset: 8, DropoutP: 0.3, DropoutSeed: 11, DropoutRows: 12}, nil},
	}
	for n, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, k, v, dout, dq, dk, dv := runAttention(t, b, &c, uint64(100+n))
			loss := func() float64 { o, _ := refAttention(&c, q, k, v); return dot(dout, o) }
			fq, fk, fv := numGrad(q, loss), numGrad(k, loss), numGrad(v, loss)
			requireClose(t, "dq", dq, fq, tolFD)
			requireClose(t, "dk", dk, fk, tolFD)
			requireClose(t, "dv", dv, fv, tolFD)
			// The analytic reference used by AttentionBlocks agrees with finite differences.
			aq, ak, av := refAttentionBackward(&c, q, k, v, dout)
			for _, p := range [][2][]float64{{aq, fq}, {ak, fk}, {av, fv}} {
				require.Less(t, relL2(toF32(p[0]), p[1]), tolFD, "reference backward")
			}
		})
	}
}

// AttentionDropoutRows: with DropoutRows a call on a chunk of the queries (at their
// QOffset) draws the dropout masks of the whole-sequence call, so its outputs are those rows
// of the whole call's (context parallelism's chunked attention).
func AttentionDropoutRows(t *testing.T, b kernels.Backend) {
	const bs, h, g, s, d, c = 2, 4, 2, 12, 8, 4
	r := newRand(31)
	qs, ks, vs := randVals(r, bs*h*s*d, 1), randVals(r, bs*g*s*d, 1), randVals(r, bs*g*s*d, 1)
	p := kernels.AttnParams{Scale: 0.35, Causal: true, DropoutP: 0.4, DropoutSeed: 13, DropoutOffset: 77}
	k, v := devF32(b, ks, bs, g, s, d), devF32(b, vs, bs, g, s, d)
	full, lse := b.Alloc(tensor.F32, bs, h, s, d), b.Alloc(tensor.F32, bs, h, s)
	b.Attention(full, lse, devF32(b, qs, bs, h, s, d), k, v, p)
	want := get(b, full)
	for lo := 0; lo < s; lo += c {
		q := make([]float32, 0, bs*h*c*d)
		for bh := 0; bh < bs*h; bh++ {
			q = append(q, qs[(bh*s+lo)*d:(bh*s+lo+c)*d]...)
		}
		pc := p
		pc.QOffset, pc.DropoutRows = lo, s
		out, l := b.Alloc(tensor.F32, bs, h, c, d), b.Alloc(tensor.F32, bs, h, c)
		b.Fill(out, float32(math.NaN()))
		b.Attention(out, l, devF32(b, q, bs, h, c, d), k, v, pc)
		got := get(b, out)
		for bh := 0; bh < bs*h; bh++ {
			for i := 0; i < c*d; i++ {
				require.InDelta(t, want[(bh*s+lo)*d+i], got[bh*c*d+i], 1e-6, "chunk at %d, head row %d", lo, bh)
			}
		}
	}
}

// AttentionBlocks checks sizes that span several query and key blocks of a blocked
// (flash) implementation, including partially masked blocks, against the reference
// forward and the analytic reference backward.
func AttentionBlocks(t *testing.T, b kernels.Backend) {
	cases := []attnCase{
		{"gqa-causal-qoffset", 1, 4, 2, 150, 200, 16, kernels.AttnParams{Scale: 0.25, Causal: true, QOffset: 50}, nil},
		{"alibi-window", 2, 2, 1, 130, 130, 16, kernels.AttnParams{Scale: 0.25, Causal: true, SlidingWindow: 70, ALiBiSlopes: alibiSlopes(2)}, nil},
		{"noncausal", 1, 2, 2, 70, 131, 24, kernels.AttnParams{Scale: 0.2}, nil},
		{"d128", 1, 2, 1, 65, 65, 128, kernels.AttnParams{Scale: float32(1 / math.Sqrt(128)), Causal: true}, nil},
		{"dropout", 1, 2, 2, 70, 130, 16, kernels.AttnParams{Scale: 0.25, Causal: true, QOffset: 60, DropoutP: 0.1, DropoutSeed: 3, DropoutOffset: 1 << 40}, nil},
		{"documents", 2, 2, 1, 150, 150, 16, kernels.AttnParams{Scale: 0.25, Causal: true}, docStarts(2, 150, 70, 1, 40, 90)},
	}
	for n, c := range cases {
		t.Run(fmt.Sprint(c.name), func(t *testing.T) {
			q, k, v, dout, dq, dk, dv := runAttention(t, b, &c, uint64(200+n))
			aq, ak, av := refAttentionBackward(&c, q, k, v, dout)
			requireClose(t, "dq", dq, aq, tolF32)
			requireClose(t, "dk", dk, ak, tolF32)
			requireClose(t, "dv", dv, av, tolF32)
		})
	}
}
