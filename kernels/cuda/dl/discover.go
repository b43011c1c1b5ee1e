package dl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvLibDirs names the colon-separated folders searched first for CUDA and NCCL libraries.
// golaunch sets it for workers to the folders it found (see LibDirs).
const EnvLibDirs = "GOMEGATRON_CUDA_LIB_DIRS"

// EnvDriver is an explicit path to libcuda.so.1 (tests, unusual driver installs); without it
// the driver comes from the system loader only, as NVIDIA's cuda.pathfinder does.
const EnvDriver = "GOMEGATRON_LIBCUDA"

// WheelSubdirs are the library folders of NVIDIA's pip wheels below a site-packages folder:
// CUDA 13's combined wheel, then the CUDA 12 per-component wheels, then NCCL.
var WheelSubdirs = []string{
	"nvidia/cu13/lib",
	"nvidia/cuda_runtime/lib",
	"nvidia/cuda_nvrtc/lib",
	"nvidia/cublas/lib",
	"nvidia/nccl/lib",
}

// Env reads an environment variable; os.Getenv in production, a map in tests.
type Env func(string) string

// Search describes where libraries are looked for. Zero fields are filled from the
// environment by SearchFromEnv.
type Search struct {
	Dirs     []string // folders tried before the system loader (override, then wheels)
	CUDAHome string   // CUDA_HOME or CUDA_PATH: lib64 is tried after the system loader
	Driver   string   // explicit libcuda path (EnvDriver), else the system loader
}

// SearchFromEnv builds the search order: EnvLibDirs, then every wheel folder that exists
// under the site-packages folders of SitePackages, then (in Candidates) the system loader
// and CUDA_HOME/lib64.
func SearchFromEnv(env Env) Search {
	var dirs []string
	for _, d := range filepath.SplitList(env(EnvLibDirs)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, sp := range SitePackages(env) {
		for _, sub := range WheelSubdirs {
			d := filepath.Join(sp, sub)
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	home := env("CUDA_HOME")
	if home == "" {
		home = env("CUDA_PATH")
	}
	return Search{Dirs: dedup(dirs), CUDAHome: home, Driver: env(EnvDriver)}
}

// SitePackages lists the Python package folders a `sys.path` would hold, without running
// Python: PYTHONPATH entries, $VIRTUAL_ENV/lib/python3*/site-packages, the
// lib/python3*/site-packages beside every PATH folder holding a python3 (an activated or
// installed virtualenv, e.g. /opt/torch/.venv/bin), the user's
// ~/.local/lib/python3*/site-packages, /usr/local/lib/python3*/{site,dist}-packages and
// /usr/lib/python3*/dist-packages (pip's and Debian's folders). Only existing folders are
// returned, each once, in that order.
func SitePackages(env Env) []string {
	var out []string
	for _, d := range filepath.SplitList(env("PYTHONPATH")) {
		if d != "" {
			out = append(out, d)
		}
	}
	globs := []string{}
	if v := env("VIRTUAL_ENV"); v != "" {
		globs = append(globs, filepath.Join(v, "lib/python3*/site-packages"))
	}
	for _, d := range filepath.SplitList(env("PATH")) {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "python3")); err == nil {
			globs = append(globs, filepath.Join(d, "..", "lib/python3*/site-packages"))
		}
	}
	if h := env("HOME"); h != "" {
		globs = append(globs, filepath.Join(h, ".local/lib/python3*/site-packages"))
	}
	globs = append(globs,
		"/usr/local/lib/python3*/site-packages",
		"/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3*/dist-packages",
		"/usr/lib/python3/dist-packages",
	)
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		sort.Sort(sort.Reverse(sort.StringSlice(m))) // newest python3.N first
		out = append(out, m...)
	}
	var ok []string
	for _, d := range dedup(out) {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			ok = append(ok, d)
		}
	}
	return ok
}

func dedup(v []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range v {
		c := filepath.Clean(s)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// Candidates returns the paths to try for a library known by sonames (newest first, e.g.
// libnvrtc.so.13 then libnvrtc.so.12): every existing file <dir>/<soname> in s.Dirs, then
// each bare soname (the system loader: LD_LIBRARY_PATH, ld.so.cache), then
// CUDA_HOME/lib64/<soname> when it exists.
func (s Search) Candidates(sonames ...string) []string {
	var out []string
	for _, d := range s.Dirs {
		for _, so := range sonames {
			p := filepath.Join(d, so)
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	out = append(out, sonames...)
	if s.CUDAHome != "" {
		for _, so := range sonames {
			p := filepath.Join(s.CUDAHome, "lib64", so)
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// OpenFirst opens the first candidate of sonames that dlopens and exports probe (a symbol
// that proves it is the right library). The error lists every attempt.
func (s Search) OpenFirst(probe string, global bool, sonames ...string) (*Lib, error) {
	var errs []error
	for _, c := range s.Candidates(sonames...) {
		l, err := Open(c, global)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := l.Sym(probe); err != nil {
			errs = append(errs, err)
			_ = l.Close()
			continue
		}
		return l, nil
	}
	return nil, fmt.Errorf("%s not found (searched %s, the system loader%s): %w",
		sonames[0], describeDirs(s.Dirs), cudaHomeNote(s.CUDAHome), errors.Join(errs...))
}

// OpenDriver opens libcuda.so.1: s.Driver when set, else through the system loader only
// (the driver library must match the kernel module, so wheel or toolkit copies are never
// used).
func (s Search) OpenDriver() (*Lib, error) {
	name := "libcuda.so.1"
	if s.Driver != "" {
		name = s.Driver
	}
	l, err := Open(name, false)
	if err != nil {
		return nil, fmt.Errorf("CUDA driver: %w", err)
	}
	if _, err := l.Sym("cuInit"); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("CUDA driver: %w", err)
	}
	return l, nil
}

func describeDirs(d []string) string {
	if len(d) == 0 {
		return "no wheel or " + EnvLibDirs + " folders"
	}
	return strings.Join(d, ", ")
}

func cudaHomeNote(h string) string {
	if h == "" {
		return ""
	}
	return ", " + filepath.Join(h, "lib64")
}

// Libraries are the sonames gomegatron loads besides the driver, newest major first.
var Libraries = [][]string{
	{"libnvrtc.so.13", "libnvrtc.so.12"},
	{"libcublasLt.so.13", "libcublasLt.so.12"},
	{"libnccl.so.2"},
}

// LibDirs returns the folders of s.Dirs that hold at least one of Libraries (no dlopen: a
// stat per file), in search order. The launcher passes them to workers, joined with ':',
// in EnvLibDirs and in front of LD_LIBRARY_PATH (NVRTC loads libnvrtc-builtins by soname,
// NCCL its plugins), so every worker loads the same copies the launcher saw.
func (s Search) LibDirs() []string {
	var out []string
	for _, d := range s.Dirs {
		found := false
		for _, sos := range Libraries {
			for _, so := range sos {
				if _, err := os.Stat(filepath.Join(d, so)); err == nil {
					found = true
				}
			}
		}
		if found {
			out = append(out, d)
		}
	}
	return out
}

// LibDirsFromEnv is SearchFromEnv(os.Getenv).LibDirs(): what golaunch exports.
func LibDirsFromEnv() []string { return SearchFromEnv(os.Getenv).LibDirs() }
