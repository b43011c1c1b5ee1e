package cpu

import "math"

// ALiBiSlopes returns the ALiBi slope of each of n heads as BLOOM computes them in float32
// (Press et al.; HF build_alibi_tensor): with p = 2^floor(log2 n), slope_h = b^(h+1) for
// h < p, b = 2^(−8/p); the remaining n−p heads get b'^k for k = 1, 3, 5, …, b' = 2^(−4/p).
// The base is rounded to float32 and each power is rounded to float32. Falcon rounds
// these slopes to bfloat16 (tensor.BF16FromF32) before use.
func ALiBiSlopes(n int) []float32 {
	if n <= 0 {
		return nil
	}
	p := 1 << int(math.Floor(math.Log2(float64(n))))
	pow := func(base float64, k int) float32 {
		return float32(math.Pow(float64(float32(base)), float64(k)))
	}
	out := make([]float32, 0, n)
	base := math.Pow(2, -math.Pow(2, -(math.Log2(float64(p))-3)))
	for h := 1; h <= p; h++ {
		out = append(out, pow(base, h))
	}
	if p != n {
		extra := math.Pow(2, -math.Pow(2, -(math.Log2(float64(2*p))-3)))
		for k := 1; len(out) < n; k += 2 {
			out = append(out, pow(extra, k))
		}
	}
	return out
}
