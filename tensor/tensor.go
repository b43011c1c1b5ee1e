package tensor

import (
	"fmt"
	"strings"
	"unsafe"
)

// DeviceType says where a tensor's storage lives.
type DeviceType uint8

const (
	CPU DeviceType = iota
	CUDA
)

// Device is a storage location: the host, or one GPU.
type Device struct {
	Type  DeviceType
	Index int
}

func (d Device) String() string {
	if d.Type == CUDA {
		return fmt.Sprintf("cuda:%d", d.Index)
	}
	return "cpu"
}

// Tensor is a dense, row-major (C-order) array. Host tensors keep their bytes in Data;
// device tensors keep an opaque device pointer in Ptr and leave Data nil. A Tensor is a view:
// several tensors may share storage (see View and Slice).
type Tensor struct {
	shape  []int
	dtype  DType
	Device Device
	Data   []byte  // host storage, len = Numel*dtype.Size()
	Ptr    uintptr // device storage address (CUDA); 0 on the host
}

// New allocates a zeroed host tensor.
func New(dt DType, shape ...int) *Tensor {
	n := numel(shape)
	return &Tensor{shape: append([]int(nil), shape...), dtype: dt, Data: make([]byte, n*dt.Size())}
}

// FromBytes wraps host bytes without copying. The length must match shape and dtype.
func FromBytes(dt DType, shape []int, b []byte) (*Tensor, error) {
	if want := numel(shape) * dt.Size(); len(b) != want {
		return nil, fmt.Errorf("tensor of %v%v needs %d bytes, have %d", dt, shape, want, len(b))
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: dt, Data: b}, nil
}

// FromF32 wraps a float32 slice without copying.
func FromF32(v []float32, shape ...int) *Tensor {
	if numel(shape) != len(v) {
		panic(fmt.Sprintf("tensor.FromF32: %d values for shape %v", len(v), shape))
	}
	var b []byte
	if len(v) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: F32, Data: b}
}

// FromF64 wraps a float64 slice without copying.
func FromF64(v []float64, shape ...int) *Tensor {
	if numel(shape) != len(v) {
		panic(fmt.Sprintf("tensor.FromF64: %d values for shape %v", len(v), shape))
	}
	var b []byte
	if len(v) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 8*len(v))
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: F64, Data: b}
}

// FromI64 wraps an int64 slice without copying.
func FromI64(v []int64, shape ...int) *Tensor {
	if numel(shape) != len(v) {
		panic(fmt.Sprintf("tensor.FromI64: %d values for shape %v", len(v), shape))
	}
	var b []byte
	if len(v) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 8*len(v))
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: I64, Data: b}
}

// ShapeNumel is the number of elements of a tensor of this shape.
func ShapeNumel(shape []int) int { return numel(shape) }

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		if s < 0 {
			panic(fmt.Sprintf("tensor: negative dimension in %v", shape))
		}
		n *= s
	}
	return n
}

// Shape returns the dimensions; the caller must not modify the slice.
func (t *Tensor) Shape() []int { return t.shape }

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return numel(t.shape) }

// Bytes is the storage size in bytes.
func (t *Tensor) Bytes() int { return t.Numel() * t.dtype.Size() }

func (t *Tensor) String() string {
	return fmt.Sprintf("%v%v@%v", t.dtype, t.shape, t.Device)
}

// ShapeString formats a shape as [a, b, c].
func ShapeString(s []int) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(p, ", ") + "]"
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (t *Tensor) mustHost(dt DType) {
	if t.dtype != dt {
		panic(fmt.Sprintf("tensor: %v accessed as %v", t, dt))
	}
	if t.Device.Type != CPU {
		panic(fmt.Sprintf("tensor: %v is not on the host", t))
	}
}

// F32 returns the host storage of a float32 tensor as a slice (no copy).
func (t *Tensor) F32() []float32 {
	t.mustHost(F32)
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
}

// F64 returns the host storage of a float64 tensor as a slice (no copy).
func (t *Tensor) F64() []float64 {
	t.mustHost(F64)
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(&t.Data[0])), len(t.Data)/8)
}

// U16 returns the raw 16-bit storage of a bf16, f16, u16 or i16 tensor (no copy).
func (t *Tensor) U16() []uint16 {
	if t.dtype.Size() != 2 || t.Device.Type != CPU {
		panic(fmt.Sprintf("tensor: %v accessed as 16-bit", t))
	}
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), len(t.Data)/2)
}

// I32 returns the host storage of an int32 tensor (no copy).
func (t *Tensor) I32() []int32 {
	t.mustHost(I32)
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
}

// I64 returns the host storage of an int64 tensor (no copy).
func (t *Tensor) I64() []int64 {
	t.mustHost(I64)
	if len(t.Data) == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&t.Data[0])), len(t.Data)/8)
}

// View returns a tensor sharing storage with a new shape of the same element count.
func (t *Tensor) View(shape ...int) *Tensor {
	if numel(shape) != t.Numel() {
		panic(fmt.Sprintf("tensor: cannot view %v as %v", t, shape))
	}
	v := *t
	v.shape = append([]int(nil), shape...)
	return &v
}

// Slice returns rows [lo, hi) along dimension 0, sharing storage.
func (t *Tensor) Slice(lo, hi int) *Tensor {
	if lo < 0 || hi > t.shape[0] || lo > hi {
		panic(fmt.Sprintf("tensor: slice [%d,%d) of %v", lo, hi, t))
	}
	row := numel(t.shape[1:]) * t.dtype.Size()
	v := *t
	v.shape = append([]int{hi - lo}, t.shape[1:]...)
	if t.Data != nil {
		v.Data = t.Data[lo*row : hi*row]
	}
	if t.Ptr != 0 {
		v.Ptr = t.Ptr + uintptr(lo*row)
	}
	return &v
}

// Clone copies a host tensor into fresh storage.
func (t *Tensor) Clone() *Tensor {
	c := New(t.dtype, t.shape...)
	copy(c.Data, t.Data)
	c.Device = t.Device
	return c
}

// ToF32 returns the values of any host tensor widened (or rounded, for f64/i64) to float32.
func (t *Tensor) ToF32() []float32 {
	n := t.Numel()
	out := make([]float32, n)
	ConvertToF32(out, t)
	return out
}

// ConvertToF32 writes t's values as float32 into dst (len ≥ Numel).
func ConvertToF32(dst []float32, t *Tensor) {
	n := t.Numel()
	b := t.Data
	switch t.dtype {
	case F32:
		copy(dst, t.F32())
	case F64:
		for i, v := range t.F64() {
			dst[i] = float32(v)
		}
	case BF16:
		for i, v := range t.U16() {
			dst[i] = F32FromBF16(v)
		}
	case F16:
		for i, v := range t.U16() {
			dst[i] = F32FromF16(v)
		}
	case F8E4M3:
		for i := 0; i < n; i++ {
			dst[i] = F32FromE4M3(b[i])
		}
	case F8E5M2:
		for i := 0; i < n; i++ {
			dst[i] = F32FromE5M2(b[i])
		}
	case I64:
		for i, v := range t.I64() {
			dst[i] = float32(v)
		}
	case I32:
		for i, v := range t.I32() {
			dst[i] = float32(v)
		}
	case U8, Bool:
		for i := 0; i < n; i++ {
			dst[i] = float32(b[i])
		}
	case I8:
		for i := 0; i < n; i++ {
			dst[i] = float32(int8(b[i]))
		}
	case I16:
		for i, v := range t.U16() {
			dst[i] = float32(int16(v))
		}
	case U16:
		for i, v := range t.U16() {
			dst[i] = float32(v)
		}
	default:
		panic(fmt.Sprintf("tensor: no float32 view of %v", t.dtype))
	}
}

// FromF32Values rounds float32 values into a new host tensor of dtype dt (nearest even;
// FP8 saturates to its largest finite value as Transformer Engine casts do).
func FromF32Values(dt DType, v []float32, shape ...int) *Tensor {
	t := New(dt, shape...)
	ConvertFromF32(t, v)
	return t
}

// ConvertFromF32 rounds src into the host tensor t (same element count).
func ConvertFromF32(t *Tensor, src []float32) {
	b := t.Data
	switch t.dtype {
	case F32:
		copy(t.F32(), src)
	case F64:
		d := t.F64()
		for i, v := range src {
			d[i] = float64(v)
		}
	case BF16:
		d := t.U16()
		for i, v := range src {
			d[i] = BF16FromF32(v)
		}
	case F16:
		d := t.U16()
		for i, v := range src {
			d[i] = F16FromF32(v)
		}
	case F8E4M3:
		for i, v := range src {
			b[i] = E4M3FromF32(v, true)
		}
	case F8E5M2:
		for i, v := range src {
			b[i] = E5M2FromF32(v, true)
		}
	default:
		panic(fmt.Sprintf("tensor: cannot round float32 into %v", t.dtype))
	}
}
