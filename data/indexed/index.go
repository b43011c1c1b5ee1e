package indexed

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Index is the decoded content of a .idx file.
type Index struct {
	DType DTypeCode
	// SequenceLengths[i] is the number of tokens of sequence i.
	SequenceLengths []int32
	// SequencePointers[i] is the byte offset of sequence i in the .bin.
	SequencePointers []int64
	// DocumentIndices has one entry per document plus one: document d is the sequences
	// [DocumentIndices[d], DocumentIndices[d+1]).
	DocumentIndices []int64
	// SequenceModes holds one int8 per sequence for multimodal datasets, else nil.
	SequenceModes []int8
}

// ReadIndex reads and validates the .idx file at path. When multimodal is true the file must
// carry sequence_modes; when false, a trailing sequence_modes array is still accepted and kept.
// Pointers are not checked against the .bin here (Open does that).
func ReadIndex(path string, multimodal bool) (*Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("indexed: read index: %w", err)
	}
	return ParseIndex(data, path, multimodal)
}

// ParseIndex decodes a .idx image; name is used in error messages.
func ParseIndex(data []byte, name string, multimodal bool) (*Index, error) {
	if len(data) < HeaderSize {
		return nil, fmt.Errorf("indexed: %s: truncated header: %d bytes, need %d", name, len(data), HeaderSize)
	}
	if string(data[:9]) != Magic {
		return nil, fmt.Errorf("indexed: %s: magic is %q, want %q (not a Megatron MMIDIDX index)", name, data[:9], Magic)
	}
	if v := binary.LittleEndian.Uint64(data[9:]); v != Version {
		return nil, fmt.Errorf("indexed: %s: version is %d, want %d", name, v, Version)
	}
	dt := DTypeCode(data[17])
	if !dt.Valid() {
		return nil, fmt.Errorf("indexed: %s: dtype code is %d, want 1..8", name, data[17])
	}
	q := binary.LittleEndian.Uint64(data[18:])
	dcount := binary.LittleEndian.Uint64(data[26:])
	rest := uint64(len(data) - HeaderSize)
	// Check sizes before multiplying so that absurd counts cannot overflow or allocate.
	if q > rest/12 {
		return nil, fmt.Errorf("indexed: %s: sequence_count %d needs %d bytes of arrays but only %d follow the header (truncated or corrupt)", name, q, satMul(q, 12), rest)
	}
	if dcount > (rest-12*q)/8 {
		return nil, fmt.Errorf("indexed: %s: document_count %d with sequence_count %d needs %d bytes of arrays but only %d follow the header (truncated or corrupt)", name, dcount, q, 12*q+satMul(dcount, 8), rest)
	}
	need := 12*q + 8*dcount
	extra := rest - need
	switch {
	case extra == q && q > 0:
		// sequence_modes present.
	case extra == 0 && !multimodal:
	case extra == 0 && multimodal && q == 0:
	case multimodal:
		return nil, fmt.Errorf("indexed: %s: multimodal index should end with %d sequence_modes bytes, found %d", name, q, extra)
	default:
		return nil, fmt.Errorf("indexed: %s: %d unexpected bytes after document_indices (file %d bytes, expected %d)", name, extra, len(data), uint64(HeaderSize)+need)
	}
	ix := &Index{DType: dt}
	off := uint64(HeaderSize)
	ix.SequenceLengths = make([]int32, q)
	for i := range ix.SequenceLengths {
		ix.SequenceLengths[i] = int32(binary.LittleEndian.Uint32(data[off:]))
		off += 4
	}
	ix.SequencePointers = make([]int64, q)
	for i := range ix.SequencePointers {
		ix.SequencePointers[i] = int64(binary.LittleEndian.Uint64(data[off:]))
		off += 8
	}
	ix.DocumentIndices = make([]int64, dcount)
	for i := range ix.DocumentIndices {
		ix.DocumentIndices[i] = int64(binary.LittleEndian.Uint64(data[off:]))
		off += 8
	}
	if extra == q && q > 0 {
		ix.SequenceModes = make([]int8, q)
		for i := range ix.SequenceModes {
			ix.SequenceModes[i] = int8(data[off])
			off++
		}
	}
	if err := ix.Validate(-1); err != nil {
		return nil, fmt.Errorf("indexed: %s: %w", name, err)
	}
	return ix, nil
}

func satMul(a, b uint64) uint64 {
	if a != 0 && a*b/a != b {
		return ^uint64(0)
	}
	return a * b
}

// Validate checks the invariants Megatron's reader asserts (document_indices ends at the
// sequence count) plus those a safe reader needs: non-negative lengths, document_indices
// starting at 0 and non-decreasing, and, when binSize >= 0, every sequence inside the .bin.
func (ix *Index) Validate(binSize int64) error {
	q := int64(len(ix.SequenceLengths))
	if len(ix.SequencePointers) != len(ix.SequenceLengths) {
		return fmt.Errorf("sequence_pointers has %d entries, sequence_lengths %d", len(ix.SequencePointers), q)
	}
	if ix.SequenceModes != nil && len(ix.SequenceModes) != len(ix.SequenceLengths) {
		return fmt.Errorf("sequence_modes has %d entries, sequence_lengths %d", len(ix.SequenceModes), q)
	}
	di := ix.DocumentIndices
	if len(di) == 0 {
		return fmt.Errorf("document_indices is empty (document_count must be at least 1: the leading 0)")
	}
	if di[0] != 0 {
		return fmt.Errorf("document_indices[0] is %d, want 0", di[0])
	}
	for d := 1; d < len(di); d++ {
		if di[d] < di[d-1] {
			return fmt.Errorf("document_indices[%d]=%d is below document_indices[%d]=%d", d, di[d], d-1, di[d-1])
		}
	}
	if last := di[len(di)-1]; last != q {
		return fmt.Errorf("document_indices[-1] is %d but sequence_count is %d (lengths inconsistent with document_indices)", last, q)
	}
	size := int64(ix.DType.Size())
	for i, n := range ix.SequenceLengths {
		if n < 0 {
			return fmt.Errorf("sequence_lengths[%d] is negative (%d)", i, n)
		}
		p := ix.SequencePointers[i]
		if p < 0 {
			return fmt.Errorf("sequence_pointers[%d] is negative (%d)", i, p)
		}
		if binSize >= 0 && (p > binSize || int64(n)*size > binSize-p) {
			return fmt.Errorf("sequence %d (pointer %d, %d tokens of %s) ends past the end of the .bin (%d bytes)", i, p, n, ix.DType, binSize)
		}
	}
	return nil
}

// Encode returns the .idx image of ix, byte for byte what Megatron's _IndexWriter writes.
func (ix *Index) Encode() []byte {
	q := len(ix.SequenceLengths)
	n := HeaderSize + 12*q + 8*len(ix.DocumentIndices) + len(ix.SequenceModes)
	b := make([]byte, 0, n)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint64(b, Version)
	b = append(b, byte(ix.DType))
	b = binary.LittleEndian.AppendUint64(b, uint64(q))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(ix.DocumentIndices)))
	for _, v := range ix.SequenceLengths {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	for _, v := range ix.SequencePointers {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range ix.DocumentIndices {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range ix.SequenceModes {
		b = append(b, byte(v))
	}
	return b
}

// Pointers returns Megatron's sequence_pointers for lengths: the running sum of
// length*itemsize, starting at 0.
func Pointers(lengths []int32, dtype DTypeCode) []int64 {
	p := make([]int64, len(lengths))
	var cur int64
	size := int64(dtype.Size())
	for i, n := range lengths {
		p[i] = cur
		cur += int64(n) * size
	}
	return p
}
