package torchpickle

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"github.com/gomegatron/gomegatron/tensor"
)

// LazyTensor is a host tensor whose bytes are produced only when its storage entry is
// written, so that a checkpoint far larger than memory can be saved one tensor at a time
// (tools/convert writes a whole 7B model as one shard this way). It may appear anywhere a
// *tensor.Tensor may in a value given to SaveStream, and is pickled exactly as a
// contiguous tensor of that dtype and shape with its own storage: a file written with
// lazy tensors is byte-identical to Save's with the materialised tensors.
//
// The archive is written in order: data.pkl first (it needs only dtypes, shapes and
// storage keys), then each storage entry, in torch's string-sorted key order, by calling
// Fill once. The same *LazyTensor appearing twice is one tensor (pickle memo), as the
// same *tensor.Tensor is.
type LazyTensor struct {
	// Name labels the tensor in errors (e.g. the parameter's name); optional.
	Name  string
	DType tensor.DType
	Shape []int
	// Fill writes the tensor's numel·DType.Size() bytes, row-major, little-endian (the
	// layout of tensor.Tensor.Data). Writing more or fewer bytes is an error naming the
	// tensor, and the file is not created.
	Fill func(w io.Writer) error
}

// bytes is the storage size numel·size.
func (l *LazyTensor) bytes() int64 {
	n := int64(l.DType.Size())
	for _, s := range l.Shape {
		n *= int64(s)
	}
	return n
}

// label names the tensor in errors: its Name and archive entry.
func (l *LazyTensor) label(entry string) string {
	if l.Name == "" {
		return "tensor " + entry
	}
	return fmt.Sprintf("tensor %s (%s)", l.Name, entry)
}

// lazyTensor pickles l as tensor() pickles a tensor with a storage of its own.
func (p *pickler) lazyTensor(l *LazyTensor) error {
	if p.get(l) {
		return nil
	}
	name := l.Name
	if name == "" {
		name = "lazy tensor"
	}
	cls, ok := storageClass(l.DType)
	if !ok {
		return fmt.Errorf("%s: dtype %v has no torch storage class", name, l.DType)
	}
	for _, s := range l.Shape {
		if s < 0 {
			return fmt.Errorf("%s: negative dimension in shape %v", name, l.Shape)
		}
	}
	if l.Fill == nil {
		return fmt.Errorf("%s: no Fill function", name)
	}
	st := &outStorage{key: strconv.Itoa(len(p.storages)), dt: l.DType, numel: l.bytes() / int64(l.DType.Size()), lazy: l}
	p.storages = append(p.storages, st)
	p.rebuildTensor(cls, st, l.Shape)
	p.put(l)
	return nil
}

// crcPatch is a local header's CRC-32 field (at file offset off) that writeZipLazy wrote
// as 0 because the entry was streamed; writePatched fills it in once the file is flushed.
type crcPatch struct {
	off uint64
	crc uint32
}

// fillWriter passes at most want bytes on to w, computing their CRC-32.
type fillWriter struct {
	w        io.Writer
	crc      hash.Hash32
	n, want  int64
	overflow bool
	writeErr error
}

func (f *fillWriter) Write(b []byte) (int, error) {
	if f.n+int64(len(b)) > f.want {
		f.overflow = true
		return 0, fmt.Errorf("Fill wrote more than the %d bytes of the tensor", f.want)
	}
	n, err := f.w.Write(b)
	f.crc.Write(b[:n])
	f.n += int64(n)
	if err != nil {
		f.writeErr = err
	}
	return n, err
}

// stream calls Fill into w and returns the CRC-32 of what it wrote, checking that it
// wrote exactly the tensor's size.
func (l *LazyTensor) stream(w io.Writer, entry string) (uint32, error) {
	fw := &fillWriter{w: w, crc: crc32.NewIEEE(), want: l.bytes()}
	err := l.Fill(fw)
	switch {
	case fw.writeErr != nil:
		return 0, fw.writeErr
	case fw.overflow:
		return 0, fmt.Errorf("%s: Fill wrote more than %d bytes (%v%v)", l.label(entry), fw.want, l.DType, l.Shape)
	case err != nil:
		return 0, fmt.Errorf("%s: %w", l.label(entry), err)
	case fw.n != fw.want:
		return 0, fmt.Errorf("%s: Fill wrote %d bytes, %v%v needs %d", l.label(entry), fw.n, l.DType, l.Shape, fw.want)
	}
	return fw.crc.Sum32(), nil
}

// SaveStream writes v as Save does (same bytes), except that *LazyTensor values are
// allowed: their bytes are produced by Fill while the file is written, so memory holds
// the pickle and whatever one Fill needs, not the checkpoint. torch's PyTorchStreamWriter
// puts each stored entry's CRC-32 in its local header (no data descriptor); torch.load and
// Python's zipfile read the CRC from the central directory, but to stay byte-identical to
// Save (and to stricter zip readers) each streamed entry's CRC is patched into its local
// header once the file is flushed, before it is fsynced and renamed into place. On any
// error (a Fill's included) no file is left and an existing file is untouched.
func SaveStream(path string, v any) error {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if name == "" {
		name = "archive"
	}
	recs, lazies, err := archive(name, v)
	if err == nil {
		err = writePatched(path, func(w io.Writer) ([]crcPatch, error) { return writeZipLazy(w, recs, lazies) })
	}
	if err != nil {
		return fmt.Errorf("torchpickle: writing %s: %w", path, err)
	}
	return nil
}

// writePatched is atomicfile.Write for a file whose CRC fields are patched in place once
// it is written.
func writePatched(path string, fill func(w io.Writer) ([]crcPatch, error)) error {
	var patches []crcPatch
	return atomicfile.WritePatched(path, func(w *bufio.Writer) (err error) {
		patches, err = fill(w)
		return err
	}, func(f *os.File) error {
		for _, p := range patches {
			if _, err := f.WriteAt(binary.LittleEndian.AppendUint32(nil, p.crc), int64(p.off)); err != nil {
				return err
			}
		}
		return nil
	})
}
