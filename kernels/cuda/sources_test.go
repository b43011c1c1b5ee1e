package cuda

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestKernelNames: every kernel name the Go code launches exists in kernels/cuda/src, and
// every kernel there is launched (or named by a test).
func TestKernelNames(t *testing.T) {
	files, header, err := Sources()
	require.NoError(t, err)
	require.NotEmpty(t, header)
	require.GreaterOrEqual(t, len(files), 8)
	idx, err := KernelIndex(files)
	require.NoError(t, err)

	used := map[string]bool{}
	goFiles, err := filepath.Glob("*.go")
	require.NoError(t, err)
	if len(goFiles) == 0 {
		t.Skip("Go sources not present (a prebuilt test binary run outside kernels/cuda)")
	}
	// A kernel name followed by + sfx(…) stands for both activation variants, _f32 and _bf16.
	re := regexp.MustCompile(`"(gm_[a-z0-9_]+)"(\s*\+\s*sfx\()?`)
	for _, f := range goFiles {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if m[2] != "" {
				used[m[1]+sfx(tensor.F32)] = true
				used[m[1]+sfx(tensor.BF16)] = true
			} else {
				used[m[1]] = true
			}
		}
	}
	for name := range used {
		if name == "gm_no_such_kernel" { // the error path of TestFakeDevice
			continue
		}
		_, ok := idx[name]
		require.Truef(t, ok, "Go code names kernel %s, which no .cu defines", name)
	}
	var unused []string
	for name := range idx {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	require.Empty(t, unused, "kernels no Go code launches")

	_, err = KernelIndex(map[string]string{"a.cu": "GM_KERNEL k(int x)", "b.cu": "GM_KERNEL k (float y)"})
	require.ErrorContains(t, err, "kernel k defined in both")
}

func TestCacheNames(t *testing.T) {
	opts := nvrtcOptions("sm_90a")
	require.Equal(t, "--gpu-architecture=sm_90a", opts[0])
	k := cacheKey("src", "hdr", opts, "13.0")
	require.Len(t, k, 16)
	require.NotEqual(t, k, cacheKey("src", "hdr", opts, "13.1"), "NVRTC version is part of the key")
	require.NotEqual(t, k, cacheKey("src", "hdr", nvrtcOptions("sm_80"), "13.0"), "arch is part of the key")
	require.NotEqual(t, k, cacheKey("src", "hdr2", opts, "13.0"), "the header is part of the key")
	require.NotEqual(t, cacheKey("ab", "c", opts, "v"), cacheKey("a", "bc", opts, "v"), "fields are length-prefixed")
	require.Equal(t, filepath.Join("/c", "norm-sm_90a-nvrtc13.0-"+k+".cubin"), cubinFile("/c", "norm.cu", "sm_90a", "13.0", k))
	require.Equal(t, "sm_90a", Arch(90))
	require.Equal(t, "sm_80", Arch(80))
	require.Equal(t, "sm_89", Arch(89))

	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "x.cubin")
	require.NoError(t, writeAtomic(p, []byte("cubin")))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "cubin", string(b))
	left, _ := filepath.Glob(filepath.Join(dir, "sub", ".tmp-*"))
	require.Empty(t, left)
}

// colMajorGemm is cuBLAS's column-major D = α·op(A)·op(B) + β·C for a matmulSpec, on
// float64 slices (element (r, c) of a column-major matrix with leading dim ld is at c·ld + r).
func colMajorGemm(s matmulSpec, alpha, beta float64, a, b, c []float64) []float64 {
	d := append([]float64(nil), c...)
	for bi := range s.batch {
		for i := range s.m {
			for j := range s.n {
				var sum float64
				for k := range s.k {
					var av, bv float64
					if s.transA { // op(A) = Aᵀ: A stored k×m
						av = a[int(s.strideA)*bi+i*s.lda+k]
					} else {
						av = a[int(s.strideA)*bi+k*s.lda+i]
					}
					if s.transB {
						bv = b[int(s.strideB)*bi+k*s.ldb+j]
					} else {
						bv = b[int(s.strideB)*bi+j*s.ldb+k]
					}
					sum += av * bv
				}
				ci := int(s.strideC)*bi + j*s.ldc + i
				d[ci] = alpha*sum + beta*c[ci]
			}
		}
	}
	return d
}

// rowMajorGemm is kernels.GemmParams' definition.
func rowMajorGemm(p kernels.GemmParams, a, b, c []float64) []float64 {
	out := append([]float64(nil), c...)
	for bi := range max(p.Batch, 1) {
		for i := range p.M {
			for j := range p.N {
				var s float64
				for k := range p.K {
					var av, bv float64
					if p.TransA {
						av = a[bi*p.StrideA+k*p.LDA+i]
					} else {
						av = a[bi*p.StrideA+i*p.LDA+k]
					}
					if p.TransB {
						bv = b[bi*p.StrideB+j*p.LDB+k]
					} else {
						bv = b[bi*p.StrideB+k*p.LDB+j]
					}
					s += av * bv
				}
				ci := bi*p.StrideC + i*p.LDC + j
				out[ci] = float64(p.Alpha)*s + float64(p.Beta)*c[ci]
			}
		}
	}
	return out
}

// TestRowMajorSpec checks the row-major → column-major operand swap on the CPU: cuBLAS's
// column-major product with the mapped spec and swapped operands equals the row-major
// definition, for every transpose combination, padded leading dims and batches.
func TestRowMajorSpec(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, batch := range []int{1, 3} {
				m, n, k := 5, 7, 4
				p := kernels.GemmParams{TransA: ta, TransB: tb, M: m, N: n, K: k, Alpha: 0.5, Beta: -2, Batch: batch}
				ar, ac := m, k
				if ta {
					ar, ac = k, m
				}
				br, bc := k, n
				if tb {
					br, bc = n, k
				}
				p.LDA, p.LDB, p.LDC = ac+1, bc+2, n+3
				p.StrideA, p.StrideB, p.StrideC = ar*p.LDA+5, br*p.LDB, m*p.LDC+1
				rnd := func(nn int) []float64 {
					v := make([]float64, nn)
					for i := range v {
						v[i] = r.NormFloat64()
					}
					return v
				}
				a, b, c := rnd(batch*p.StrideA), rnd(batch*p.StrideB), rnd(batch*p.StrideC)
				want := rowMajorGemm(p, a, b, c)
				s, err := rowMajorSpec(p, rF32, rF32, rF32, rF32)
				require.NoError(t, err)
				got := colMajorGemm(s, float64(p.Alpha), float64(p.Beta), b, a, c) // cuBLAS's A is our B
				require.InDeltaSlicef(t, want, got, 1e-12, "ta=%v tb=%v batch=%d", ta, tb, batch)
			}
		}
	}
	// Packed leading dims default to the stored row length.
	s, err := rowMajorSpec(kernels.GemmParams{TransA: true, M: 3, N: 4, K: 5}, rF32, rF32, rF32, rF32)
	require.NoError(t, err)
	require.Equal(t, []int{4, 3, 4}, []int{s.lda, s.ldb, s.ldc}, "B [5,4] ld 4, Aᵀ stored [5,3] ld 3")
}

func TestGeomStruct(t *testing.T) {
	g := geomStruct(attnGeom{b: 1, h: 2, g: 3, s: 4, t: 5, d: 6}, kernels.AttnParams{Scale: 0.5, Causal: true, SlidingWindow: 7, QOffset: -1, ALiBiBeforeScale: true})
	require.Len(t, g, 80)
	require.Equal(t, []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0,
		0, 0, 0, 0x3f, 1, 0, 0, 0, 7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0}, []byte(g[:44]))
	// No dropout: threshold 0, scale 0, heads = H, first head 0, padding, seed 0, offset 0.
	require.Equal(t, append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0}, make([]byte, 4+4+16)...), []byte(g[44:]))
	d := geomStruct(attnGeom{h: 2}, kernels.AttnParams{DropoutP: 0.5, DropoutSeed: 0x0102, DropoutOffset: 7, DropoutHeads: 8, DropoutHead0: 4})
	require.Equal(t, []byte{0, 0, 0, 0x4b, 0, 0, 0, 0x40, 8, 0, 0, 0, 4, 0, 0, 0}, []byte(d[44:60]), "p·2²⁴ = 2²³, 1/(1−p) = 2")
	require.Equal(t, []byte{2, 1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, []byte(d[64:]))
}
