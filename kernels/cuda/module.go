package cuda

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"unsafe"
)

// The kernel sources, compiled at run time by NVRTC for the device's architecture.
//
//go:embed src/*.cu src/*.cuh
var sources embed.FS

// commonHeader is the prelude every .cu includes; NVRTC receives it as an in-memory header.
const commonHeader = "common.cuh"

var kernelRE = regexp.MustCompile(`GM_KERNEL(?:\s+|_B\(\s*)(\w+)\s*[(,]`)

// Sources returns every kernel source file (name → text) and the header.
func Sources() (files map[string]string, header string, err error) {
	files = map[string]string{}
	err = fs.WalkDir(sources, "src", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := sources.ReadFile(p)
		if err != nil {
			return err
		}
		if path.Base(p) == commonHeader {
			header = string(b)
		} else if path.Ext(p) == ".cu" {
			files[path.Base(p)] = string(b)
		}
		return nil
	})
	return files, header, err
}

// KernelIndex maps each kernel (extern "C" name) to its source file. Duplicate names are
// an error.
func KernelIndex(files map[string]string) (map[string]string, error) {
	idx := map[string]string{}
	for f, src := range files {
		for _, m := range kernelRE.FindAllStringSubmatch(src, -1) {
			if prev, ok := idx[m[1]]; ok {
				return nil, fmt.Errorf("kernel %s defined in both %s and %s", m[1], prev, f)
			}
			idx[m[1]] = f
		}
	}
	return idx, nil
}

// Arch is NVRTC's real architecture for compute capability cc: the "a" variant on sm_90
// (wgmma, setmaxnreg), sm_XY otherwise.
func Arch(cc int) string {
	if cc == 90 {
		return "sm_90a"
	}
	return fmt.Sprintf("sm_%d", cc)
}

// nvrtcOptions are the compile options for arch (part of the cache key).
func nvrtcOptions(arch string) []string {
	return []string{"--gpu-architecture=" + arch, "-std=c++17", "--device-as-default-execution-space"}
}

// cacheKey hashes everything that determines a CUBIN: source, header, options, NVRTC version.
func cacheKey(src, header string, opts []string, nvrtcVer string) string {
	h := sha256.New()
	for _, s := range append([]string{src, header, nvrtcVer}, opts...) {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// CacheDir is where CUBINs are kept: GOMEGATRON_CUBIN_CACHE, else
// os.UserCacheDir()/gomegatron/cubin.
func CacheDir() (string, error) {
	if d := os.Getenv("GOMEGATRON_CUBIN_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for CUBINs (set GOMEGATRON_CUBIN_CACHE): %w", err)
	}
	return filepath.Join(d, "gomegatron", "cubin"), nil
}

// cubinFile names a cached CUBIN by (file, arch, NVRTC version, source hash).
func cubinFile(dir, file, arch, nvrtcVer, key string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s-nvrtc%s-%s.cubin", file[:len(file)-len(path.Ext(file))], arch, nvrtcVer, key))
}

// writeAtomic writes b to p through a temporary file, fsync and rename.
func writeAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), p)
}

// compileAll returns a CUBIN for every source file, from the cache or by compiling (in
// parallel: NVRTC needs no context). Cache write failures are not fatal.
func compileAll(n *nvrtcAPI, arch, cacheDir string) (map[string][]byte, error) {
	files, header, err := Sources()
	if err != nil {
		return nil, err
	}
	opts := nvrtcOptions(arch)
	ver := n.Version()
	out := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for f, src := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := cubinFile(cacheDir, f, arch, ver, cacheKey(src, header, opts, ver))
			b, err := os.ReadFile(p)
			if err != nil {
				b, err = n.compile(f, src, map[string]string{commonHeader: header}, opts)
				if err == nil {
					_ = writeAtomic(p, b)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("kernels/cuda/src/%s for %s: %w", f, arch, err))
				return
			}
			out[f] = b
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// modules are the loaded CUBINs of a device and the kernels looked up in them.
type modules struct {
	byFile map[string]uintptr
	funcs  map[string]uintptr
	index  map[string]string
}

// loadModules compiles (or reads from the cache) and loads every kernel source; on the
// device thread.
func (d *Device) loadModules(cacheDir string) error {
	files, _, err := Sources()
	if err != nil {
		return err
	}
	idx, err := KernelIndex(files)
	if err != nil {
		return err
	}
	cubins, err := compileAll(d.libs.nvrtc, Arch(d.CC), cacheDir)
	if err != nil {
		return err
	}
	m := &modules{byFile: map[string]uintptr{}, funcs: map[string]uintptr{}, index: idx}
	d.modules = m
	names := make([]string, 0, len(cubins))
	for f := range cubins {
		names = append(names, f)
	}
	sort.Strings(names)
	drv := d.drv()
	for _, f := range names {
		var h uintptr
		b := cubins[f]
		if err := drv.check("cuModuleLoadData", drv.cuModuleLoadData.Status(addr(&h), bytesAddr(b)), "%s (%d bytes CUBIN)", f, len(b)); err != nil {
			return err
		}
		runKeepAlive(b)
		m.byFile[f] = h
	}
	return nil
}

func (m *modules) unload(drv *driverAPI) {
	for _, h := range m.byFile {
		drv.cuModuleUnload.Status(h)
	}
	m.byFile = nil
}

// function returns the CUfunction of a kernel (device thread).
func (d *Device) function(name string) (uintptr, error) {
	m := d.modules
	if m == nil {
		return 0, errors.New("cuda: kernels not loaded")
	}
	if f, ok := m.funcs[name]; ok {
		return f, nil
	}
	file, ok := m.index[name]
	if !ok {
		return 0, fmt.Errorf("cuda: no kernel %s in kernels/cuda/src", name)
	}
	cname := append([]byte(name), 0)
	var f uintptr
	if err := d.drv().check("cuModuleGetFunction", d.drv().cuModuleGetFunction.Status(addr(&f), m.byFile[file], bytesAddr(cname)), "%s in %s", name, file); err != nil {
		return 0, err
	}
	m.funcs[name] = f
	return f, nil
}

// launchArgs is the reused argument block of kernel launches: each argument gets its own
// 8-byte-aligned slot in buf and params[i] points at it (cuLaunchKernel's void**).
type launchArgs struct {
	buf    [128]uint64
	params [32]uintptr
}

// Struct is a kernel argument passed by value as raw bytes (a C struct).
type Struct []byte

// launch runs kernel on the device stream with a 1-D grid and block (device thread).
// Arguments must have the exact C types: uintptr (pointers), int32, int64, uint32,
// uint64, float32, or Struct.
func (d *Device) launch(kernel string, grid, block, smem int, args ...any) error {
	f, err := d.function(kernel)
	if err != nil {
		return err
	}
	if grid <= 0 {
		return nil
	}
	la := &d.args
	slot := 0
	for i, a := range args {
		if i >= len(la.params) || slot >= len(la.buf) {
			return fmt.Errorf("cuda: %s: too many arguments", kernel)
		}
		p := unsafe.Pointer(&la.buf[slot])
		switch v := a.(type) {
		case uintptr:
			*(*uintptr)(p) = v
		case int32:
			*(*int32)(p) = v
		case int64:
			*(*int64)(p) = v
		case uint32:
			*(*uint32)(p) = v
		case uint64:
			*(*uint64)(p) = v
		case float32:
			*(*float32)(p) = v
		case Struct:
			words := (len(v) + 7) / 8
			if slot+words > len(la.buf) {
				return fmt.Errorf("cuda: %s: arguments too large", kernel)
			}
			copy(unsafe.Slice((*byte)(p), words*8), v)
			slot += words - 1
		default:
			panic(fmt.Sprintf("cuda: %s: argument %d has unsupported type %T", kernel, i, a))
		}
		la.params[i] = uintptr(p)
		slot++
	}
	launch := func() error {
		code := d.drv().cuLaunchKernel.Status(f, uintptr(grid), 1, 1, uintptr(block), 1, 1, uintptr(smem), d.stream, uintptr(unsafe.Pointer(&la.params[0])), 0)
		return d.drv().check("cuLaunchKernel", code, "%s grid %d block %d", kernel, grid, block)
	}
	if d.prof != nil {
		return d.prof.time(kernel, launch)
	}
	return launch()
}
