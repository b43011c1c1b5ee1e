package cuda

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Libraries are the CUDA libraries of a process, loaded once: the driver (initialised),
// NVRTC and cuBLASLt.
type Libraries struct {
	drv   *driverAPI
	nvrtc *nvrtcAPI
	lt    *cublasLtAPI

	DriverVersion int // e.g. 13000 for CUDA 13.0
	Devices       int // visible GPUs
}

// Describe is a one-line summary: driver version, device count and the library files.
func (l *Libraries) Describe() string {
	return fmt.Sprintf("CUDA driver %d.%d (%s), %d device(s), NVRTC %s (%s), cuBLASLt %d (%s)",
		l.DriverVersion/1000, l.DriverVersion%1000/10, l.drv.lib.File(l.drv.cuInit), l.Devices,
		l.nvrtc.Version(), l.nvrtc.lib.File(l.nvrtc.nvrtcVersion), l.lt.version, l.lt.lib.File(l.lt.cublasLtCreate))
}

// Load opens and initialises the libraries found by s. The error says which step failed:
// no driver library, cuInit's CUresult name (CUDA_ERROR_NO_DEVICE, …), no device, or a
// missing NVRTC/cuBLASLt with every place searched.
func Load(s dl.Search) (*Libraries, error) {
	drv, err := loadDriver(s)
	if err != nil {
		return nil, err
	}
	l := &Libraries{drv: drv}
	if err := drv.check("cuInit", drv.cuInit.Status(0), ""); err != nil {
		return nil, err
	}
	var v, n int32
	if err := drv.check("cuDriverGetVersion", drv.cuDriverGetVersion.Status(addr(&v)), ""); err != nil {
		return nil, err
	}
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount.Status(addr(&n)), ""); err != nil {
		return nil, err
	}
	l.DriverVersion, l.Devices = int(v), int(n)
	if n < 1 {
		return nil, fmt.Errorf("CUDA driver %d loaded but reports no device", v)
	}
	if l.nvrtc, err = loadNVRTC(s); err != nil {
		return nil, err
	}
	if l.lt, err = loadCublasLt(s); err != nil {
		return nil, err
	}
	return l, nil
}

// Probe reports whether the CUDA backend can run with the libraries s finds, and why not.
// It never panics: a machine without a driver or GPU gets false and the reason.
func Probe(s dl.Search) (ok bool, reason string) {
	l, err := Load(s)
	if err != nil {
		return false, oneLine(err.Error())
	}
	return true, l.Describe()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// loadFromEnv loads the process's libraries once, from the environment's search order
// (dl.SearchFromEnv). It is the package's one lazily built value: the driver can be
// initialised only once per process.
var loadFromEnv = sync.OnceValues(func() (*Libraries, error) {
	return Load(dl.SearchFromEnv(os.Getenv))
})

// Available reports whether this process can use CUDA (driver, a GPU, NVRTC and
// cuBLASLt), and either a description of what was found or why not. Tests that need a GPU
// skip with the reason.
func Available() (bool, string) {
	l, err := loadFromEnv()
	if err != nil {
		return false, oneLine(err.Error())
	}
	return true, l.Describe()
}

// LoadFromEnv returns the process's libraries (see Available).
func LoadFromEnv() (*Libraries, error) { return loadFromEnv() }

// LibDirs are the folders holding the CUDA and NCCL libraries this process would load
// before the system loader (GOMEGATRON_CUDA_LIB_DIRS, pip wheel folders). golaunch exports
// them to workers: GOMEGATRON_CUDA_LIB_DIRS=strings.Join(dirs, ":") and the same folders in
// front of LD_LIBRARY_PATH.
func LibDirs() []string { return dl.LibDirsFromEnv() }
