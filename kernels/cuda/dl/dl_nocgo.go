//go:build !cgo

package dl

import "errors"

// errNoCgo is returned when gomegatron was built without cgo: the dynamic loader is
// reached through cgo, so CUDA and NCCL are unavailable (build with CGO_ENABLED=1).
var errNoCgo = errors.New("dl: built without cgo (CGO_ENABLED=0): cannot load CUDA or NCCL libraries")

// Supported reports whether libraries can be loaded (built with cgo).
const Supported = false

// Lib is an opened shared library (never, without cgo).
type Lib struct{ Path string }

// Func is the address of a C function.
type Func uintptr

// Open always fails without cgo.
func Open(path string, global bool) (*Lib, error) { return nil, errNoCgo }

func (l *Lib) Sym(name string) (Func, error) { return 0, errNoCgo }
func (l *Lib) File(sym Func) string          { return l.Path }
func (l *Lib) Close() error                  { return nil }

// MaxArgs is the largest argument count Call supports.
const MaxArgs = 16

func (f Func) Call(args ...uintptr) uintptr { panic(errNoCgo) }
func (f Func) Status(args ...uintptr) int   { panic(errNoCgo) }
func (f Func) CallUniqueID(a0, a1 uintptr, id *[128]byte, a3 uintptr) int {
	panic(errNoCgo)
}
func GoString(p uintptr) string { return "" }
func Bytes(p uintptr, n int) []byte {
	panic(errNoCgo)
}
