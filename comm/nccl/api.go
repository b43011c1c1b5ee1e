// Package nccl is gomegatron's GPU collective backend: NCCL bound through dlopen (no
// headers at build time, see kernels/cuda/dl) behind comm.Comm, for tensors in GPU memory.
//
// # Differences from comm/tcp
//
//   - Tensors are device tensors (tensor.Device CUDA on this communicator's GPU, storage in
//     Ptr); CheckTensor is the device twin of comm.CheckTensor. FP8 tensors are accepted
//     too (NCCL ≥ 2.24).
//   - Reductions are NCCL's: fast, but not the rank-order left fold comm.Comm promises for
//     the CPU backend, so bits may differ from comm/tcp and, for large messages, between
//     algorithm choices. Avg is ncclAvg.
//   - Every operation is enqueued on the device's stream (ordered with the compute queued
//     before it) and then waited for on a worker thread that polls the stream event and
//     ncclCommGetAsyncError; past the timeout, or on an asynchronous NCCL error, the
//     communicator is aborted (ncclCommAbort) and every later call fails. Send returns once
//     the transfer is enqueued (NCCL completes it when the peer receives); two ranks that
//     both Send before they Recv are safe only below NCCL's buffer size (4 MiB by default):
//     use SendRecv, which groups the transfers, for pipeline exchanges.
package nccl

import (
	"fmt"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Library holds NCCL's entry points.
type Library struct {
	lib *dl.Lib

	ncclGetVersion, ncclGetUniqueId, ncclCommInitRank, ncclCommSplit dl.Func
	ncclCommDestroy, ncclCommAbort, ncclCommFinalize                 dl.Func
	ncclCommGetAsyncError, ncclGetErrorString, ncclGetLastError      dl.Func
	ncclCommCount, ncclCommUserRank                                  dl.Func
	ncclAllReduce, ncclReduceScatter, ncclAllGather, ncclBroadcast   dl.Func
	ncclSend, ncclRecv, ncclGroupStart, ncclGroupEnd                 dl.Func
	version                                                          int
}

func (a *Library) symbols() [][2]any {
	return [][2]any{
		{"ncclGetVersion", &a.ncclGetVersion}, {"ncclGetUniqueId", &a.ncclGetUniqueId},
		{"ncclCommInitRank", &a.ncclCommInitRank}, {"ncclCommSplit", &a.ncclCommSplit},
		{"ncclCommDestroy", &a.ncclCommDestroy}, {"ncclCommAbort", &a.ncclCommAbort},
		{"ncclCommFinalize", &a.ncclCommFinalize}, {"ncclCommGetAsyncError", &a.ncclCommGetAsyncError},
		{"ncclGetErrorString", &a.ncclGetErrorString}, {"ncclGetLastError", &a.ncclGetLastError},
		{"ncclCommCount", &a.ncclCommCount}, {"ncclCommUserRank", &a.ncclCommUserRank},
		{"ncclAllReduce", &a.ncclAllReduce}, {"ncclReduceScatter", &a.ncclReduceScatter},
		{"ncclAllGather", &a.ncclAllGather}, {"ncclBroadcast", &a.ncclBroadcast},
		{"ncclSend", &a.ncclSend}, {"ncclRecv", &a.ncclRecv},
		{"ncclGroupStart", &a.ncclGroupStart}, {"ncclGroupEnd", &a.ncclGroupEnd},
	}
}

// Symbols lists the exported names the binding needs (fake libraries in tests export them).
func Symbols() []string {
	var out []string
	for _, s := range (&Library{}).symbols() {
		out = append(out, s[0].(string))
	}
	return out
}

// Load opens libnccl.so.2 from the search order of s (override, wheel folder
// nvidia/nccl/lib, system loader, CUDA_HOME) and binds it.
func Load(s dl.Search) (*Library, error) {
	lib, err := s.OpenFirst("ncclCommInitRank", false, "libnccl.so.2")
	if err != nil {
		return nil, err
	}
	a := &Library{lib: lib}
	var missing []string
	for _, x := range a.symbols() {
		f, err := lib.Sym(x[0].(string))
		if err != nil {
			missing = append(missing, x[0].(string))
			continue
		}
		*x[1].(*dl.Func) = f
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("NCCL %s lacks %v (too old?)", lib.Path, missing)
	}
	var v int32
	if err := a.check("ncclGetVersion", a.ncclGetVersion.Status(uintptr(addrOf(&v))), ""); err != nil {
		return nil, err
	}
	a.version = int(v)
	return a, nil
}

// Version is NCCL's version code (e.g. 22703 for 2.27.3).
func (a *Library) Version() int { return a.version }

// ncclResult_t values.
const (
	ncclSuccess    = 0
	ncclInProgress = 7
)

var resultNames = map[int]string{
	0: "ncclSuccess", 1: "ncclUnhandledCudaError", 2: "ncclSystemError", 3: "ncclInternalError",
	4: "ncclInvalidArgument", 5: "ncclInvalidUsage", 6: "ncclRemoteError", 7: "ncclInProgress",
}

// Error is a failed NCCL call.
type Error struct {
	Func, Detail string
	Code         int
	Name, Desc   string
}

func (e *Error) Error() string {
	s := e.Func
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	s += fmt.Sprintf(": %s (%d)", e.Name, e.Code)
	if e.Desc != "" {
		s += ": " + e.Desc
	}
	return s
}

func (a *Library) check(fn string, code int, detail string) error {
	if code == ncclSuccess {
		return nil
	}
	name, ok := resultNames[code]
	if !ok {
		name = fmt.Sprintf("ncclResult(%d)", code)
	}
	var desc string
	if a.ncclGetErrorString != 0 {
		desc = dl.GoString(a.ncclGetErrorString.Call(uintptr(code)))
	}
	return &Error{Func: fn, Detail: detail, Code: code, Name: name, Desc: desc}
}

// lastError is NCCL's last error message for comm (ncclGetLastError), "" when none.
func (a *Library) lastError(comm uintptr) string {
	if a.ncclGetLastError == 0 {
		return ""
	}
	return dl.GoString(a.ncclGetLastError.Call(comm))
}
