package cpu

import "golang.org/x/sys/cpu"

// expNegRowAVX2 is in expf_amd64.s.
//
//go:noescape
func expNegRowAVX2(dst, src *float32, n int, sub float32)

// haveExpAVX2 selects the vector exp; it is read-only after package init.
var haveExpAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// expNegRow sets dst[i] = exp(src[i] − sub) for softmax-style arguments
// (src[i] − sub ≤ 0, up to rounding), eight lanes at a time where AVX2 is available and
// with expNeg for the rest. dst may alias src.
func expNegRow(dst, src []float32, sub float32) {
	n := len(src)
	dst = dst[:n]
	i := 0
	if haveExpAVX2 && n >= 8 {
		i = n &^ 7
		expNegRowAVX2(&dst[0], &src[0], i, sub)
	}
	for ; i < n; i++ {
		dst[i] = expNeg(src[i] - sub)
	}
}
