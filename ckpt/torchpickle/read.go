package torchpickle

import (
	"archive/zip"
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"unsafe"

	"github.com/gomegatron/gomegatron/tensor"
)

// storage is a torch storage resolved from the archive: its element type and bytes.
type storage struct {
	dt   tensor.DType
	key  string
	data []byte
}

// Load reads a torch.save file (zip format) into memory and unpickles it. Tensors are
// views of that one buffer (no per-tensor copy) and stay valid as long as they are
// referenced.
func Load(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("torchpickle: %w", err)
	}
	v, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("torchpickle: %s: %w", path, err)
	}
	return v, nil
}

// File is a torch.save file opened through a memory map: Value's tensors view the
// map and must not be used after Close.
type File struct {
	Path  string
	Value any
	unmap func() error
}

// Open maps path and unpickles it; tensors are zero-copy views of the file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torchpickle: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("torchpickle: %w", err)
	}
	data, unmap, ok := mapFile(f, st.Size())
	if !ok {
		data = make([]byte, st.Size())
		if _, err := io.ReadFull(f, data); err != nil {
			return nil, fmt.Errorf("torchpickle: reading %s: %w", path, err)
		}
		unmap = func() error { return nil }
	}
	v, err := Decode(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("torchpickle: %s: %w", path, err)
	}
	return &File{Path: path, Value: v, unmap: unmap}, nil
}

// Close releases the memory map.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.Value = nil, nil
	return err
}

// Decode unpickles an in-memory torch.save file: the zip format of torch ≥ 1.6, whose
// stored (uncompressed) storage entries become zero-copy views of data, or the legacy
// pre-1.6 format (see decodeLegacy).
func Decode(data []byte) (any, error) {
	if len(data) >= 2 && data[0] == opProto && data[1] <= 5 {
		v, err := decodeLegacy(data)
		if err != nil {
			return nil, fmt.Errorf("legacy (torch < 1.6) non-zip format: %w", err)
		}
		return v, nil
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("not a torch.save zip archive: %w", err)
	}
	var pkl *zip.File
	records := map[string]*zip.File{}
	for _, f := range zr.File {
		records[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("archive has two data.pkl entries (%s, %s)", pkl.Name, f.Name)
			}
			pkl = f
		}
	}
	if pkl == nil {
		if _, ok := records["constants.pkl"]; ok {
			return nil, fmt.Errorf("TorchScript archives are not supported")
		}
		return nil, fmt.Errorf("archive has no <name>/data.pkl entry")
	}
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl")
	pb, err := readEntry(data, pkl)
	if err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(pb) != pkl.CRC32 {
		return nil, fmt.Errorf("entry %s: CRC-32 mismatch (file corrupted)", pkl.Name)
	}
	storages := map[string]*storage{}
	load := func(pid any) (any, error) {
		return loadStorage(pid, storages, func(key string) ([]byte, error) {
			name := prefix + "data/" + key
			f, ok := records[name]
			if !ok {
				return nil, fmt.Errorf("storage %q: archive has no entry %s", key, name)
			}
			return readEntry(data, f)
		})
	}
	v, err := unpickle(pb, load)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkl.Name, err)
	}
	return v, nil
}

// Unpickle runs a plain pickle (no persistent ids, so no torch storages) through the
// same restricted machine.
func Unpickle(pkl []byte) (any, error) { return unpickle(pkl, nil) }

// readEntry returns a stored entry's bytes as a view of data, or decompresses it.
func readEntry(data []byte, f *zip.File) ([]byte, error) {
	if f.Method == zip.Store && f.CompressedSize64 == f.UncompressedSize64 {
		off, err := f.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", f.Name, err)
		}
		end := off + int64(f.UncompressedSize64)
		if off < 0 || end > int64(len(data)) || end < off {
			return nil, fmt.Errorf("entry %s: data [%d,%d) runs past the %d-byte file", f.Name, off, end, len(data))
		}
		return data[off:end:end], nil
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", f.Name, err)
	}
	return b, nil
}

// loadStorage resolves the persistent id ('storage', torch.<T>Storage, key, location,
// numel) that torch.save writes for each storage; each key is loaded once so tensors
// that share a storage share bytes.
func loadStorage(pid any, cache map[string]*storage, get func(string) ([]byte, error)) (any, error) {
	t, ok := pid.(Tuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id %v is not ('storage', type, key, location, numel)", pid)
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, fmt.Errorf("persistent id kind %v is not 'storage'", t[0])
	}
	cls, ok := t[1].(Global)
	if !ok {
		return nil, fmt.Errorf("storage type is %s, not a storage class", typeName(t[1]))
	}
	dt, ok := storageDTypes[cls.Name]
	if !ok || cls.Module != "torch" {
		return nil, fmt.Errorf("storage class %s is not supported", cls)
	}
	key, ok := t[2].(string)
	if !ok {
		return nil, fmt.Errorf("storage key is %s", typeName(t[2]))
	}
	numel, ok := AsInt64(t[4])
	if !ok || numel < 0 {
		return nil, fmt.Errorf("storage %q: numel %v", key, t[4])
	}
	if s, ok := cache[key]; ok {
		if s.dt != dt {
			return nil, fmt.Errorf("storage %q used as both %v and %v", key, s.dt, dt)
		}
		return s, nil
	}
	b, err := get(key)
	if err != nil {
		return nil, err
	}
	if want := numel * int64(dt.Size()); int64(len(b)) != want {
		return nil, fmt.Errorf("storage %q: %s of %d elements needs %d bytes, entry has %d", key, cls, numel, want, len(b))
	}
	s := &storage{dt: dt, key: key, data: b}
	cache[key] = s
	return s, nil
}

// rebuildTensor implements torch._utils._rebuild_tensor_v2(storage, storage_offset,
// size, stride, requires_grad, backward_hooks[, metadata]). A C-contiguous tensor is
// a view of the storage bytes; any other stride pattern is gathered into a fresh
// contiguous tensor (element [i0,i1,..] = storage[offset + Σ ik·stride_k]).
func rebuildTensor(args Tuple) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 with %d arguments", len(args))
	}
	st, ok := args[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2 storage is %s", typeName(args[0]))
	}
	off, ok := AsInt64(args[1])
	if !ok || off < 0 {
		return nil, fmt.Errorf("tensor on storage %q: storage_offset %v", st.key, args[1])
	}
	size, err := intTuple(args[2])
	if err != nil {
		return nil, fmt.Errorf("tensor on storage %q: size: %w", st.key, err)
	}
	stride, err := intTuple(args[3])
	if err != nil {
		return nil, fmt.Errorf("tensor on storage %q: stride: %w", st.key, err)
	}
	if len(stride) != len(size) {
		return nil, fmt.Errorf("tensor on storage %q: size %v and stride %v differ in rank", st.key, size, stride)
	}
	isz := int64(st.dt.Size())
	snumel := int64(len(st.data)) / isz
	numel := int64(1)
	maxIdx := off
	for i, s := range size {
		if s < 0 || stride[i] < 0 {
			return nil, fmt.Errorf("tensor on storage %q: negative size %v or stride %v", st.key, size, stride)
		}
		numel *= s
		if s > 0 {
			maxIdx += (s - 1) * stride[i]
		}
	}
	shape := make([]int, len(size))
	for i, s := range size {
		shape[i] = int(s)
	}
	if numel == 0 {
		return tensor.New(st.dt, shape...), nil
	}
	if maxIdx >= snumel {
		return nil, fmt.Errorf("tensor %v with offset %d and stride %v reaches element %d of storage %q, which has %d",
			size, off, stride, maxIdx, st.key, snumel)
	}
	if contiguous(size, stride) {
		b := st.data[off*isz : (off+numel)*isz : (off+numel)*isz]
		if uintptr(unsafe.Pointer(&b[0]))%uintptr(isz) != 0 {
			b = append([]byte(nil), b...)
		}
		return tensor.FromBytes(st.dt, shape, b)
	}
	t := tensor.New(st.dt, shape...)
	gather(t.Data, st.data, off, size, stride, isz)
	return t, nil
}

func intTuple(v any) ([]int64, error) {
	var items []any
	switch x := v.(type) {
	case Tuple:
		items = x
	case *pyList:
		items = x.items
	default:
		return nil, fmt.Errorf("%s is not a tuple", typeName(v))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := AsInt64(it)
		if !ok {
			return nil, fmt.Errorf("element %d is %s", i, typeName(it))
		}
		out[i] = n
	}
	return out, nil
}

// contiguous reports whether stride is the C-order stride of size (dimensions of
// extent 1 may have any stride).
func contiguous(size, stride []int64) bool {
	want := int64(1)
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return false
		}
		want *= size[i]
	}
	return true
}

// gather copies a strided view into dst in C order.
func gather(dst, src []byte, off int64, size, stride []int64, isz int64) {
	idx := make([]int64, len(size))
	for o := int64(0); o < int64(len(dst))/isz; o++ {
		p := off
		for k, i := range idx {
			p += i * stride[k]
		}
		copy(dst[o*isz:(o+1)*isz], src[p*isz:(p+1)*isz])
		for k := len(idx) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < size[k] {
				break
			}
			idx[k] = 0
		}
	}
}
