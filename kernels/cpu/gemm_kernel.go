package cpu

import "unsafe"

// gemmKernel is a register-blocked micro-kernel with its packing layout and cache blocking.
//
// fn(kc, a, b, c, ldc, alpha, beta) computes one mr×nr tile
//
//	T[i,j] = Σ_{p<kc} a[p·mr+i]·b[p·nr+j]
//	C[i·ldc+j] = alpha·T[i,j] + beta·C[i·ldc+j]   (C[i·ldc+j] = alpha·T[i,j] when beta = ±0)
//
// from a packed A micro-panel (kc columns of mr values) and a packed B micro-panel (kc rows
// of nr values); the p-sum runs in increasing p.
type gemmKernel struct {
	name   string
	mr, nr int
	// mc, kc, nc are the cache blocks: an mc×kc block of packed A is reused across a
	// kc×nc block of packed B (mc a multiple of mr, nc a multiple of nr).
	mc, kc, nc int
	fn         func(kc int, a, b, c *float32, ldc int, alpha, beta float32)
	// asmPack selects the AVX packing routines (gemmPackRowsAsm, gemmPackColsAsm).
	asmPack bool
}

// gemmGeneric is the portable kernel: plain Go, 4×4 register tile. It runs on every
// architecture and is the reference the assembly kernels are tested against.
var gemmGeneric = &gemmKernel{name: "go4x4", mr: 4, nr: 4, mc: 64, kc: 256, nc: 1024, fn: sgemmKernelGo}

// sgemmKernelGo is gemmKernel.fn for mr = nr = 4 in portable Go.
func sgemmKernelGo(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	ap := gemmFloats(a, 4*kc)
	bp := gemmFloats(b, 4*kc)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for p := 0; p < kc; p++ {
		av := ap[4*p : 4*p+4 : 4*p+4]
		bv := bp[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00, c01, c02, c03 = gemmFMA(a0, b0, c00), gemmFMA(a0, b1, c01), gemmFMA(a0, b2, c02), gemmFMA(a0, b3, c03)
		c10, c11, c12, c13 = gemmFMA(a1, b0, c10), gemmFMA(a1, b1, c11), gemmFMA(a1, b2, c12), gemmFMA(a1, b3, c13)
		c20, c21, c22, c23 = gemmFMA(a2, b0, c20), gemmFMA(a2, b1, c21), gemmFMA(a2, b2, c22), gemmFMA(a2, b3, c23)
		c30, c31, c32, c33 = gemmFMA(a3, b0, c30), gemmFMA(a3, b1, c31), gemmFMA(a3, b2, c32), gemmFMA(a3, b3, c33)
	}
	cp := gemmFloats(c, 3*ldc+4)
	tile := [4][4]float32{
		{c00, c01, c02, c03}, {c10, c11, c12, c13},
		{c20, c21, c22, c23}, {c30, c31, c32, c33},
	}
	for i := range tile {
		row := cp[i*ldc : i*ldc+4 : i*ldc+4]
		for j, t := range tile[i] {
			if beta == 0 {
				row[j] = alpha * t
			} else {
				row[j] = alpha*t + beta*row[j]
			}
		}
	}
}

// gemmFMA is one multiply-add step of the portable kernel (the compiler may fuse it).
func gemmFMA(a, b, c float32) float32 { return a*b + c }

// gemmFloats views n floats starting at p; the packing code guarantees they exist.
func gemmFloats(p *float32, n int) []float32 { return unsafe.Slice(p, n) }
