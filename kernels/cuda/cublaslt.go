package cuda

import (
	"fmt"
	"unsafe"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// cublasLtAPI binds cuBLASLt's matmul API (the constants are cublasLt.h's, as listed in the
// spec from Triton's header-free declarations).
type cublasLtAPI struct {
	lib *dl.Lib

	cublasLtCreate, cublasLtDestroy, cublasLtGetVersion                                       dl.Func
	cublasLtMatmulDescCreate, cublasLtMatmulDescSetAttribute, cublasLtMatmulDescDestroy       dl.Func
	cublasLtMatrixLayoutCreate, cublasLtMatrixLayoutSetAttribute, cublasLtMatrixLayoutDestroy dl.Func
	cublasLtMatmulPreferenceCreate, cublasLtMatmulPreferenceSetAttribute                      dl.Func
	cublasLtMatmulPreferenceDestroy, cublasLtMatmulAlgoGetHeuristic, cublasLtMatmul           dl.Func
	version                                                                                   int
}

func (c *cublasLtAPI) symbols() []sym {
	return []sym{
		{"cublasLtCreate", &c.cublasLtCreate}, {"cublasLtDestroy", &c.cublasLtDestroy},
		{"cublasLtGetVersion", &c.cublasLtGetVersion},
		{"cublasLtMatmulDescCreate", &c.cublasLtMatmulDescCreate},
		{"cublasLtMatmulDescSetAttribute", &c.cublasLtMatmulDescSetAttribute},
		{"cublasLtMatmulDescDestroy", &c.cublasLtMatmulDescDestroy},
		{"cublasLtMatrixLayoutCreate", &c.cublasLtMatrixLayoutCreate},
		{"cublasLtMatrixLayoutSetAttribute", &c.cublasLtMatrixLayoutSetAttribute},
		{"cublasLtMatrixLayoutDestroy", &c.cublasLtMatrixLayoutDestroy},
		{"cublasLtMatmulPreferenceCreate", &c.cublasLtMatmulPreferenceCreate},
		{"cublasLtMatmulPreferenceSetAttribute", &c.cublasLtMatmulPreferenceSetAttribute},
		{"cublasLtMatmulPreferenceDestroy", &c.cublasLtMatmulPreferenceDestroy},
		{"cublasLtMatmulAlgoGetHeuristic", &c.cublasLtMatmulAlgoGetHeuristic},
		{"cublasLtMatmul", &c.cublasLtMatmul},
	}
}

// CublasLtSymbols lists the exported names the cuBLASLt binding needs.
func CublasLtSymbols() []string { return names((&cublasLtAPI{}).symbols()) }

func loadCublasLt(s dl.Search) (*cublasLtAPI, error) {
	lib, err := s.OpenFirst("cublasLtMatmul", false, "libcublasLt.so.13", "libcublasLt.so.12")
	if err != nil {
		return nil, err
	}
	c := &cublasLtAPI{lib: lib}
	if err := bind(lib, c.symbols()); err != nil {
		return nil, fmt.Errorf("cuBLASLt: %w", err)
	}
	c.version = int(c.cublasLtGetVersion.Call())
	return c, nil
}

// cuBLASLt and CUDA enum values (cublasLt.h, library_types.h).
const (
	opN = 0
	opT = 1

	computeF32     = 68 // CUBLAS_COMPUTE_32F
	computeF32TF32 = 77 // CUBLAS_COMPUTE_32F_FAST_TF32

	rF32  = 0  // CUDA_R_32F
	rF16  = 2  // CUDA_R_16F
	rBF16 = 14 // CUDA_R_16BF
	rE4M3 = 28 // CUDA_R_8F_E4M3
	rE5M2 = 29 // CUDA_R_8F_E5M2

	descTransA      = 3
	descTransB      = 4
	descAScale      = 17
	descBScale      = 18
	descCScale      = 19
	descDScale      = 20
	descAmaxD       = 21
	descFastAccum   = 25
	layoutBatch     = 5
	layoutBatchStr  = 6
	prefMaxWorkspac = 1

	heuristicResultBytes = 96 // cublasLtMatmulHeuristicResult_t: algo[64], size_t, int, float, int[4]
)

// matmulSpec is one cuBLASLt matmul in column-major terms: D(m×n) = α·op(A)·op(B) + β·C.
type matmulSpec struct {
	transA, transB bool
	m, n, k        int
	aType, bType   int
	cType, dType   int
	lda, ldb, ldc  int
	ldd            int
	batch          int
	strideA        int64
	strideB        int64
	strideC        int64
	strideD        int64
	compute        int
	// FP8 extras: device pointers to float32 scales and the amax output (0 when unused).
	aScale, bScale, dScale, amaxD uintptr
	fastAccum                     bool
}

// plan is a prepared matmul: descriptors and the chosen algorithm, cached by spec.
type plan struct {
	desc, a, b, c, d uintptr
	algo             [64]byte
	wsNeeded         uintptr
}

func (l *cublasLtAPI) setDesc(desc uintptr, attr int, v unsafe.Pointer, size uintptr) error {
	return cublasCheck("cublasLtMatmulDescSetAttribute", l.cublasLtMatmulDescSetAttribute.Status(desc, uintptr(attr), uintptr(v), size), fmt.Sprint("attribute ", attr))
}

func (l *cublasLtAPI) layout(dt, rows, cols, ld, batch int, stride int64) (uintptr, error) {
	var h uintptr
	if err := cublasCheck("cublasLtMatrixLayoutCreate", l.cublasLtMatrixLayoutCreate.Status(addr(&h), uintptr(dt), uintptr(rows), uintptr(cols), uintptr(int64(ld))), fmt.Sprintf("%d×%d ld %d", rows, cols, ld)); err != nil {
		return 0, err
	}
	if batch > 1 {
		b32 := int32(batch)
		if err := cublasCheck("cublasLtMatrixLayoutSetAttribute", l.cublasLtMatrixLayoutSetAttribute.Status(h, layoutBatch, addr(&b32), 4), "batch count"); err != nil {
			return 0, err
		}
		if err := cublasCheck("cublasLtMatrixLayoutSetAttribute", l.cublasLtMatrixLayoutSetAttribute.Status(h, layoutBatchStr, addr(&stride), 8), "batch stride"); err != nil {
			return 0, err
		}
	}
	return h, nil
}

// newPlan creates the descriptors for s and asks the heuristic for the best algorithm that
// fits a workspace of wsBytes.
func (l *cublasLtAPI) newPlan(h uintptr, s matmulSpec, wsBytes uintptr) (*plan, error) {
	p := &plan{}
	if err := cublasCheck("cublasLtMatmulDescCreate", l.cublasLtMatmulDescCreate.Status(addr(&p.desc), uintptr(s.compute), rF32), ""); err != nil {
		return nil, err
	}
	ta, tb := int32(opN), int32(opN)
	if s.transA {
		ta = opT
	}
	if s.transB {
		tb = opT
	}
	if err := l.setDesc(p.desc, descTransA, unsafe.Pointer(&ta), 4); err != nil {
		return nil, err
	}
	if err := l.setDesc(p.desc, descTransB, unsafe.Pointer(&tb), 4); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		attr int
		ptr  uintptr
	}{{descAScale, s.aScale}, {descBScale, s.bScale}, {descDScale, s.dScale}, {descAmaxD, s.amaxD}} {
		if a.ptr != 0 {
			v := a.ptr
			if err := l.setDesc(p.desc, a.attr, unsafe.Pointer(&v), 8); err != nil {
				return nil, err
			}
		}
	}
	if s.fastAccum {
		one := int8(1)
		if err := l.setDesc(p.desc, descFastAccum, unsafe.Pointer(&one), 1); err != nil {
			return nil, err
		}
	}
	ar, ac := s.m, s.k
	if s.transA {
		ar, ac = s.k, s.m
	}
	br, bc := s.k, s.n
	if s.transB {
		br, bc = s.n, s.k
	}
	var err error
	if p.a, err = l.layout(s.aType, ar, ac, s.lda, s.batch, s.strideA); err != nil {
		return nil, err
	}
	if p.b, err = l.layout(s.bType, br, bc, s.ldb, s.batch, s.strideB); err != nil {
		return nil, err
	}
	if p.c, err = l.layout(s.cType, s.m, s.n, s.ldc, s.batch, s.strideC); err != nil {
		return nil, err
	}
	if p.d, err = l.layout(s.dType, s.m, s.n, s.ldd, s.batch, s.strideD); err != nil {
		return nil, err
	}
	var pref uintptr
	if err := cublasCheck("cublasLtMatmulPreferenceCreate", l.cublasLtMatmulPreferenceCreate.Status(addr(&pref)), ""); err != nil {
		return nil, err
	}
	defer l.cublasLtMatmulPreferenceDestroy.Status(pref)
	ws := uint64(wsBytes)
	if err := cublasCheck("cublasLtMatmulPreferenceSetAttribute", l.cublasLtMatmulPreferenceSetAttribute.Status(pref, prefMaxWorkspac, addr(&ws), 8), "max workspace"); err != nil {
		return nil, err
	}
	var res [heuristicResultBytes]byte
	var nret int32
	code := l.cublasLtMatmulAlgoGetHeuristic.Status(h, p.desc, p.a, p.b, p.c, p.d, pref, 1, bytesAddr(res[:]), addr(&nret))
	if err := cublasCheck("cublasLtMatmulAlgoGetHeuristic", code, s.String()); err != nil {
		return nil, err
	}
	if nret < 1 {
		return nil, &Error{Lib: "cublasLt", Func: "cublasLtMatmulAlgoGetHeuristic", Detail: s.String(), Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED", Desc: "no algorithm for this matmul"}
	}
	copy(p.algo[:], res[:64])
	p.wsNeeded = uintptr(*(*uint64)(unsafe.Pointer(&res[64])))
	return p, nil
}

func (s matmulSpec) String() string {
	return fmt.Sprintf("m %d n %d k %d transA %v transB %v types A %d B %d C %d D %d compute %d batch %d",
		s.m, s.n, s.k, s.transA, s.transB, s.aType, s.bType, s.cType, s.dType, s.compute, s.batch)
}

// run launches the planned matmul on stream with host float32 α and β.
func (l *cublasLtAPI) run(h uintptr, p *plan, alpha, beta float32, a, b, c, d, ws, wsBytes, stream uintptr) error {
	code := l.cublasLtMatmul.Status(h, p.desc, addr(&alpha), a, p.a, b, p.b, addr(&beta), c, p.c, d, p.d,
		bytesAddr(p.algo[:]), ws, wsBytes, stream)
	runKeepAlive(&alpha, &beta, p)
	return cublasCheck("cublasLtMatmul", code, "")
}

func (l *cublasLtAPI) destroyPlan(p *plan) {
	l.cublasLtMatmulDescDestroy.Status(p.desc)
	for _, x := range []uintptr{p.a, p.b, p.c, p.d} {
		l.cublasLtMatrixLayoutDestroy.Status(x)
	}
}
