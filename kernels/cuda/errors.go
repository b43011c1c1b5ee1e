package cuda

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Error is a failed CUDA driver, NVRTC or cuBLASLt call: the function, what it was doing,
// the numeric status and its name (cuGetErrorName's CUDA_ERROR_OUT_OF_MEMORY, nvrtc's or
// cuBLASLt's status names).
type Error struct {
	Lib    string // "cuda", "nvrtc", "cublasLt"
	Func   string // the C function, e.g. cuMemAlloc_v2
	Detail string // what was being done (sizes, kernel names)
	Code   int
	Name   string // CUDA_ERROR_NO_DEVICE, NVRTC_ERROR_COMPILATION, CUBLAS_STATUS_NOT_SUPPORTED
	Desc   string // the library's description, when it has one
}

func (e *Error) Error() string {
	s := e.Func
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	s += fmt.Sprintf(": %s (%d)", e.Name, e.Code)
	if e.Desc != "" && e.Desc != e.Name {
		s += ": " + e.Desc
	}
	return s
}

// CUresult values we name ourselves when cuGetErrorName is unavailable or fails.
const (
	cudaSuccess       = 0
	cudaErrNotReady   = 600
	cudaErrNoDevice   = 100
	cudaErrNotInit    = 3
	cudaErrOOM        = 2
	cudaErrNoBinary   = 209
	cudaErrInvalidPTX = 218
)

// errorName asks the driver for the CUresult's name and description.
func (d *driverAPI) errorName(code int) (name, desc string) {
	if d != nil && d.cuGetErrorName != 0 {
		var p uintptr
		if d.cuGetErrorName.Status(uintptr(code), addr(&p)) == 0 {
			name = dl.GoString(p)
		}
		if d.cuGetErrorString != 0 && d.cuGetErrorString.Status(uintptr(code), addr(&p)) == 0 {
			desc = dl.GoString(p)
		}
	}
	if name == "" {
		name = fmt.Sprintf("CUresult(%d)", code)
	}
	return name, desc
}

// check turns a CUresult into nil or an *Error naming the function and its detail.
func (d *driverAPI) check(fn string, code int, detail string, args ...any) error {
	if code == cudaSuccess {
		return nil
	}
	name, desc := d.errorName(code)
	if len(args) > 0 {
		detail = fmt.Sprintf(detail, args...)
	}
	return &Error{Lib: "cuda", Func: fn, Detail: detail, Code: code, Name: name, Desc: desc}
}

// cublasStatusNames are cublasStatus_t's names (cublas_api.h values).
var cublasStatusNames = map[int]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

func cublasCheck(fn string, code int, detail string) error {
	if code == 0 {
		return nil
	}
	name, ok := cublasStatusNames[code]
	if !ok {
		name = fmt.Sprintf("cublasStatus(%d)", code)
	}
	return &Error{Lib: "cublasLt", Func: fn, Detail: detail, Code: code, Name: name}
}
