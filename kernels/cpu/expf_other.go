//go:build !amd64

package cpu

// haveExpAVX2 is false off amd64 (tests toggle it on amd64).
var haveExpAVX2 = false

// expNegRow sets dst[i] = exp(src[i] − sub) for softmax-style arguments
// (src[i] − sub ≤ 0, up to rounding). dst may alias src.
func expNegRow(dst, src []float32, sub float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = expNeg(x - sub)
	}
}
