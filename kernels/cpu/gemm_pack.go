package cpu

// Packing copies a block of op(A) or op(B) into the layout the micro-kernel streams:
// a packed A micro-panel holds kc columns of mr row values, a packed B micro-panel holds kc
// rows of nr column values, both zero-padded past the matrix edge so edge tiles run the
// same kernel. With asm set (the assembly kernels), full-width pieces go through the AVX
// copy and 8×8 transpose routines of gemm_pack_amd64.s; the Go loops do the rest and are
// the whole path for the portable kernel.

// gemmPackA writes op(A)[i0:i0+rows, pc:pc+kc] as ⌈rows/mr⌉ micro-panels of mr·kc floats:
// dst[ip·mr·kc + p·mr + i] = op(A)[i0+ip·mr+i, pc+p].
func gemmPackA(dst []float32, mr int, g *gemmArgs, i0, rows, pc, kc int, asm bool) {
	for ip := 0; ip*mr < rows; ip++ {
		rs := min(mr, rows-ip*mr)
		panel := dst[ip*mr*kc : (ip+1)*mr*kc]
		if g.transA { // stored A is k×m: row pc+p holds op(A)[:, pc+p]
			gemmPackLanesFromRows(panel, mr, g.a, g.lda, pc, kc, i0+ip*mr, rs, asm)
		} else {
			gemmPackLanesFromCols(panel, mr, g.a, g.lda, i0+ip*mr, rs, pc, kc, asm)
		}
	}
}

// gemmPackB writes op(B)[pc:pc+kc, col:col+cols] as one micro-panel of nr·kc floats:
// dst[p·nr + j] = op(B)[pc+p, col+j].
func gemmPackB(dst []float32, nr int, g *gemmArgs, pc, kc, col, cols int, asm bool) {
	if g.transB { // stored B is n×k: row col+j holds op(B)[:, col+j]
		gemmPackLanesFromCols(dst, nr, g.b, g.ldb, col, cols, pc, kc, asm)
	} else {
		gemmPackLanesFromRows(dst, nr, g.b, g.ldb, pc, kc, col, cols, asm)
	}
}

// gemmPackLanesFromRows sets dst[p·w + i] = src[(r0+p)·ld + c0 + i] for p < kc, i < n and
// zero for n ≤ i < w: each packed row is a contiguous piece of a source row.
func gemmPackLanesFromRows(dst []float32, w int, src []float32, ld, r0, kc, c0, n int, asm bool) {
	if asm && gemmPackRowsAsm(dst, w, src, ld, r0, kc, c0, n) {
		if n < w {
			for p := 0; p < kc; p++ {
				clear(dst[p*w+n : p*w+w])
			}
		}
		return
	}
	for p := 0; p < kc; p++ {
		d := dst[p*w : p*w+w]
		copy(d, src[(r0+p)*ld+c0:(r0+p)*ld+c0+n])
		clear(d[n:])
	}
}

// gemmPackLanesFromCols sets dst[p·w + i] = src[(r0+i)·ld + c0 + p] for p < kc, i < n and zero
// for n ≤ i < w: a transpose, reading n source rows side by side, four at a time.
func gemmPackLanesFromCols(dst []float32, w int, src []float32, ld, r0, n, c0, kc int, asm bool) {
	dst = dst[:kc*w]
	i := 0
	if asm {
		var cols int
		i, cols = gemmPackColsAsm(dst, w, src, ld, r0, n, c0, kc)
		for r := 0; r < i && cols < kc; r++ { // columns past the last multiple of 8
			s := src[(r0+r)*ld+c0+cols : (r0+r)*ld+c0+kc]
			for p, v := range s {
				dst[(cols+p)*w+r] = v
			}
		}
	}
	for ; i+4 <= n; i += 4 {
		s0 := src[(r0+i)*ld+c0 : (r0+i)*ld+c0+kc]
		s1 := src[(r0+i+1)*ld+c0 : (r0+i+1)*ld+c0+kc]
		s2 := src[(r0+i+2)*ld+c0 : (r0+i+2)*ld+c0+kc]
		s3 := src[(r0+i+3)*ld+c0 : (r0+i+3)*ld+c0+kc]
		for p := range s0 {
			o := p*w + i
			d := dst[o : o+4 : o+4]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
		}
	}
	for ; i < n; i++ {
		s := src[(r0+i)*ld+c0 : (r0+i)*ld+c0+kc]
		for p, v := range s {
			dst[p*w+i] = v
		}
	}
	if n < w {
		for p := 0; p < kc; p++ {
			clear(dst[p*w+n : p*w+w])
		}
	}
}
