package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/gomegatron/gomegatron/tensor"
)

// File is an open safetensors file. Tensors it returns are views of the file's
// memory map and stay valid until Close.
type File struct {
	path   string
	data   []byte // the whole file (mapped or read)
	unmap  func() error
	base   int64 // offset of the data section: 8 + header length
	infos  []Info
	byName map[string]int
	meta   map[string]string
	closed bool
}

// Open maps path into memory and validates its header: the header length lies within
// the file, the header is a JSON object, every dtype is known, every shape matches its
// byte range, and ranges lie inside the data section without overlapping. Errors name
// the file and, where one is at fault, the tensor.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	sf := &File{path: path}
	if b, unmap, ok := mapFile(f, size); ok {
		sf.data, sf.unmap = b, unmap
	} else {
		b := make([]byte, size)
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, fmt.Errorf("safetensors: reading %s: %w", path, err)
		}
		sf.data = b
	}
	if err := sf.parse(); err != nil {
		sf.Close()
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	return sf, nil
}

func (f *File) parse() error {
	size := int64(len(f.data))
	if size < 8 {
		return fmt.Errorf("file is %d bytes, too short for the 8-byte header length", size)
	}
	n := binary.LittleEndian.Uint64(f.data[:8])
	if n > maxHeaderSize {
		return fmt.Errorf("header length %d exceeds the %d-byte limit", n, maxHeaderSize)
	}
	if int64(n) > size-8 {
		return fmt.Errorf("header length %d runs past the end of the %d-byte file", n, size)
	}
	f.base = 8 + int64(n)
	infos, meta, err := parseHeader(f.data[8:f.base], size-f.base)
	if err != nil {
		return err
	}
	f.infos, f.meta = infos, meta
	f.byName = make(map[string]int, len(infos))
	for i, in := range infos {
		f.byName[in.Name] = i
	}
	return nil
}

// Path returns the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in data-offset order (the order the writer laid
// them out, which is also the header's order for files the Rust writer produced).
func (f *File) Names() []string {
	names := make([]string, len(f.infos))
	for i, in := range f.infos {
		names[i] = in.Name
	}
	return names
}

// Infos returns every tensor's header entry in data-offset order.
func (f *File) Infos() []Info {
	out := make([]Info, len(f.infos))
	copy(out, f.infos)
	return out
}

// Info returns the header entry of one tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.byName[name]
	if !ok {
		return Info{}, false
	}
	return f.infos[i], true
}

// Metadata returns the "__metadata__" map, nil when the file has none.
func (f *File) Metadata() map[string]string { return f.meta }

// Tensor returns the named tensor as a host tensor viewing the file's memory (no
// copy). A tensor whose bytes are not aligned to its element size (possible only in
// files not written by a safetensors writer) is copied so typed accessors are safe.
// Writes into the view never reach the file (the map is copy-on-write).
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	if f.closed {
		return nil, fmt.Errorf("safetensors: %s: tensor %q requested after Close", f.path, name)
	}
	i, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.path, name)
	}
	in := f.infos[i]
	b := f.data[f.base+in.Begin : f.base+in.End : f.base+in.End]
	if len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%uintptr(in.DType.Size()) != 0 {
		b = append([]byte(nil), b...)
	}
	t, err := tensor.FromBytes(in.DType, in.Shape, b)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return t, nil
}

// Close releases the memory map. Tensors obtained from f must not be used afterwards.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	var err error
	if f.unmap != nil {
		err = f.unmap()
		f.unmap = nil
	}
	f.data = nil
	if err != nil {
		return fmt.Errorf("safetensors: unmapping %s: %w", f.path, err)
	}
	return nil
}
