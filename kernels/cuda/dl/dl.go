//go:build cgo

// Package dl loads shared libraries at run time (dlopen/dlsym) and calls their C functions
// through a fixed set of cgo trampolines, so the CUDA driver, NVRTC, cuBLASLt and NCCL are
// bound with our own declarations and no vendor header or library is needed to build.
//
// Every bound function takes integer or pointer arguments (int, unsigned, size_t, handles,
// pointers) and returns an integer status or a pointer. On the 64-bit Linux ABIs (x86-64
// SysV, AArch64 AAPCS64) such arguments travel as 64-bit integer registers or 8-byte stack
// slots, so one trampoline per argument count, taking uint64 words and returning one word,
// calls all of them; a callee that takes a 32-bit int reads the low half of its word. The
// only exception in our symbol list, ncclCommInitRank's 128-byte ncclUniqueId passed by
// value, has its own trampoline (CallUniqueID).
//
// Go memory handed to C through these words must stay reachable for the call (use
// runtime.KeepAlive after the call for heap buffers); the Go heap does not move, and a
// goroutine's stack is not moved while it is inside a cgo call.
package dl

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t W;

// gm_dlopen opens path and returns the handle, or NULL with dlerror's text copied into err
// (one C call, so dlerror is read on the thread that failed).
static void* gm_dlopen(const char* path, int global, char* err, size_t n) {
	void* h = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
	if (!h) {
		const char* e = dlerror();
		strncpy(err, e ? e : "unknown dlopen error", n - 1);
		err[n - 1] = 0;
	}
	return h;
}

static void* gm_dlsym(void* h, const char* name) { dlerror(); return dlsym(h, name); }

// gm_dlpath returns the file a handle was loaded from (via one of its symbols).
static int gm_dlpath(W sym, char* out, size_t n) {
	Dl_info info;
	if (!dladdr((void*)sym, &info) || !info.dli_fname) return 0;
	strncpy(out, info.dli_fname, n - 1);
	out[n - 1] = 0;
	return 1;
}

static int gm_dlclose(void* h) { return dlclose(h); }

#define F(n) typedef W (*f##n)
F(0)(void);
F(1)(W);
F(2)(W, W);
F(3)(W, W, W);
F(4)(W, W, W, W);
F(5)(W, W, W, W, W);
F(6)(W, W, W, W, W, W);
F(7)(W, W, W, W, W, W, W);
F(8)(W, W, W, W, W, W, W, W);
F(9)(W, W, W, W, W, W, W, W, W);
F(10)(W, W, W, W, W, W, W, W, W, W);
F(11)(W, W, W, W, W, W, W, W, W, W, W);
F(12)(W, W, W, W, W, W, W, W, W, W, W, W);
F(16)(W, W, W, W, W, W, W, W, W, W, W, W, W, W, W, W);

static W gm_call(W fw, int n, W* a) {
	void* f = (void*)fw;
	switch (n) {
	case 0: return ((f0)f)();
	case 1: return ((f1)f)(a[0]);
	case 2: return ((f2)f)(a[0], a[1]);
	case 3: return ((f3)f)(a[0], a[1], a[2]);
	case 4: return ((f4)f)(a[0], a[1], a[2], a[3]);
	case 5: return ((f5)f)(a[0], a[1], a[2], a[3], a[4]);
	case 6: return ((f6)f)(a[0], a[1], a[2], a[3], a[4], a[5]);
	case 7: return ((f7)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
	case 8: return ((f8)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
	case 9: return ((f9)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
	case 10: return ((f10)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
	case 11: return ((f11)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
	case 12: return ((f12)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
	default: return ((f16)f)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
	}
}

// The 128-byte ncclUniqueId is passed by value (in memory, per the ABI): declare it so.
typedef struct { char internal[128]; } gm_uid;
typedef W (*fuid)(W, W, gm_uid, W);
static W gm_call_uid(W f, W a0, W a1, const void* id, W a3) {
	gm_uid u;
	memcpy(&u, id, sizeof u);
	return ((fuid)f)(a0, a1, u, a3);
}

static const char* gm_cstr(W p) { return (const char*)p; }
static void* gm_ptr(W p) { return (void*)p; }
*/
import "C"

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Supported reports whether libraries can be loaded (built with cgo).
const Supported = true

// Lib is an opened shared library.
type Lib struct {
	h    unsafe.Pointer
	Path string // the path or soname it was opened by
}

// Func is the address of a C function in a Lib.
type Func uintptr

// Open dlopens path (a file path or a soname searched by the system loader) with RTLD_NOW;
// global makes its symbols visible to libraries loaded later (NVRTC's builtins library).
func Open(path string, global bool) (*Lib, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var buf [512]C.char
	g := C.int(0)
	if global {
		g = 1
	}
	h := C.gm_dlopen(cp, g, &buf[0], C.size_t(len(buf)))
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(&buf[0]))
	}
	return &Lib{h: h, Path: path}, nil
}

// Sym returns the address of the exported symbol name.
func (l *Lib) Sym(name string) (Func, error) {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	p := C.gm_dlsym(l.h, cn)
	if p == nil {
		return 0, fmt.Errorf("%s: symbol %s not found", l.Path, name)
	}
	return Func(uintptr(p)), nil
}

// File returns the file the library was actually loaded from (resolving sonames), or Path
// when the loader cannot say. sym is any symbol the library exports.
func (l *Lib) File(sym Func) string {
	var buf [4096]C.char
	if sym != 0 && C.gm_dlpath(C.W(sym), &buf[0], C.size_t(len(buf))) != 0 {
		return C.GoString(&buf[0])
	}
	return l.Path
}

// Close dlcloses the library. Functions obtained from it must not be called afterwards.
func (l *Lib) Close() error {
	if C.gm_dlclose(l.h) != 0 {
		return fmt.Errorf("dlclose %s failed", l.Path)
	}
	return nil
}

// Addr is p as a call word for Call. It also moves *p to the heap: a variable whose address
// only ever becomes a uintptr may live on its goroutine's stack, and a stack moves when it
// grows, which can happen between taking the address and the C call (in Call's own
// frames); C would then write the old copy and the caller read zeros. Heap objects do not
// move. Keep the pointee alive until Call returns.
func Addr[T any](p *T) uintptr {
	atomic.StorePointer(&escapeSink, unsafe.Pointer(p)) // makes p escape: *p is heap-allocated
	return uintptr(unsafe.Pointer(p))
}

// SliceAddr is the address of s's first element as a call word (0 for an empty slice), its
// backing array moved to the heap as Addr does.
func SliceAddr[T any](s []T) uintptr {
	if len(s) == 0 {
		return 0
	}
	return Addr(&s[0])
}

var escapeSink unsafe.Pointer

// MaxArgs is the largest argument count Call supports (cublasLtMatmul takes 16).
const MaxArgs = 16

// Call calls f with the given argument words and returns its result word. Pass pointers as
// Addr(p) or SliceAddr(s), and keep the pointee alive until Call returns.
func (f Func) Call(args ...uintptr) uintptr {
	if f == 0 {
		panic("dl: call of a nil function")
	}
	if len(args) > MaxArgs {
		panic(fmt.Sprintf("dl: %d arguments, at most %d", len(args), MaxArgs))
	}
	var a [MaxArgs]C.W
	for i, v := range args {
		a[i] = C.W(v)
	}
	n := len(args)
	if n > 12 {
		n = 16 // extra zero words are ignored by a callee taking 13..15
	}
	return uintptr(C.gm_call(C.W(f), C.int(n), &a[0]))
}

// Status calls f and returns the low 32 bits of its result as a signed status code (CUresult,
// nvrtcResult, cublasStatus_t, ncclResult_t are all C enums, i.e. int).
func (f Func) Status(args ...uintptr) int {
	return int(int32(uint32(f.Call(args...))))
}

// CallUniqueID calls f(a0, a1, id, a3) with id, 128 bytes, passed by value: the shape of
// ncclCommInitRank(ncclComm_t*, int nranks, ncclUniqueId, int rank).
func (f Func) CallUniqueID(a0, a1 uintptr, id *[128]byte, a3 uintptr) int {
	r := C.gm_call_uid(C.W(f), C.W(a0), C.W(a1), unsafe.Pointer(&id[0]), C.W(a3))
	return int(int32(uint32(r)))
}

// GoString copies the NUL-terminated C string at p (0 gives "").
func GoString(p uintptr) string {
	if p == 0 {
		return ""
	}
	return C.GoString(C.gm_cstr(C.W(p)))
}

// Bytes views n bytes of C memory at p (pinned host buffers from cuMemAllocHost) as a Go
// slice without copying. The memory must stay allocated while the slice is used.
func Bytes(p uintptr, n int) []byte {
	if p == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(C.gm_ptr(C.W(p))), n)
}
