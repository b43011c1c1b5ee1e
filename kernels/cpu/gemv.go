package cpu

// gemvMin is the smallest N·K that takes the GEMV path: below it Sgemm's packing is cheap
// and keeps the bits of the batched products (decode logits match the full forward's).
const gemvMin = 1 << 18

// gemv computes c[j] = α·Σ_k a[k]·b[j·ldb + k] + β·c[j] for j < n: one row of A times the
// transpose of the weight matrix B [n, k] (a linear layer on one token, as in decoding).
// GEMM would pack all of B for a single row; this streams each row of B once through a
// vector dot product, at memory bandwidth. β = 0 ignores c's old values. Rows are split
// over goroutines, each dot product is computed whole by one, so the bits do not depend on
// the thread count.
func gemv(n, k int, alpha float32, a, b []float32, ldb int, beta float32, c []float32) {
	a = a[:k]
	parallelFor(n, 64, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			d := alpha * dot(a, b[j*ldb:j*ldb+k])
			if beta != 0 {
				d += beta * c[j]
			}
			c[j] = d
		}
	})
}

// dot is Σ x[i]·y[i] (len(y) ≥ len(x)): the vector kernel over whole 32-element groups,
// then the tail in order.
func dot(x, y []float32) float32 {
	n := len(x)
	var s float32
	m := 0
	if hasDotAVX2 && n >= 32 {
		m = n - n%32
		s = dotAVX2(&x[0], &y[0], n)
	}
	for i := m; i < n; i++ {
		s += x[i] * y[i]
	}
	return s
}
