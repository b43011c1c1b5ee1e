package kernelstest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// QKV checks SplitQKV against a gather from Megatron's fused layout
// qkv[s, b, g, j, d] (j < R: query head g·R+j, j = R: key, j = R+1: value of group g), and
// that MergeQKV (the gradient path) is its exact inverse.
func QKV(t *testing.T, b kernels.Backend) {
	r := newRand(15)
	for _, c := range [][5]int{{3, 2, 2, 2, 4}, {5, 1, 1, 4, 8}, {2, 3, 4, 1, 6}} {
		s, bb, g, rep, d := c[0], c[1], c[2], c[3], c[4]
		t.Run(fmt.Sprintf("S=%d/B=%d/G=%d/R=%d/D=%d", s, bb, g, rep, d), func(t *testing.T) {
			x := randVals(r, s*bb*g*(rep+2)*d, 1)
			fused := devF32(b, x, s, bb, g*(rep+2)*d)
			q, k, v := b.Alloc(tensor.F32, bb, g*rep, s, d), b.Alloc(tensor.F32, bb, g, s, d), b.Alloc(tensor.F32, bb, g, s, d)
			b.SplitQKV(q, k, v, fused, g, rep)
			wq, wk, wv := make([]float64, bb*g*rep*s*d), make([]float64, bb*g*s*d), make([]float64, bb*g*s*d)
			for si := range s {
				for bi := range bb {
					for gi := range g {
						for j := range rep + 2 {
							for e := range d {
								val := float64(x[(((si*bb+bi)*g+gi)*(rep+2)+j)*d+e])
								switch {
								case j < rep:
									wq[((bi*g*rep+gi*rep+j)*s+si)*d+e] = val
								case j == rep:
									wk[((bi*g+gi)*s+si)*d+e] = val
								default:
									wv[((bi*g+gi)*s+si)*d+e] = val
								}
							}
						}
					}
				}
			}
			requireClose(t, "q", get(b, q), wq, 0)
			requireClose(t, "k", get(b, k), wk, 0)
			requireClose(t, "v", get(b, v), wv, 0)
			back := b.Alloc(tensor.F32, s, bb, g*(rep+2)*d)
			b.MergeQKV(back, q, k, v, g, rep)
			require.Equal(t, x, get(b, back), "MergeQKV(SplitQKV(x)) = x")
		})
	}
}
