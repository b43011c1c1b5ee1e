package indexed

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Builder writes a .bin/.idx pair exactly as Megatron's IndexedDatasetBuilder does. Tokens go
// to a temporary file beside the .bin; Finalize syncs and renames it to the .bin and then
// writes the .idx atomically, so readers never see a half-written pair. A Builder is not safe
// for concurrent use; after an error the Builder should be Aborted.
type Builder struct {
	binPath    string
	dtype      DTypeCode
	multimodal bool
	f          *os.File
	w          *bufio.Writer
	buf        []byte
	written    int64 // bytes of tokens written so far
	lengths    []int32
	docs       []int64
	modes      []int8
	done       bool
}

// NewBuilder starts a dataset whose tokens are stored as dtype (Megatron's
// IndexedDatasetBuilder(bin_path, dtype)).
func NewBuilder(binPath string, dtype DTypeCode) (*Builder, error) {
	return NewBuilderWithOptions(binPath, dtype, Options{})
}

// NewBuilderWithOptions is NewBuilder with options (Multimodal writes sequence_modes).
func NewBuilderWithOptions(binPath string, dtype DTypeCode, opts Options) (*Builder, error) {
	if !dtype.Valid() {
		return nil, fmt.Errorf("indexed: builder for %s: dtype code %d is not 1..8", binPath, uint8(dtype))
	}
	f, err := os.CreateTemp(filepath.Dir(binPath), "."+filepath.Base(binPath)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("indexed: builder: create temp for %s: %w", binPath, err)
	}
	return &Builder{
		binPath: binPath, dtype: dtype, multimodal: opts.Multimodal,
		f: f, w: bufio.NewWriterSize(f, 1<<20), docs: []int64{0},
	}, nil
}

// DType is the builder's token dtype.
func (b *Builder) DType() DTypeCode { return b.dtype }

// NumSequences is the number of sequences added so far.
func (b *Builder) NumSequences() int { return len(b.lengths) }

// NumDocuments is the number of documents ended so far.
func (b *Builder) NumDocuments() int { return len(b.docs) - 1 }

func (b *Builder) check() error {
	if b.done {
		return fmt.Errorf("indexed: builder for %s is already finalized or aborted", b.binPath)
	}
	return nil
}

// AddItem appends one sequence (Megatron's add_item). Tokens outside the dtype's range are an
// error (numpy would silently wrap them).
func (b *Builder) AddItem(tokens []int32) error { return b.addItem32(tokens, 0) }

// AddItemMode appends one sequence of a multimodal dataset with its mode.
func (b *Builder) AddItemMode(tokens []int32, mode int8) error { return b.addItem32(tokens, mode) }

func (b *Builder) addItem32(tokens []int32, mode int8) error {
	if err := b.writeTokens32(tokens); err != nil {
		return err
	}
	b.lengths = append(b.lengths, int32(len(tokens)))
	if b.multimodal {
		b.modes = append(b.modes, mode)
	}
	return nil
}

// AddItemInt64 appends one sequence given as int64 tokens (for int64/float datasets).
func (b *Builder) AddItemInt64(tokens []int64) error {
	if err := b.check(); err != nil {
		return err
	}
	if len(tokens) > math.MaxInt32 {
		return fmt.Errorf("indexed: %s: sequence of %d tokens exceeds int32 sequence_lengths", b.binPath, len(tokens))
	}
	b.buf = b.buf[:0]
	for k, v := range tokens {
		if !b.dtype.inRange(v) {
			return fmt.Errorf("indexed: %s: token %d (value %d) of sequence %d does not fit %s", b.binPath, k, v, len(b.lengths), b.dtype)
		}
		b.buf = appendToken(b.buf, b.dtype, v)
	}
	if err := b.write(b.buf); err != nil {
		return err
	}
	b.lengths = append(b.lengths, int32(len(tokens)))
	if b.multimodal {
		b.modes = append(b.modes, 0)
	}
	return nil
}

// EndDocument closes the current document (Megatron's end_document); with no sequence added
// since the last one it records an empty document.
func (b *Builder) EndDocument() { b.docs = append(b.docs, int64(len(b.lengths))) }

// AddDocument appends a whole document: tokens holds the concatenated sequences whose sizes
// are lengths (Megatron's add_document(tensor, lengths)). Modes, if non-nil, gives one mode
// per sequence for multimodal datasets.
func (b *Builder) AddDocument(tokens []int32, lengths []int, modes ...int8) error {
	total := 0
	for k, n := range lengths {
		if n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("indexed: %s: AddDocument lengths[%d] = %d is not a valid sequence length", b.binPath, k, n)
		}
		total += n
	}
	if total != len(tokens) {
		return fmt.Errorf("indexed: %s: AddDocument lengths sum to %d but %d tokens were given", b.binPath, total, len(tokens))
	}
	if b.multimodal && modes != nil && len(modes) != len(lengths) {
		return fmt.Errorf("indexed: %s: AddDocument has %d modes for %d sequences", b.binPath, len(modes), len(lengths))
	}
	if err := b.writeTokens32(tokens); err != nil {
		return err
	}
	for k, n := range lengths {
		b.lengths = append(b.lengths, int32(n))
		if b.multimodal {
			var m int8
			if modes != nil {
				m = modes[k]
			}
			b.modes = append(b.modes, m)
		}
	}
	b.EndDocument()
	return nil
}

func (b *Builder) writeTokens32(tokens []int32) error {
	if err := b.check(); err != nil {
		return err
	}
	b.buf = b.buf[:0]
	le := binary.LittleEndian
	switch b.dtype {
	case Int32: // fast paths for the two dtypes preprocessing uses
		for _, v := range tokens {
			b.buf = le.AppendUint32(b.buf, uint32(v))
		}
	case Uint16:
		for k, v := range tokens {
			if uint32(v) > 0xffff {
				return fmt.Errorf("indexed: %s: token %d (value %d) of sequence %d does not fit uint16", b.binPath, k, v, len(b.lengths))
			}
			b.buf = le.AppendUint16(b.buf, uint16(v))
		}
	default:
		for k, v := range tokens {
			if !b.dtype.inRange(int64(v)) {
				return fmt.Errorf("indexed: %s: token %d (value %d) of sequence %d does not fit %s", b.binPath, k, v, len(b.lengths), b.dtype)
			}
			b.buf = appendToken(b.buf, b.dtype, int64(v))
		}
	}
	return b.write(b.buf)
}

func (b *Builder) write(p []byte) error {
	if _, err := b.w.Write(p); err != nil {
		return fmt.Errorf("indexed: write %s: %w", b.binPath, err)
	}
	b.written += int64(len(p))
	return nil
}

func appendToken(buf []byte, dt DTypeCode, v int64) []byte {
	le := binary.LittleEndian
	switch dt {
	case Uint8, Int8:
		return append(buf, byte(v))
	case Int16, Uint16:
		return le.AppendUint16(buf, uint16(v))
	case Int32:
		return le.AppendUint32(buf, uint32(v))
	case Int64:
		return le.AppendUint64(buf, uint64(v))
	case Float32:
		return le.AppendUint32(buf, math.Float32bits(float32(v)))
	case Float64:
		return le.AppendUint64(buf, math.Float64bits(float64(v)))
	}
	return buf
}

// AddIndex appends the whole dataset at prefix (Megatron's add_index): its sequence lengths,
// its document boundaries shifted by the current sequence count (without its leading 0), its
// modes, and a byte copy of its .bin. The dtypes must match, and the .bin must be exactly the
// tokens the .idx describes, since the merged pointers are recomputed from the lengths.
func (b *Builder) AddIndex(prefix string) error {
	if err := b.check(); err != nil {
		return err
	}
	ix, err := ReadIndex(IdxPath(prefix), b.multimodal)
	if err != nil {
		return fmt.Errorf("indexed: AddIndex: %w", err)
	}
	if ix.DType != b.dtype {
		return fmt.Errorf("indexed: AddIndex: %s has dtype %s, builder %s has %s", IdxPath(prefix), ix.DType, b.binPath, b.dtype)
	}
	f, err := os.Open(BinPath(prefix))
	if err != nil {
		return fmt.Errorf("indexed: AddIndex: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("indexed: AddIndex: stat %s: %w", BinPath(prefix), err)
	}
	var want int64
	for _, n := range ix.SequenceLengths {
		want += int64(n) * int64(ix.DType.Size())
	}
	if st.Size() != want {
		return fmt.Errorf("indexed: AddIndex: %s is %d bytes but %s describes %d bytes of tokens", BinPath(prefix), st.Size(), IdxPath(prefix), want)
	}
	if err := ix.Validate(st.Size()); err != nil {
		return fmt.Errorf("indexed: AddIndex: %s: %w", IdxPath(prefix), err)
	}
	n, err := io.Copy(b.w, f)
	b.written += n
	if err != nil {
		return fmt.Errorf("indexed: AddIndex: copy %s into %s: %w", BinPath(prefix), b.binPath, err)
	}
	off := int64(len(b.lengths))
	b.lengths = append(b.lengths, ix.SequenceLengths...)
	for _, v := range ix.DocumentIndices[1:] {
		b.docs = append(b.docs, off+v)
	}
	if b.multimodal {
		if ix.SequenceModes != nil {
			b.modes = append(b.modes, ix.SequenceModes...)
		} else {
			b.modes = append(b.modes, make([]int8, len(ix.SequenceLengths))...)
		}
	}
	return nil
}

// Index returns the .idx content Finalize would write now.
func (b *Builder) Index() *Index {
	ix := &Index{DType: b.dtype, SequenceLengths: b.lengths, SequencePointers: Pointers(b.lengths, b.dtype), DocumentIndices: b.docs}
	if b.multimodal {
		ix.SequenceModes = b.modes
		if ix.SequenceModes == nil {
			ix.SequenceModes = []int8{}
		}
	}
	return ix
}

// Finalize flushes, fsyncs and renames the .bin into place, then writes idxPath atomically
// (Megatron's finalize(idx_path)). Megatron does not require the last document to be ended and
// neither does this; a trailing sequence outside any document makes the .idx unreadable,
// so it is reported as an error.
func (b *Builder) Finalize(idxPath string) error {
	if err := b.check(); err != nil {
		return err
	}
	ix := b.Index()
	if last := ix.DocumentIndices[len(ix.DocumentIndices)-1]; last != int64(len(ix.SequenceLengths)) {
		b.Abort()
		return fmt.Errorf("indexed: finalize %s: %d sequences were added after the last EndDocument", idxPath, int64(len(ix.SequenceLengths))-last)
	}
	if err := b.w.Flush(); err != nil {
		b.Abort()
		return fmt.Errorf("indexed: write %s: %w", b.binPath, err)
	}
	b.done = true
	b.w = nil
	if err := commitTemp(b.f, b.binPath); err != nil {
		return err
	}
	return WriteFileAtomic(idxPath, ix.Encode())
}

// Abort discards everything written; the .bin and .idx are left untouched.
func (b *Builder) Abort() error {
	if b.w == nil {
		return nil
	}
	b.done = true
	name := b.f.Name()
	b.f.Close()
	b.w = nil
	if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("indexed: abort %s: %w", b.binPath, err)
	}
	return nil
}
