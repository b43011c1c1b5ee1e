package indexed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// BinPath and IdxPath are Megatron's get_bin_path / get_idx_path.
func BinPath(prefix string) string { return prefix + ".bin" }

// IdxPath returns prefix + ".idx".
func IdxPath(prefix string) string { return prefix + ".idx" }

// Options changes how Open reads a dataset.
type Options struct {
	// Multimodal requires the .idx to end with sequence_modes (Megatron's multimodal=True).
	Multimodal bool
}

// Dataset is an opened .bin/.idx pair: the index decoded in memory and the .bin mapped
// read-only. Its methods are safe for concurrent use until Close.
type Dataset struct {
	prefix string
	ix     *Index
	bin    []byte // the mmap of the .bin; nil for an empty .bin or after Close
	size   int64  // .bin size in bytes
	closed bool
}

// Open opens prefix.idx and prefix.bin (Megatron's IndexedDataset(path_prefix)).
func Open(prefix string) (*Dataset, error) { return OpenWithOptions(prefix, Options{}) }

// OpenWithOptions is Open with options.
func OpenWithOptions(prefix string, opts Options) (*Dataset, error) {
	ix, err := ReadIndex(IdxPath(prefix), opts.Multimodal)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(BinPath(prefix))
	if err != nil {
		return nil, fmt.Errorf("indexed: open data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("indexed: stat %s: %w", BinPath(prefix), err)
	}
	size := st.Size()
	if err := ix.Validate(size); err != nil {
		return nil, fmt.Errorf("indexed: %s with %s: %w", IdxPath(prefix), BinPath(prefix), err)
	}
	d := &Dataset{prefix: prefix, ix: ix, size: size}
	if size > 0 { // mmap refuses empty files; an empty .bin simply has no tokens
		if size != int64(int(size)) {
			return nil, fmt.Errorf("indexed: %s: %d bytes do not fit the address space", BinPath(prefix), size)
		}
		d.bin, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("indexed: mmap %s: %w", BinPath(prefix), err)
		}
	}
	return d, nil
}

// Close unmaps the .bin. Slices returned by Raw become invalid.
func (d *Dataset) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if d.bin != nil {
		b := d.bin
		d.bin = nil
		if err := unix.Munmap(b); err != nil {
			return fmt.Errorf("indexed: munmap %s: %w", BinPath(d.prefix), err)
		}
	}
	return nil
}

// Prefix is the path prefix the dataset was opened with.
func (d *Dataset) Prefix() string { return d.prefix }

// Index returns the decoded .idx (shared, do not modify).
func (d *Dataset) Index() *Index { return d.ix }

// DType is the token dtype of the .bin.
func (d *Dataset) DType() DTypeCode { return d.ix.DType }

// NumSequences is sequence_count (len(IndexedDataset) in Megatron).
func (d *Dataset) NumSequences() int { return len(d.ix.SequenceLengths) }

// NumDocuments is document_count - 1.
func (d *Dataset) NumDocuments() int { return len(d.ix.DocumentIndices) - 1 }

// NumTokens is the sum of the sequence lengths.
func (d *Dataset) NumTokens() int64 {
	var t int64
	for _, n := range d.ix.SequenceLengths {
		t += int64(n)
	}
	return t
}

// SequenceLengths returns the sequence_lengths array (shared, do not modify).
func (d *Dataset) SequenceLengths() []int32 { return d.ix.SequenceLengths }

// SequencePointers returns the sequence_pointers array in bytes (shared, do not modify).
func (d *Dataset) SequencePointers() []int64 { return d.ix.SequencePointers }

// DocumentIndices returns the document_indices array (shared, do not modify).
func (d *Dataset) DocumentIndices() []int64 { return d.ix.DocumentIndices }

// SequenceModes returns the multimodal modes, or nil.
func (d *Dataset) SequenceModes() []int8 { return d.ix.SequenceModes }

var errClosed = errors.New("indexed: dataset is closed")

// Raw returns the bytes of tokens [offset, offset+length) of sequence i, a view of the mmap
// valid until Close. length < 0 means to the end of the sequence (Megatron's length=None).
func (d *Dataset) Raw(i, offset, length int) ([]byte, error) {
	if d.closed {
		return nil, errClosed
	}
	if i < 0 || i >= len(d.ix.SequenceLengths) {
		return nil, fmt.Errorf("indexed: %s: sequence %d out of range [0, %d)", d.prefix, i, len(d.ix.SequenceLengths))
	}
	n := int(d.ix.SequenceLengths[i])
	if length < 0 {
		length = n - offset
	}
	if offset < 0 || length < 0 || offset > n || length > n-offset {
		return nil, fmt.Errorf("indexed: %s: tokens [%d, %d+%d) out of range of sequence %d (%d tokens)", d.prefix, offset, offset, length, i, n)
	}
	sz := d.ix.DType.Size()
	p := d.ix.SequencePointers[i] + int64(offset*sz)
	return d.bin[p : p+int64(length*sz) : p+int64(length*sz)], nil
}

// Get returns tokens [offset, offset+length) of sequence i widened to int64 (Megatron's
// IndexedDataset.get(idx, offset, length); length < 0 means to the end). Float tokens are
// truncated toward zero.
func (d *Dataset) Get(i, offset, length int) ([]int64, error) {
	return d.AppendTokens(nil, i, offset, length)
}

// Sequence returns all tokens of sequence i (Megatron's IndexedDataset[i]).
func (d *Dataset) Sequence(i int) ([]int64, error) { return d.AppendTokens(nil, i, 0, -1) }

// AppendTokens appends tokens [offset, offset+length) of sequence i to dst as int64.
func (d *Dataset) AppendTokens(dst []int64, i, offset, length int) ([]int64, error) {
	raw, err := d.Raw(i, offset, length)
	if err != nil {
		return dst, err
	}
	n := len(raw) / d.ix.DType.Size()
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	decodeInt64(dst[start:], raw, d.ix.DType)
	return dst, nil
}

// GetInto writes tokens [offset, offset+length) of sequence i into dst as int32 and returns
// how many it wrote (length < 0 means to the end; dst must be long enough). This is the fast
// path for uint16/int32 token files; int64, uint32-range or float tokens that do not fit an
// int32 give an error.
func (d *Dataset) GetInto(dst []int32, i, offset, length int) (int, error) {
	raw, err := d.Raw(i, offset, length)
	if err != nil {
		return 0, err
	}
	n := len(raw) / d.ix.DType.Size()
	if len(dst) < n {
		return 0, fmt.Errorf("indexed: %s: GetInto destination holds %d tokens, sequence %d needs %d", d.prefix, len(dst), i, n)
	}
	dst = dst[:n]
	switch d.ix.DType {
	case Uint16:
		for k := range dst {
			dst[k] = int32(binary.LittleEndian.Uint16(raw[2*k:]))
		}
	case Int32:
		for k := range dst {
			dst[k] = int32(binary.LittleEndian.Uint32(raw[4*k:]))
		}
	case Uint8:
		for k := range dst {
			dst[k] = int32(raw[k])
		}
	case Int8:
		for k := range dst {
			dst[k] = int32(int8(raw[k]))
		}
	case Int16:
		for k := range dst {
			dst[k] = int32(int16(binary.LittleEndian.Uint16(raw[2*k:])))
		}
	default:
		tmp := make([]int64, n)
		decodeInt64(tmp, raw, d.ix.DType)
		for k, v := range tmp {
			if v != int64(int32(v)) {
				return 0, fmt.Errorf("indexed: %s: sequence %d token %d = %d does not fit int32", d.prefix, i, offset+k, v)
			}
			dst[k] = int32(v)
		}
	}
	return n, nil
}

// Document returns the tokens of document doc: its sequences concatenated.
func (d *Dataset) Document(doc int) ([]int64, error) {
	di := d.ix.DocumentIndices
	if doc < 0 || doc >= len(di)-1 {
		return nil, fmt.Errorf("indexed: %s: document %d out of range [0, %d)", d.prefix, doc, len(di)-1)
	}
	var out []int64
	var err error
	for s := di[doc]; s < di[doc+1]; s++ {
		if out, err = d.AppendTokens(out, int(s), 0, -1); err != nil {
			return nil, err
		}
	}
	if out == nil {
		out = []int64{}
	}
	return out, nil
}

// decodeInt64 widens little-endian tokens of dtype dt from raw into dst (len(dst) tokens).
func decodeInt64(dst []int64, raw []byte, dt DTypeCode) {
	le := binary.LittleEndian
	switch dt {
	case Uint8:
		for k := range dst {
			dst[k] = int64(raw[k])
		}
	case Int8:
		for k := range dst {
			dst[k] = int64(int8(raw[k]))
		}
	case Int16:
		for k := range dst {
			dst[k] = int64(int16(le.Uint16(raw[2*k:])))
		}
	case Uint16:
		for k := range dst {
			dst[k] = int64(le.Uint16(raw[2*k:]))
		}
	case Int32:
		for k := range dst {
			dst[k] = int64(int32(le.Uint32(raw[4*k:])))
		}
	case Int64:
		for k := range dst {
			dst[k] = int64(le.Uint64(raw[8*k:]))
		}
	case Float32:
		for k := range dst {
			dst[k] = int64(math.Float32frombits(le.Uint32(raw[4*k:])))
		}
	case Float64:
		for k := range dst {
			dst[k] = int64(math.Float64frombits(le.Uint64(raw[8*k:])))
		}
	}
}
