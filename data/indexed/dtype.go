// Package indexed reads and writes Megatron-LM's memory-mapped indexed dataset: a .bin file of
// concatenated token ids and a .idx file describing sequences and documents
// (megatron/core/datasets/indexed_dataset.py, magic "MMIDIDX\x00\x00", version 1).
//
// Layout of the .idx (little-endian, no padding or alignment anywhere):
//
//	off 0      9 bytes   magic "MMIDIDX\x00\x00"
//	off 9      uint64    version = 1
//	off 17     uint8     dtype code of the .bin tokens (DTypeCode)
//	off 18     uint64    sequence_count Q
//	off 26     uint64    document_count D' = number of documents + 1
//	off 34     int32[Q]  sequence_lengths (tokens per sequence)
//	           int64[Q]  sequence_pointers (byte offset of each sequence in .bin)
//	           int64[D'] document_indices (0, then the sequence count after each document)
//	           int8[Q]   sequence_modes (multimodal datasets only; no header flag marks it)
//
// The .bin has no header: sequence i is lengths[i] tokens of the dataset dtype starting at byte
// pointers[i].
package indexed

import (
	"fmt"
	"strings"
)

// DTypeCode is the token dtype code stored at byte 17 of the .idx (Megatron's class DType).
type DTypeCode uint8

// The dtype codes of Megatron's DType enum.
const (
	Uint8   DTypeCode = 1
	Int8    DTypeCode = 2
	Int16   DTypeCode = 3
	Int32   DTypeCode = 4
	Int64   DTypeCode = 5
	Float64 DTypeCode = 6
	Float32 DTypeCode = 7
	Uint16  DTypeCode = 8
)

// Magic is the first 9 bytes of every .idx file; Version is the only version Megatron reads.
const (
	Magic   = "MMIDIDX\x00\x00"
	Version = 1
	// HeaderSize is the byte offset of sequence_lengths in the .idx.
	HeaderSize = 34
)

var dtypeNames = [...]string{"", "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"}
var dtypeSizes = [...]int{0, 1, 1, 2, 4, 8, 8, 4, 2}

// Valid reports whether c is one of the codes 1..8.
func (c DTypeCode) Valid() bool { return c >= Uint8 && c <= Uint16 }

// Size is the number of bytes per token (numpy itemsize); 0 for an invalid code.
func (c DTypeCode) Size() int {
	if !c.Valid() {
		return 0
	}
	return dtypeSizes[c]
}

// String is the numpy name of the dtype ("uint16"), or "dtype(<code>)" for an invalid code.
func (c DTypeCode) String() string {
	if !c.Valid() {
		return fmt.Sprintf("dtype(%d)", uint8(c))
	}
	return dtypeNames[c]
}

// IsFloat reports whether tokens of this dtype are stored as floating point.
func (c DTypeCode) IsFloat() bool { return c == Float32 || c == Float64 }

// ParseDType maps a numpy dtype name ("uint16", "int32", …) to its code.
func ParseDType(name string) (DTypeCode, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for c := Uint8; c <= Uint16; c++ {
		if dtypeNames[c] == n {
			return c, nil
		}
	}
	return 0, fmt.Errorf("indexed: unknown dtype %q (want one of uint8, int8, int16, int32, int64, float64, float32, uint16)", name)
}

// OptimalDType is Megatron's DType.optimal_dtype: uint16 when vocab < 65500, else int32.
// The threshold is 65500, not 65536, exactly as in indexed_dataset.py.
func OptimalDType(vocab int) DTypeCode {
	if vocab < 65500 {
		return Uint16
	}
	return Int32
}

// inRange reports whether the integer v is representable in dtype c (floats accept anything).
func (c DTypeCode) inRange(v int64) bool {
	switch c {
	case Uint8:
		return v >= 0 && v <= 0xff
	case Int8:
		return v >= -128 && v <= 127
	case Int16:
		return v >= -32768 && v <= 32767
	case Int32:
		return v >= -1<<31 && v <= 1<<31-1
	case Uint16:
		return v >= 0 && v <= 0xffff
	}
	return true
}
