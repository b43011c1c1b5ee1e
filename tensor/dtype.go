// Package tensor holds the n-dimensional array type shared by every backend, the element
// types Megatron checkpoints and kernels use, and exact conversions between them.
package tensor

import "fmt"

// DType is an element type. The zero value is invalid so a forgotten dtype is caught.
type DType uint8

const (
	Invalid DType = iota
	F32
	F16
	BF16
	F8E4M3 // OCP FP8 E4M3 ("fn"): no infinities, one NaN per sign, max 448
	F8E5M2 // OCP FP8 E5M2: IEEE-like with infinities, max 57344
	F64
	I8
	U8
	I16
	U16
	I32
	I64
	Bool
	numDTypes
)

var dtypeInfo = [numDTypes]struct {
	name  string // our name, as in torch (float32, bfloat16, ...)
	st    string // safetensors name
	size  int
	float bool
}{
	Invalid: {"invalid", "", 0, false},
	F32:     {"float32", "F32", 4, true},
	F16:     {"float16", "F16", 2, true},
	BF16:    {"bfloat16", "BF16", 2, true},
	F8E4M3:  {"float8_e4m3fn", "F8_E4M3", 1, true},
	F8E5M2:  {"float8_e5m2", "F8_E5M2", 1, true},
	F64:     {"float64", "F64", 8, true},
	I8:      {"int8", "I8", 1, false},
	U8:      {"uint8", "U8", 1, false},
	I16:     {"int16", "I16", 2, false},
	U16:     {"uint16", "U16", 2, false},
	I32:     {"int32", "I32", 4, false},
	I64:     {"int64", "I64", 8, false},
	Bool:    {"bool", "BOOL", 1, false},
}

// Size is the number of bytes one element occupies.
func (d DType) Size() int {
	if d >= numDTypes {
		return 0
	}
	return dtypeInfo[d].size
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d < numDTypes && dtypeInfo[d].float }

// String returns torch's name for the type (float32, bfloat16, float8_e4m3fn, ...).
func (d DType) String() string {
	if d >= numDTypes {
		return fmt.Sprintf("dtype(%d)", uint8(d))
	}
	return dtypeInfo[d].name
}

// SafetensorsName returns the dtype string of the safetensors header (F32, BF16, F8_E4M3, ...).
func (d DType) SafetensorsName() string {
	if d >= numDTypes {
		return ""
	}
	return dtypeInfo[d].st
}

// ParseDType accepts torch names (float32, bfloat16, half, fp16, bf16, ...) and safetensors
// names (F32, BF16, F8_E4M3, ...).
func ParseDType(s string) (DType, error) {
	for d := F32; d < numDTypes; d++ {
		if s == dtypeInfo[d].name || s == dtypeInfo[d].st {
			return d, nil
		}
	}
	switch s {
	case "fp32", "float":
		return F32, nil
	case "fp16", "half":
		return F16, nil
	case "bf16":
		return BF16, nil
	case "fp64", "double":
		return F64, nil
	case "long":
		return I64, nil
	case "int":
		return I32, nil
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}
