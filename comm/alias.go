package comm

import (
	"fmt"
	"unsafe"

	"github.com/gomegatron/gomegatron/tensor"
)

// InPlace says whether a ReduceScatter or AllGather runs in place, by NCCL's convention:
// chunk (ReduceScatter's out, AllGather's in, m elements) is exactly chunk rank of whole
// (in, resp. out: n·m elements of the same dtype, which the caller checks first, e.g. with
// CheckSizes), i.e. the same storage at byte offset rank·m·size. It returns false when the
// two tensors' storages are disjoint and an error naming what for any other overlap, which
// no collective accepts.
//
// Storage is the device address range [Ptr, Ptr+Bytes()) when both tensors have one (CUDA),
// otherwise the host bytes of Data (host tensors, and device tensors emulated in host
// memory); tensors on different devices, and empty ones, never overlap.
func InPlace(what string, chunk, whole *tensor.Tensor, rank int) (bool, error) {
	c0, c1, ok := extent(chunk, whole)
	if !ok {
		return false, nil
	}
	w0, w1, _ := extent(whole, chunk)
	if c1 <= w0 || w1 <= c0 {
		return false, nil
	}
	mine := w0 + uintptr(rank*chunk.Bytes())
	if c0 == mine && c1 == mine+uintptr(chunk.Bytes()) {
		return true, nil
	}
	return false, fmt.Errorf("%s: %v overlaps %v without being its chunk %d (it starts %d bytes into it, chunk %d starts at %d): "+
		"the only aliasing collectives accept is NCCL's in-place form", what, chunk, whole, rank, int64(c0)-int64(w0), rank, rank*chunk.Bytes())
}

// extent is t's storage range for comparison with other's: device addresses when both
// have them, else host addresses; ok is false when the two cannot share storage (empty,
// different devices, or one with only a device address and one with only host bytes).
func extent(t, other *tensor.Tensor) (lo, hi uintptr, ok bool) {
	if t.Device != other.Device || t.Bytes() == 0 || other.Bytes() == 0 {
		return 0, 0, false
	}
	n := uintptr(t.Bytes())
	switch {
	case t.Ptr != 0 && other.Ptr != 0:
		return t.Ptr, t.Ptr + n, true
	case len(t.Data) > 0 && len(other.Data) > 0:
		p := uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))
		return p, p + n, true
	}
	return 0, 0, false
}

// chunkOf is elements [r·m, (r+1)·m) of t viewed with shape, sharing t's storage.
func chunkOf(t *tensor.Tensor, r int, shape []int) *tensor.Tensor {
	m := tensor.ShapeNumel(shape)
	return t.View(t.Numel()).Slice(r*m, (r+1)*m).View(shape...)
}
