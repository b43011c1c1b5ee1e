package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gemmCase is one Sgemm call: shapes, transposes, scalars and the extra row padding of
// each stored matrix (ld = row length + pad).
type gemmCase struct {
	transA, transB   bool
	m, n, k          int
	alpha, beta      float32
	padA, padB, padC int
}

func (tc gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s/m%dn%dk%d/a%g_b%g/pad%d.%d.%d", t(tc.transA), t(tc.transB), tc.m, tc.n, tc.k,
		tc.alpha, tc.beta, tc.padA, tc.padB, tc.padC)
}

// gemmOperands holds random stored A, B and C (C with NaN padding between rows, so a
// write outside the m×n window or a read of the padding shows up).
type gemmOperands struct {
	a, b, c       []float32
	lda, ldb, ldc int
}

func newGemmOperands(rng *rand.Rand, tc gemmCase) gemmOperands {
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	o := gemmOperands{lda: ac + tc.padA, ldb: bc + tc.padB, ldc: tc.n + tc.padC}
	fill := func(rows, cols, ld int, pad float32) []float32 {
		x := make([]float32, max(0, rows*ld))
		for i := range x {
			if i%ld < cols {
				x[i] = float32(rng.NormFloat64())
			} else {
				x[i] = pad
			}
		}
		return x
	}
	o.a = fill(ar, ac, o.lda, float32(math.NaN()))
	o.b = fill(br, bc, o.ldb, float32(math.NaN()))
	o.c = fill(tc.m, tc.n, o.ldc, float32(math.NaN()))
	return o
}

// sgemmRef64 is the reference loop in float64; it also returns, per element, the bound
// Σ_p |alpha·op(A)[i,p]·op(B)[p,j]| + |beta·C[i,j]| that scales the fp32 rounding error.
func sgemmRef64(tc gemmCase, o gemmOperands) (ref, mag []float64) {
	ref = make([]float64, tc.m*tc.n)
	mag = make([]float64, tc.m*tc.n)
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var s, sa float64
			for p := 0; p < tc.k; p++ {
				var av, bv float32
				if tc.transA {
					av = o.a[p*o.lda+i]
				} else {
					av = o.a[i*o.lda+p]
				}
				if tc.transB {
					bv = o.b[j*o.ldb+p]
				} else {
					bv = o.b[p*o.ldb+j]
				}
				s += float64(av) * float64(bv)
				sa += math.Abs(float64(av) * float64(bv))
			}
			r := float64(tc.alpha) * s
			m := math.Abs(float64(tc.alpha)) * sa
			if tc.beta != 0 {
				cv := float64(o.c[i*o.ldc+j])
				r += float64(tc.beta) * cv
				m += math.Abs(float64(tc.beta) * cv)
			}
			ref[i*tc.n+j], mag[i*tc.n+j] = r, m
		}
	}
	return ref, mag
}

// checkGemm runs tc through kern with threads and compares with the float64 reference:
// |C − ref| ≤ 2·(√k + 2)·eps32·mag per element (a random-walk bound on fp32 summation
// error, with slack for the alpha and beta roundings), and the C padding stays NaN.
func checkGemm(t *testing.T, kern *gemmKernel, threads int, tc gemmCase, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(tc.m*1000003+tc.n*1009+tc.k)))
	o := newGemmOperands(rng, tc)
	ref, mag := sgemmRef64(tc, o)
	sgemmWith(kern, threads, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, o.a, o.lda, o.b, o.ldb, tc.beta, o.c, o.ldc)
	const eps32 = 1.0 / (1 << 23)
	tol := 2 * (math.Sqrt(float64(tc.k)) + 2) * eps32
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < o.ldc; j++ {
			got := o.c[i*o.ldc+j]
			if j >= tc.n {
				if !math.IsNaN(float64(got)) && bad < 5 {
					bad++
					t.Errorf("%s %v: C padding [%d,%d] overwritten with %g", kern.name, tc, i, j, got)
				}
				continue
			}
			want, m := ref[i*tc.n+j], mag[i*tc.n+j]
			if d := math.Abs(float64(got) - want); !(d <= tol*m+1e-30) && bad < 5 {
				bad++
				t.Errorf("%s %v: C[%d,%d] = %g, want %g (|diff| %.3g > tol %.3g)", kern.name, tc, i, j, got, want, d, tol*m)
			}
		}
	}
}

var gemmTransposes = [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}}

// gemmSmallBlocks returns kern with tiny cache blocks, so small matrices already cross every
// mc/kc/nc boundary (several jc and pc blocks, beta applied only at pc = 0, edge tiles).
func gemmSmallBlocks(kern *gemmKernel) *gemmKernel {
	k := *kern
	k.name += "-smallblocks"
	k.mc, k.kc, k.nc = 2*k.mr, 7, 2*k.nr
	return &k
}

// TestSgemmOddShapes checks every kernel (the portable one included), with production and
// tiny blocks, against the float64 reference for all four transposes on random shapes with
// m, n, k in 1..67, random alpha/beta, and padded strides.
func TestSgemmOddShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	scalars := [][2]float32{{1, 0}, {1, 1}, {-0.5, 2}, {2, 0}, {0.25, -1}}
	for _, base := range gemmKernels() {
		for _, kern := range []*gemmKernel{base, gemmSmallBlocks(base)} {
			t.Run(kern.name, func(t *testing.T) {
				for i := 0; i < 60; i++ {
					tr := gemmTransposes[i%4]
					s := scalars[rng.IntN(len(scalars))]
					tc := gemmCase{transA: tr[0], transB: tr[1],
						m: 1 + rng.IntN(67), n: 1 + rng.IntN(67), k: 1 + rng.IntN(67),
						alpha: s[0], beta: s[1], padA: rng.IntN(3), padB: rng.IntN(3), padC: rng.IntN(3)}
					checkGemm(t, kern, 1+i%3, tc, uint64(i))
				}
			})
		}
	}
}

// TestSgemmBlockEdges checks shapes one below, at and one above each kernel's register and
// cache block sizes (mr, nr, mc, kc, nc), which is where packing and tiling go wrong.
func TestSgemmBlockEdges(t *testing.T) {
	for _, kern := range gemmKernels() {
		t.Run(kern.name, func(t *testing.T) {
			var cases []gemmCase
			for _, tr := range gemmTransposes {
				for _, d := range []int{-1, 0, 1} {
					add := func(m, n, k int) {
						cases = append(cases, gemmCase{transA: tr[0], transB: tr[1], m: m, n: n, k: k,
							alpha: 1.5, beta: -0.75, padA: 1, padB: 0, padC: 2})
					}
					add(kern.mr+d, kern.nr+d, 5)
					add(2*kern.mr+d, 3*kern.nr+d, 3)
					add(kern.mc+d, 2*kern.nr+1, 9)
					add(kern.mr+1, kern.nr+1, kern.kc+d)
					add(3, kern.nc+d, 4)
				}
			}
			add2 := gemmCase{m: 2*kern.mc + 5, n: 70, k: 2*kern.kc + 3, alpha: 1, beta: 0}
			cases = append(cases, add2)
			for i, tc := range cases {
				checkGemm(t, kern, 2, tc, uint64(i))
			}
		})
	}
}

// TestSgemmScalars covers the special cases of the contract: k = 0 (C = beta·C), alpha =
// 0 (A and B are not read), beta = 0 overwriting NaN, and empty m or n.
func TestSgemmScalars(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name        string
		m, n, k     int
		alpha, beta float32
		a, b, c     []float32
		want        []float32
	}{
		{"k=0 scales C", 2, 2, 0, 1, 3, nil, nil, []float32{1, 2, 3, 4}, []float32{3, 6, 9, 12}},
		{"k=0 beta=0 clears NaN", 1, 2, 0, 1, 0, nil, nil, []float32{nan, 5}, []float32{0, 0}},
		{"alpha=0 ignores NaN in A", 1, 1, 2, 0, 2, []float32{nan, 1}, []float32{1, 1}, []float32{4}, []float32{8}},
		{"beta=0 overwrites NaN", 1, 2, 1, 2, 0, []float32{3}, []float32{1, -1}, []float32{nan, nan}, []float32{6, -6}},
		{"beta=1 accumulates", 1, 1, 2, 1, 1, []float32{1, 2}, []float32{3, 4}, []float32{10}, []float32{21}},
		{"m=0", 0, 3, 2, 1, 0, nil, make([]float32, 6), nil, nil},
		{"n=0", 2, 0, 2, 1, 0, make([]float32, 4), nil, nil, nil},
	}
	for _, tt := range tests {
		for _, kern := range gemmKernels() {
			t.Run(tt.name+"/"+kern.name, func(t *testing.T) {
				c := append([]float32(nil), tt.c...)
				lda, ldb, ldc := max(1, tt.k), max(1, tt.n), max(1, tt.n)
				sgemmWith(kern, 2, false, false, tt.m, tt.n, tt.k, tt.alpha, tt.a, lda, tt.b, ldb, tt.beta, c, ldc)
				assert.Equal(t, tt.want, c)
			})
		}
	}
}

// TestSgemmPanicsNameArgument checks that inconsistent strides and short slices panic with
// a message naming the argument at fault.
func TestSgemmPanicsNameArgument(t *testing.T) {
	buf := make([]float32, 64)
	tests := []struct {
		name string
		call func()
		want string
	}{
		{"negative m", func() { Sgemm(false, false, -1, 2, 2, 1, buf, 2, buf, 2, 0, buf, 2) }, "negative dimension"},
		{"lda too small", func() { Sgemm(false, false, 2, 2, 3, 1, buf, 2, buf, 2, 0, buf, 2) }, "lda=2 < 3"},
		{"ldb too small transB", func() { Sgemm(false, true, 2, 2, 3, 1, buf, 3, buf, 2, 0, buf, 2) }, "ldb=2 < 3"},
		{"ldc too small", func() { Sgemm(false, false, 2, 4, 2, 1, buf, 2, buf, 4, 0, buf, 3) }, "ldc=3 < 4"},
		{"short a", func() { Sgemm(false, false, 4, 2, 2, 1, buf[:7], 2, buf, 2, 0, buf, 2) }, "len(a)=7 < 8"},
		{"short b transB", func() { Sgemm(false, true, 2, 4, 3, 1, buf, 3, buf[:11], 3, 0, buf, 4) }, "len(b)=11 < 12"},
		{"short c", func() { Sgemm(false, false, 2, 2, 2, 1, buf, 2, buf, 2, 0, buf[:3], 2) }, "len(c)=3 < 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r, "no panic")
				assert.Contains(t, fmt.Sprint(r), tt.want)
			}()
			tt.call()
		})
	}
}

// TestSgemmThreadCountInvariant checks that the result is bitwise the same for 1, 2 and 3
// threads: the summation order depends only on the block sizes (DESIGN: determinism).
func TestSgemmThreadCountInvariant(t *testing.T) {
	for _, kern := range []*gemmKernel{gemmDefaultKernel, gemmSmallBlocks(gemmDefaultKernel)} {
		for _, tr := range gemmTransposes {
			tc := gemmCase{transA: tr[0], transB: tr[1], m: 150, n: 170, k: 300, alpha: 1, beta: 0.5}
			o := newGemmOperands(rand.New(rand.NewPCG(3, 4)), tc)
			var first []float32
			for threads := 1; threads <= 3; threads++ {
				c := append([]float32(nil), o.c...)
				sgemmWith(kern, threads, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, o.a, o.lda, o.b, o.ldb, tc.beta, c, o.ldc)
				if first == nil {
					first = c
					continue
				}
				require.Equal(t, first, c, "%s %v: threads=%d differs from threads=1", kern.name, tc, threads)
			}
		}
	}
}

// TestSgemmConcurrentCalls runs Sgemm from several goroutines at once (sharing the worker
// pool and pooled buffers) and checks each result bitwise against a serial run.
func TestSgemmConcurrentCalls(t *testing.T) {
	SetGemmThreads(2)
	defer SetGemmThreads(0)
	const calls = 8
	type job struct {
		tc   gemmCase
		o    gemmOperands
		want []float32
	}
	jobs := make([]job, calls)
	for i := range jobs {
		tr := gemmTransposes[i%4]
		tc := gemmCase{transA: tr[0], transB: tr[1], m: 40 + 7*i, n: 50 + 3*i, k: 60 + 5*i, alpha: 1, beta: 0}
		o := newGemmOperands(rand.New(rand.NewPCG(uint64(i), 9)), tc)
		want := append([]float32(nil), o.c...)
		sgemmWith(gemmDefaultKernel, 1, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, o.a, o.lda, o.b, o.ldb, tc.beta, want, o.ldc)
		jobs[i] = job{tc, o, want}
	}
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func(j *job) {
			defer wg.Done()
			for r := 0; r < 5; r++ {
				c := append([]float32(nil), j.o.c...)
				Sgemm(j.tc.transA, j.tc.transB, j.tc.m, j.tc.n, j.tc.k, j.tc.alpha, j.o.a, j.o.lda, j.o.b, j.o.ldb, j.tc.beta, c, j.o.ldc)
				assert.Equal(t, j.want, c, "%v round %d", j.tc, r)
			}
		}(&jobs[i])
	}
	wg.Wait()
}

// TestSgemmDoesNotAllocate checks that a warm Sgemm call allocates nothing (buffers and
// workers are pooled), single- and multi-threaded.
func TestSgemmDoesNotAllocate(t *testing.T) {
	if gemmRaceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	a, b, c := gemmBenchOperands(96, 80, 70)
	for _, threads := range []int{1, 2} {
		SetGemmThreads(threads)
		Sgemm(false, true, 96, 80, 70, 1, a, 70, b, 70, 0, c, 80)
		allocs := testing.AllocsPerRun(20, func() {
			Sgemm(false, true, 96, 80, 70, 1, a, 70, b, 70, 0, c, 80)
		})
		assert.Zero(t, allocs, "threads=%d", threads)
	}
	SetGemmThreads(0)
}

// TestGemmPackers checks both packing routines, with and without the AVX paths, against
// their definitions for every lane count n ≤ w, panel widths of all kernels, and depths
// around the 8-column transpose step; padding lanes must come out zero.
func TestGemmPackers(t *testing.T) {
	const ld, rows, cols = 83, 40, 75
	src := make([]float32, rows*ld)
	for i := range src {
		src[i] = float32(i + 1)
	}
	for _, asm := range []bool{false, true} {
		for _, w := range []int{4, 6, 12, 16, 32} {
			for n := 1; n <= w; n++ {
				for _, kc := range []int{1, 7, 8, 9, 16, 23, 35} {
					dst := make([]float32, kc*w)
					for i := range dst {
						dst[i] = -1
					}
					// rows r0.. of src become lanes: dst[p·w+i] = src[(r0+i)·ld + c0+p]
					r0, c0 := 3, 5
					gemmPackLanesFromCols(dst, w, src, ld, r0, n, c0, kc, asm)
					for p := 0; p < kc; p++ {
						for i := 0; i < w; i++ {
							want := float32(0)
							if i < n {
								want = src[(r0+i)*ld+c0+p]
							}
							if dst[p*w+i] != want {
								t.Fatalf("FromCols asm=%v w=%d n=%d kc=%d: dst[%d·w+%d] = %g, want %g", asm, w, n, kc, p, i, dst[p*w+i], want)
							}
						}
					}
					// rows r0+p of src are copied: dst[p·w+i] = src[(r0+p)·ld + c0+i]
					for i := range dst {
						dst[i] = -1
					}
					gemmPackLanesFromRows(dst, w, src, ld, r0, kc, c0, n, asm)
					for p := 0; p < kc; p++ {
						for i := 0; i < w; i++ {
							want := float32(0)
							if i < n {
								want = src[(r0+p)*ld+c0+i]
							}
							if dst[p*w+i] != want {
								t.Fatalf("FromRows asm=%v w=%d n=%d kc=%d: dst[%d·w+%d] = %g, want %g", asm, w, n, kc, p, i, dst[p*w+i], want)
							}
						}
					}
				}
			}
		}
	}
}
