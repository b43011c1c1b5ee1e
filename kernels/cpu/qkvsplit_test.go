package cpu

import (
	"testing"

	"github.com/gomegatron/gomegatron/tensor"
)

// TestSplitQKVLayout checks the index mapping element by element against the layout
// definition, then that MergeQKV inverts SplitQKV.
func TestSplitQKVLayout(t *testing.T) {
	const s, b, g, r, d = 3, 2, 2, 3, 4
	be := New()
	qkv := tensor.New(tensor.F32, s, b, g*(r+2)*d)
	fv := qkv.F32()
	for i := range fv {
		fv[i] = float32(i)
	}
	q, k, v := tensor.New(tensor.F32, b, g*r, s, d), tensor.New(tensor.F32, b, g, s, d), tensor.New(tensor.F32, b, g, s, d)
	be.SplitQKV(q, k, v, qkv, g, r)
	at := func(si, bi, gi, j, di int) float32 { return fv[(((si*b+bi)*g+gi)*(r+2)+j)*d+di] }
	for si := 0; si < s; si++ {
		for bi := 0; bi < b; bi++ {
			for gi := 0; gi < g; gi++ {
				for di := 0; di < d; di++ {
					for j := 0; j < r; j++ {
						if got := q.F32()[((bi*g*r+gi*r+j)*s+si)*d+di]; got != at(si, bi, gi, j, di) {
							t.Fatalf("q[%d,%d,%d,%d] = %v, want %v", bi, gi*r+j, si, di, got, at(si, bi, gi, j, di))
						}
					}
					if got := k.F32()[((bi*g+gi)*s+si)*d+di]; got != at(si, bi, gi, r, di) {
						t.Fatalf("k mismatch at %d %d %d %d", bi, gi, si, di)
					}
					if got := v.F32()[((bi*g+gi)*s+si)*d+di]; got != at(si, bi, gi, r+1, di) {
						t.Fatalf("v mismatch at %d %d %d %d", bi, gi, si, di)
					}
				}
			}
		}
	}
	back := tensor.New(tensor.F32, s, b, g*(r+2)*d)
	be.MergeQKV(back, q, k, v, g, r)
	for i, x := range back.F32() {
		if x != fv[i] {
			t.Fatalf("MergeQKV(SplitQKV(x))[%d] = %v, want %v", i, x, fv[i])
		}
	}
}
