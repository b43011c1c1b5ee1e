package cuda

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// driverAPI holds the CUDA driver entry points we use, bound by their exported (versioned)
// names: cuda.h maps cuMemAlloc to cuMemAlloc_v2 and so on, and dlsym sees only the
// versioned symbol. Handles (CUcontext, CUstream, CUevent, CUmodule, CUfunction) and
// CUdeviceptr are all one machine word.
type driverAPI struct {
	lib *dl.Lib

	cuInit, cuDriverGetVersion, cuGetErrorName, cuGetErrorString              dl.Func
	cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute      dl.Func
	cuDeviceTotalMem, cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease     dl.Func
	cuCtxSetCurrent, cuCtxSynchronize, cuMemGetInfo                           dl.Func
	cuMemAlloc, cuMemFree, cuMemAllocHost, cuMemFreeHost                      dl.Func
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync                   dl.Func
	cuMemsetD8Async, cuMemsetD32Async                                         dl.Func
	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize, cuStreamWaitEvent   dl.Func
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventQuery            dl.Func
	cuEventElapsedTime, cuEventDestroy                                        dl.Func
	cuModuleLoadData, cuModuleGetFunction, cuModuleUnload, cuFuncSetAttribute dl.Func
	cuLaunchKernel                                                            dl.Func
}

// driverSymbols maps each field to its exported symbol (the spec's minimal list).
func (d *driverAPI) symbols() []sym {
	return []sym{
		{"cuInit", &d.cuInit}, {"cuDriverGetVersion", &d.cuDriverGetVersion},
		{"cuGetErrorName", &d.cuGetErrorName}, {"cuGetErrorString", &d.cuGetErrorString},
		{"cuDeviceGetCount", &d.cuDeviceGetCount}, {"cuDeviceGet", &d.cuDeviceGet},
		{"cuDeviceGetName", &d.cuDeviceGetName}, {"cuDeviceGetAttribute", &d.cuDeviceGetAttribute},
		{"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem}, {"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain},
		{"cuDevicePrimaryCtxRelease_v2", &d.cuDevicePrimaryCtxRelease}, {"cuCtxSetCurrent", &d.cuCtxSetCurrent},
		{"cuCtxSynchronize", &d.cuCtxSynchronize}, {"cuMemGetInfo_v2", &d.cuMemGetInfo},
		{"cuMemAlloc_v2", &d.cuMemAlloc}, {"cuMemFree_v2", &d.cuMemFree},
		{"cuMemAllocHost_v2", &d.cuMemAllocHost}, {"cuMemFreeHost", &d.cuMemFreeHost},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync}, {"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync},
		{"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync}, {"cuMemsetD8Async", &d.cuMemsetD8Async},
		{"cuMemsetD32Async", &d.cuMemsetD32Async}, {"cuStreamCreate", &d.cuStreamCreate},
		{"cuStreamDestroy_v2", &d.cuStreamDestroy}, {"cuStreamSynchronize", &d.cuStreamSynchronize},
		{"cuStreamWaitEvent", &d.cuStreamWaitEvent}, {"cuEventCreate", &d.cuEventCreate},
		{"cuEventRecord", &d.cuEventRecord}, {"cuEventSynchronize", &d.cuEventSynchronize},
		{"cuEventQuery", &d.cuEventQuery}, {"cuEventElapsedTime", &d.cuEventElapsedTime},
		{"cuEventDestroy_v2", &d.cuEventDestroy}, {"cuModuleLoadData", &d.cuModuleLoadData},
		{"cuModuleGetFunction", &d.cuModuleGetFunction}, {"cuModuleUnload", &d.cuModuleUnload},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute}, {"cuLaunchKernel", &d.cuLaunchKernel},
	}
}

// DriverSymbols lists the exported names the driver binding needs (fake libraries in tests
// export exactly these).
func DriverSymbols() []string { return names((&driverAPI{}).symbols()) }

type sym struct {
	name string
	f    *dl.Func
}

func names(s []sym) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.name
	}
	return out
}

// bind resolves every symbol of s in lib, naming all missing ones in the error.
func bind(lib *dl.Lib, s []sym) error {
	var missing []string
	for _, x := range s {
		f, err := lib.Sym(x.name)
		if err != nil {
			missing = append(missing, x.name)
			continue
		}
		*x.f = f
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks %v (too old a version?)", lib.Path, missing)
	}
	return nil
}

func loadDriver(s dl.Search) (*driverAPI, error) {
	lib, err := s.OpenDriver()
	if err != nil {
		return nil, err
	}
	d := &driverAPI{lib: lib}
	if err := bind(lib, d.symbols()); err != nil {
		return nil, fmt.Errorf("CUDA driver: %w", err)
	}
	return d, nil
}

// CUdevice_attribute values (cuda.h).
const (
	attrMaxSharedPerBlockOptin = 97
	attrSMCount                = 16
	attrCCMajor                = 75
	attrCCMinor                = 76
)

// addr is the address of a Go variable as a call word (the variable must stay live across
// the call, which using it afterwards ensures).
func addr[T any](p *T) uintptr { return dl.Addr(p) }

// bytesAddr is the address of b's first byte (0 for an empty slice).
func bytesAddr(b []byte) uintptr { return dl.SliceAddr(b) }
