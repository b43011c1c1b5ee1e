package cpu

import "github.com/gomegatron/gomegatron/tensor"

// SplitQKV implements kernels.Backend.SplitQKV.
func (be *Backend) SplitQKV(q, k, v, qkv *tensor.Tensor, groups, qPerGroup int) {
	if be.bf16("SplitQKV", func(t []*tensor.Tensor) { be.SplitQKV(t[0], t[1], t[2], t[3], groups, qPerGroup) },
		wr("q", q), wr("k", k), wr("v", v), rd("qkv", qkv)) {
		return
	}
	moveQKV(q, k, v, qkv, groups, qPerGroup, false)
}

// MergeQKV implements kernels.Backend.MergeQKV.
func (be *Backend) MergeQKV(qkv, q, k, v *tensor.Tensor, groups, qPerGroup int) {
	if be.bf16("MergeQKV", func(t []*tensor.Tensor) { be.MergeQKV(t[0], t[1], t[2], t[3], groups, qPerGroup) },
		wr("qkv", qkv), rd("q", q), rd("k", k), rd("v", v)) {
		return
	}
	moveQKV(q, k, v, qkv, groups, qPerGroup, true)
}

// moveQKV copies between the fused [S, B, G, R+2, D] layout and the per-head [B, H, S, D]
// tensors, in either direction.
func moveQKV(q, k, v, qkv *tensor.Tensor, groups, r int, merge bool) {
	b, s, d := q.Dim(0), q.Dim(2), q.Dim(3)
	if q.Dim(1) != groups*r || k.Dim(1) != groups || v.Dim(1) != groups || qkv.Numel() != s*b*groups*(r+2)*d {
		panic("cpu.SplitQKV: shapes " + q.String() + " " + k.String() + " " + v.String() + " " + qkv.String() + " do not match the group layout")
	}
	fused, qv, kv, vv := qkv.F32(), q.F32(), k.F32(), v.F32()
	parallelFor(s*b, grainFor(groups*(r+2)*d), func(lo, hi int) {
		for row := lo; row < hi; row++ {
			si, bi := row/b, row%b
			base := row * groups * (r + 2) * d
			for g := 0; g < groups; g++ {
				src := fused[base+g*(r+2)*d:]
				for j := 0; j < r+2; j++ {
					var dst []float32
					switch {
					case j < r:
						h := g*r + j
						dst = qv[((bi*groups*r+h)*s+si)*d:][:d]
					case j == r:
						dst = kv[((bi*groups+g)*s+si)*d:][:d]
					default:
						dst = vv[((bi*groups+g)*s+si)*d:][:d]
					}
					if merge {
						copy(src[j*d:(j+1)*d], dst)
					} else {
						copy(dst, src[j*d:(j+1)*d])
					}
				}
			}
		}
	})
}
