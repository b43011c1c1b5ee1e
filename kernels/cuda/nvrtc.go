package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// nvrtcAPI binds NVRTC, the run-time CUDA C++ compiler.
type nvrtcAPI struct {
	lib *dl.Lib

	nvrtcVersion, nvrtcGetErrorString, nvrtcCreateProgram, nvrtcCompileProgram   dl.Func
	nvrtcGetProgramLogSize, nvrtcGetProgramLog, nvrtcGetCUBINSize, nvrtcGetCUBIN dl.Func
	nvrtcDestroyProgram                                                          dl.Func

	major, minor int
}

func (n *nvrtcAPI) symbols() []sym {
	return []sym{
		{"nvrtcVersion", &n.nvrtcVersion}, {"nvrtcGetErrorString", &n.nvrtcGetErrorString},
		{"nvrtcCreateProgram", &n.nvrtcCreateProgram}, {"nvrtcCompileProgram", &n.nvrtcCompileProgram},
		{"nvrtcGetProgramLogSize", &n.nvrtcGetProgramLogSize}, {"nvrtcGetProgramLog", &n.nvrtcGetProgramLog},
		{"nvrtcGetCUBINSize", &n.nvrtcGetCUBINSize}, {"nvrtcGetCUBIN", &n.nvrtcGetCUBIN},
		{"nvrtcDestroyProgram", &n.nvrtcDestroyProgram},
	}
}

// NVRTCSymbols lists the exported names the NVRTC binding needs.
func NVRTCSymbols() []string { return names((&nvrtcAPI{}).symbols()) }

// loadNVRTC opens libnvrtc (13, then 12). libnvrtc dlopens libnvrtc-builtins.so.<ver> by
// soname at compile time; a copy beside it is preloaded RTLD_GLOBAL so a wheel folder that
// is not on LD_LIBRARY_PATH still works.
func loadNVRTC(s dl.Search) (*nvrtcAPI, error) {
	lib, err := s.OpenFirst("nvrtcCreateProgram", false, "libnvrtc.so.13", "libnvrtc.so.12")
	if err != nil {
		return nil, err
	}
	n := &nvrtcAPI{lib: lib}
	if err := bind(lib, n.symbols()); err != nil {
		return nil, fmt.Errorf("NVRTC: %w", err)
	}
	if err := n.check("nvrtcVersion", n.nvrtcVersion.Status(addr(&n.major), addr(&n.minor)), ""); err != nil {
		return nil, err
	}
	n.major, n.minor = int(int32(n.major)), int(int32(n.minor))
	if dir := filepath.Dir(lib.File(n.nvrtcVersion)); dir != "." {
		builtins, _ := filepath.Glob(filepath.Join(dir, "libnvrtc-builtins.so.*"))
		for _, b := range builtins {
			if _, err := dl.Open(b, true); err == nil {
				break
			}
		}
	}
	return n, nil
}

func (n *nvrtcAPI) check(fn string, code int, detail string) error {
	if code == 0 {
		return nil
	}
	name := fmt.Sprintf("nvrtcResult(%d)", code)
	if n.nvrtcGetErrorString != 0 {
		if s := dl.GoString(n.nvrtcGetErrorString.Call(uintptr(code))); s != "" {
			name = s
		}
	}
	return &Error{Lib: "nvrtc", Func: fn, Detail: detail, Code: code, Name: name}
}

// Version is NVRTC's "major.minor".
func (n *nvrtcAPI) Version() string { return fmt.Sprintf("%d.%d", n.major, n.minor) }

// compile compiles one CUDA C++ source to a CUBIN for arch (e.g. "sm_90a"). headers maps
// include names to their text (our sources are header-free apart from common.cuh).
// The program log is returned with the error on failure.
func (n *nvrtcAPI) compile(name, src string, headers map[string]string, opts []string) ([]byte, error) {
	var keep []unsafe.Pointer // C strings, freed at the end
	cstr := func(s string) uintptr {
		b := append([]byte(s), 0)
		p := unsafe.Pointer(&b[0])
		keep = append(keep, p)
		return uintptr(p)
	}
	var hdrSrc, hdrName []uintptr
	for k, v := range headers {
		hdrName = append(hdrName, cstr(k))
		hdrSrc = append(hdrSrc, cstr(v))
	}
	ptrs := dl.SliceAddr[uintptr]
	var prog uintptr
	code := n.nvrtcCreateProgram.Status(addr(&prog), cstr(src), cstr(name), uintptr(len(hdrSrc)), ptrs(hdrSrc), ptrs(hdrName))
	if err := n.check("nvrtcCreateProgram", code, name); err != nil {
		return nil, err
	}
	defer n.nvrtcDestroyProgram.Status(addr(&prog))
	var optp []uintptr
	for _, o := range opts {
		optp = append(optp, cstr(o))
	}
	cerr := n.check("nvrtcCompileProgram", n.nvrtcCompileProgram.Status(prog, uintptr(len(optp)), ptrs(optp)), name+" "+strings.Join(opts, " "))
	var logSize uintptr
	var log string
	if n.nvrtcGetProgramLogSize.Status(prog, addr(&logSize)) == 0 && logSize > 1 {
		buf := make([]byte, logSize)
		if n.nvrtcGetProgramLog.Status(prog, bytesAddr(buf)) == 0 {
			log = strings.TrimRight(string(buf), "\x00\n ")
		}
	}
	if cerr != nil {
		return nil, fmt.Errorf("%w\n%s", cerr, log)
	}
	var size uintptr
	if err := n.check("nvrtcGetCUBINSize", n.nvrtcGetCUBINSize.Status(prog, addr(&size)), name); err != nil {
		return nil, err
	}
	cubin := make([]byte, size)
	if err := n.check("nvrtcGetCUBIN", n.nvrtcGetCUBIN.Status(prog, bytesAddr(cubin)), name); err != nil {
		return nil, err
	}
	runKeepAlive(keep, hdrSrc, hdrName, optp)
	if log != "" && os.Getenv("GOMEGATRON_NVRTC_LOG") != "" {
		fmt.Fprintf(os.Stderr, "nvrtc %s:\n%s\n", name, log)
	}
	return cubin, nil
}
