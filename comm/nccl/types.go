package nccl

import (
	"fmt"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// ncclDataType_t and ncclRedOp_t values (nccl.h).
const (
	ncclInt8     = 0
	ncclUint8    = 1
	ncclInt32    = 2
	ncclInt64    = 4
	ncclFloat16  = 6
	ncclFloat32  = 7
	ncclFloat64  = 8
	ncclBfloat16 = 9
	ncclFloat8E4 = 10
	ncclFloat8E5 = 11

	ncclSum = 0
	ncclMax = 2
	ncclMin = 3
	ncclAvg = 4
)

// ncclType maps a tensor dtype to NCCL's.
func ncclType(d tensor.DType) (int, bool) {
	switch d {
	case tensor.I8:
		return ncclInt8, true
	case tensor.U8, tensor.Bool:
		return ncclUint8, true
	case tensor.I32:
		return ncclInt32, true
	case tensor.I64:
		return ncclInt64, true
	case tensor.F16:
		return ncclFloat16, true
	case tensor.F32:
		return ncclFloat32, true
	case tensor.F64:
		return ncclFloat64, true
	case tensor.BF16:
		return ncclBfloat16, true
	case tensor.F8E4M3:
		return ncclFloat8E4, true
	case tensor.F8E5M2:
		return ncclFloat8E5, true
	}
	return 0, false
}

// ncclOp maps comm.Op to ncclRedOp_t.
func ncclOp(o comm.Op) int {
	switch o {
	case comm.Max:
		return ncclMax
	case comm.Min:
		return ncclMin
	case comm.Avg:
		return ncclAvg
	}
	return ncclSum
}

// CheckTensor is comm.CheckTensor for NCCL: t must be a device tensor on GPU dev (CUDA,
// a non-zero Ptr unless empty) of a dtype NCCL reduces (comm.SupportedDType's list plus
// I8, Bool and the FP8 types). Host tensors are rejected: copy them to the GPU first.
func CheckTensor(what string, t *tensor.Tensor, dev int) error {
	switch {
	case t == nil:
		return fmt.Errorf("%s is nil", what)
	case t.Device.Type != tensor.CUDA || t.Device.Index != dev:
		return fmt.Errorf("%s %v is not on cuda:%d (NCCL communicates device tensors)", what, t, dev)
	case t.Ptr == 0 && t.Numel() > 0:
		return fmt.Errorf("%s %v has no device storage", what, t)
	}
	if _, ok := ncclType(t.DType()); !ok {
		return fmt.Errorf("%s: dtype %v is not supported by NCCL", what, t.DType())
	}
	return nil
}
