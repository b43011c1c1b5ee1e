// Package npy reads and writes NumPy .npy files byte-identically to numpy 1.24's numpy.save,
// the format of Megatron-LM's index caches (document_index.npy, sample_index.npy, …).
//
// Format (numpy/lib/format.py): magic "\x93NUMPY", major and minor version bytes, a header
// length (uint16 LE for 1.0, uint32 LE for 2.0/3.0), then the header: the repr of a dict with
// sorted keys, e.g. "{'descr': '<i4', 'fortran_order': False, 'shape': (150,), }", followed by
// 21 - len(repr(shape[0])) spaces of growth room (none for a 0-d shape), then spaces so that
// magic + length field + header + "\n" is a multiple of 64 (a full 64 when it already is),
// then "\n". The raw C-order (or Fortran-order) data follows.
package npy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	magic          = "\x93NUMPY"
	arrayAlign     = 64
	growthAxisMaxD = 21
)

// Elem is the set of element types this package maps to numpy descriptors.
type Elem interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~float32 | ~float64
}

// Array is a decoded .npy file: its dtype descriptor, shape, order and raw little-endian data.
type Array struct {
	Descr        string // numpy dtype string: '<i4', '<i8', '<u4', '<i2', '<f8', '|u1', …
	Shape        []int
	FortranOrder bool
	Data         []byte
}

// Len is the number of elements (the product of the shape; 1 for a 0-d array).
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Descr returns the numpy descriptor of T ("<i4" for int32, "|u1" for uint8, …).
func Descr[T Elem]() string {
	var z T
	switch any(z).(type) {
	case int8:
		return "|i1"
	case uint8:
		return "|u1"
	case int16:
		return "<i2"
	case uint16:
		return "<u2"
	case int32:
		return "<i4"
	case uint32:
		return "<u4"
	case int64:
		return "<i8"
	case uint64:
		return "<u8"
	case float32:
		return "<f4"
	case float64:
		return "<f8"
	}
	// Named types (~int32, …) fall back on their size and kind.
	return descrOfKind(z)
}

func descrOfKind[T Elem](z T) string {
	size := binary.Size(z)
	neg := T(0) - 1
	switch {
	case isFloat(z):
		return "<f" + strconv.Itoa(size)
	case size == 1 && neg < 0:
		return "|i1"
	case size == 1:
		return "|u1"
	case neg < 0:
		return "<i" + strconv.Itoa(size)
	default:
		return "<u" + strconv.Itoa(size)
	}
}

func isFloat[T Elem](z T) bool {
	half := T(1) / T(2)
	return half != 0
}

// shapeRepr is Python's repr of a shape tuple: "()", "(5,)", "(3, 4)".
func shapeRepr(shape []int) string {
	switch len(shape) {
	case 0:
		return "()"
	case 1:
		return "(" + strconv.Itoa(shape[0]) + ",)"
	}
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// Header returns the magic, version, length field and header exactly as numpy.save writes them
// for an array with this descriptor, shape and order (version 1.0, or 2.0 when the header
// does not fit a uint16 length).
func Header(descr string, shape []int, fortranOrder bool) []byte {
	order := "False"
	if fortranOrder {
		order = "True"
	}
	h := "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shapeRepr(shape) + ", }"
	if len(shape) > 0 {
		axis := shape[0]
		if fortranOrder {
			axis = shape[len(shape)-1]
		}
		h += strings.Repeat(" ", max(0, growthAxisMaxD-len(strconv.Itoa(axis))))
	}
	hlen := len(h) + 1
	for _, lenSize := range []int{2, 4} {
		pad := arrayAlign - (len(magic)+2+lenSize+hlen)%arrayAlign
		total := hlen + pad
		if lenSize == 2 && total > 0xffff {
			continue
		}
		b := make([]byte, 0, len(magic)+2+lenSize+total)
		b = append(b, magic...)
		if lenSize == 2 {
			b = append(b, 1, 0)
			b = binary.LittleEndian.AppendUint16(b, uint16(total))
		} else {
			b = append(b, 2, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(total))
		}
		b = append(b, h...)
		b = append(b, bytes.Repeat([]byte{' '}, pad)...)
		return append(b, '\n')
	}
	panic("unreachable")
}

// Marshal returns the .npy image of data with the given shape (default: 1-D, len(data)).
func Marshal[T Elem](data []T, shape ...int) ([]byte, error) {
	if shape == nil {
		shape = []int{len(data)}
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("npy: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n != len(data) {
		return nil, fmt.Errorf("npy: shape %v holds %d elements, data has %d", shape, n, len(data))
	}
	b := Header(Descr[T](), shape, false)
	return binary.Append(b, binary.LittleEndian, data)
}

// WriteFile writes data as a .npy file atomically (temp file, fsync, rename).
func WriteFile[T Elem](path string, data []T, shape ...int) error {
	b, err := Marshal(data, shape...)
	if err != nil {
		return fmt.Errorf("npy: %s: %w", path, err)
	}
	return writeAtomic(path, b)
}

func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("npy: create temp for %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(what string, err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("npy: %s %s: %w", what, path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail("chmod", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("npy: close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("npy: rename to %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
