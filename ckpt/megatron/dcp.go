package megatron

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// A PyTorch distributed checkpoint (torch.distributed.checkpoint, "DCP") folder, the
// storage under Megatron's torch_dist format:
//
//	.metadata          a pickled Metadata: for every key its global shape, dtype and
//	                   chunks (offsets, sizes), and for every chunk or byte object
//	                   MetadataIndex(fqn, offset) → _StorageInfo(relative_path, offset, length)
//	__R_N.distcp       rank R's data, written by N threads: each tensor chunk is a whole
//	                   torch.save archive at its byte offset, each byte object raw bytes
//
// Chunks of one key never overlap; together they cover its global shape.

// dcpMetadataFile is DCP's metadata file name.
const dcpMetadataFile = ".metadata"

// dcpPiece locates one stored item.
type dcpPiece struct {
	file         string
	start, count int64
}

// dcpChunk is one stored box of a tensor.
type dcpChunk struct {
	off, size []int
	dcpPiece
}

// dcpTensor is a global tensor: its shape, element type and stored chunks.
type dcpTensor struct {
	size   []int
	dtype  tensor.DType
	chunks []dcpChunk
}

// dcpReader reads a DCP folder. Its .distcp files are memory-mapped on first use.
type dcpReader struct {
	dir     string
	tensors map[string]*dcpTensor
	objects map[string]dcpPiece // byte objects (io.BytesIO values) by key
	files   map[string]*mappedBytes
}

// mappedBytes is a memory-mapped (or read) file.
type mappedBytes struct {
	data  []byte
	unmap func() error
	dirty bool // mapped: drop pages after use
}

// openDCP reads dir/.metadata and checks it: every chunk stored, inside its tensor, the
// chunks covering the tensor, every file present and long enough.
func openDCP(dir string) (*dcpReader, error) {
	path := filepath.Join(dir, dcpMetadataFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("megatron: %w", err)
	}
	v, err := torchpickle.Unpickle(raw)
	if err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", path, err)
	}
	r := &dcpReader{dir: dir, tensors: map[string]*dcpTensor{}, objects: map[string]dcpPiece{}, files: map[string]*mappedBytes{}}
	if err := r.parse(v); err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", path, err)
	}
	sizes := map[string]int64{}
	for _, p := range r.pieces() {
		n, ok := sizes[p.file]
		if !ok {
			st, err := os.Stat(filepath.Join(dir, p.file))
			if err != nil {
				return nil, fmt.Errorf("megatron: %s lists data in %s: %w", path, p.file, err)
			}
			n = st.Size()
			sizes[p.file] = n
		}
		if p.start < 0 || p.count < 0 || p.start+p.count > n {
			return nil, fmt.Errorf("megatron: %s: an item at bytes [%d, %d) of %s lies past its end (%d bytes; truncated?)", path, p.start, p.start+p.count, p.file, n)
		}
	}
	return r, nil
}

// pieces lists every stored item.
func (r *dcpReader) pieces() []dcpPiece {
	var out []dcpPiece
	for _, t := range r.tensors {
		for _, c := range t.chunks {
			out = append(out, c.dcpPiece)
		}
	}
	for _, p := range r.objects {
		out = append(out, p)
	}
	return out
}

// parse reads the unpickled Metadata.
func (r *dcpReader) parse(v any) error {
	md, err := objState(v, "torch.distributed.checkpoint.metadata.Metadata")
	if err != nil {
		return err
	}
	sdm, ok1 := fieldDict(md, "state_dict_metadata")
	sd, ok2 := fieldDict(md, "storage_data")
	if !ok1 || !ok2 {
		return fmt.Errorf("Metadata lacks state_dict_metadata or storage_data")
	}
	// storage_data: MetadataIndex(fqn, offset) → _StorageInfo.
	where := map[string]dcpPiece{}
	for i, k := range sd.Keys {
		idx, err := objState(k, "torch.distributed.checkpoint.metadata.MetadataIndex")
		if err != nil {
			return fmt.Errorf("storage_data key: %w", err)
		}
		fqn, _ := fieldGet(idx, "fqn")
		name, ok := fqn.(string)
		if !ok {
			return fmt.Errorf("storage_data key has fqn %v", fqn)
		}
		off, _ := fieldGet(idx, "offset")
		info, err := objState(sd.Values[i], "torch.distributed.checkpoint.filesystem._StorageInfo")
		if err != nil {
			return fmt.Errorf("storage_data[%s]: %w", name, err)
		}
		rel, _ := fieldGet(info, "relative_path")
		file, ok := rel.(string)
		if !ok || file == "" || filepath.Base(file) != file {
			return fmt.Errorf("storage_data[%s]: relative_path %v is not a file name in the folder", name, rel)
		}
		if td, _ := fieldGet(info, "transform_descriptors"); td != nil {
			if l, ok := td.([]any); !ok || len(l) > 0 {
				return fmt.Errorf("storage_data[%s]: transformed (e.g. compressed) items are not supported", name)
			}
		}
		start, ok1 := fieldInt(info, "offset")
		count, ok2 := fieldInt(info, "length")
		if !ok1 || !ok2 {
			return fmt.Errorf("storage_data[%s]: no offset or length", name)
		}
		where[indexKey(name, off)] = dcpPiece{file, start, count}
	}
	for i, k := range sdm.Keys {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("state_dict_metadata key %v is not a string", k)
		}
		o, ok := sdm.Values[i].(*torchpickle.Object)
		if !ok {
			return fmt.Errorf("state_dict_metadata[%s] is %T", name, sdm.Values[i])
		}
		switch o.Class.Name {
		case "BytesStorageMetadata":
			p, ok := where[indexKey(name, nil)]
			if !ok {
				return fmt.Errorf("byte object %s is not stored in any file", name)
			}
			r.objects[name] = p
		case "TensorStorageMetadata":
			t, err := parseTensorMeta(o, name, where)
			if err != nil {
				return err
			}
			r.tensors[name] = t
		default:
			return fmt.Errorf("state_dict_metadata[%s] is a %s", name, o.Class)
		}
	}
	return nil
}

// parseTensorMeta reads a TensorStorageMetadata and its chunks' locations.
func parseTensorMeta(o *torchpickle.Object, name string, where map[string]dcpPiece) (*dcpTensor, error) {
	st, _ := stateDict(o)
	t := &dcpTensor{}
	size, _ := fieldGet(st, "size")
	var err error
	if t.size, err = ints(size); err != nil {
		return nil, fmt.Errorf("%s: size: %w", name, err)
	}
	props, _ := fieldGet(st, "properties")
	po, ok := props.(*torchpickle.Object)
	if !ok {
		return nil, fmt.Errorf("%s: no TensorProperties", name)
	}
	// TensorProperties pickles as the tuple (dtype, layout, requires_grad,
	// memory_format, pin_memory); older versions as a field dict.
	switch s := po.State.(type) {
	case torchpickle.Tuple:
		if len(s) > 0 {
			t.dtype, _ = s[0].(tensor.DType)
		}
	case *torchpickle.Dict:
		dt, _ := s.Get("dtype")
		t.dtype, _ = dt.(tensor.DType)
	}
	if t.dtype == tensor.Invalid {
		return nil, fmt.Errorf("%s: no dtype in its TensorProperties", name)
	}
	cl, _ := fieldGet(st, "chunks")
	list, ok := cl.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: chunks are %T", name, cl)
	}
	total, covered := 1, 0
	for _, n := range t.size {
		total *= n
	}
	for _, c := range list {
		cs, err := objState(c, "torch.distributed.checkpoint.metadata.ChunkStorageMetadata")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		offv, _ := fieldGet(cs, "offsets")
		szv, _ := fieldGet(cs, "sizes")
		off, err1 := ints(offv)
		sz, err2 := ints(szv)
		if err1 != nil || err2 != nil || len(off) != len(t.size) || len(sz) != len(t.size) {
			return nil, fmt.Errorf("%s: chunk offsets %v and sizes %v do not fit its shape %v", name, offv, szv, t.size)
		}
		vol := 1
		for d := range off {
			if off[d] < 0 || sz[d] < 0 || off[d]+sz[d] > t.size[d] {
				return nil, fmt.Errorf("%s: chunk at %v of size %v lies outside its shape %v", name, off, sz, t.size)
			}
			vol *= sz[d]
		}
		p, ok := where[indexKey(name, offv)]
		if !ok {
			return nil, fmt.Errorf("%s: the chunk at %v is not stored in any file", name, off)
		}
		covered += vol
		t.chunks = append(t.chunks, dcpChunk{off, sz, p})
	}
	if covered != total {
		return nil, fmt.Errorf("%s: its chunks hold %d of its %d elements (a rank's data missing?)", name, covered, total)
	}
	return t, nil
}

// indexKey is a MetadataIndex as a map key: the name and the chunk offsets, if any.
func indexKey(fqn string, offset any) string {
	if offset == nil {
		return fqn
	}
	o, err := ints(offset)
	if err != nil {
		return fqn + "?"
	}
	return fmt.Sprint(fqn, o)
}

// region returns the box [off, off+size) of tensor name as float32 values (row-major).
// Only the chunks the box meets are decoded; their pages are dropped afterwards.
func (r *dcpReader) region(name string, off, size []int) ([]float32, error) {
	t, ok := r.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s has no tensor %s", r.dir, name)
	}
	n := 1
	for _, s := range size {
		n *= s
	}
	out := make([]float32, n)
	got := 0
	for _, c := range t.chunks {
		lo, hi := make([]int, len(off)), make([]int, len(off))
		empty := false
		for d := range off {
			lo[d], hi[d] = max(off[d], c.off[d]), min(off[d]+size[d], c.off[d]+c.size[d])
			empty = empty || lo[d] >= hi[d]
		}
		if empty {
			continue
		}
		vals, err := r.chunk(name, t, c)
		if err != nil {
			return nil, err
		}
		got += copyBox(out, size, off, vals, c.size, c.off, lo, hi)
	}
	if got != n {
		return nil, fmt.Errorf("%s: %s: the stored chunks hold %d of the %d elements at %v+%v", r.dir, name, got, n, off, size)
	}
	return out, nil
}

// stateRegion is region for an optimizer state stored beside a model tensor of global
// shape: stored with that shape (Megatron's non-distributed optimizers), or flattened by
// the distributed optimizer (fully_sharded_model_space).
//
// The flattened form (Megatron-Core's N-D flattened ShardedTensor) cuts the model tensor
// into its local blocks, a regular grid of F_d blocks of size l_d = shape_d/F_d along each
// axis, and stores the state as [F_0, …, F_{n-1}, ∏l_d]: the last axis is each block's
// values in row-major order, in chunks over any ranges of it (one per data-parallel rank
// that owned a range).
func (r *dcpReader) stateRegion(name string, shape, off, size []int) ([]float32, error) {
	t, ok := r.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s has no tensor %s", r.dir, name)
	}
	if tensor.SameShape(t.size, shape) {
		return r.region(name, off, size)
	}
	nd := len(shape)
	if len(t.size) != nd+1 {
		return nil, fmt.Errorf("%s: %s has shape %v, neither the model tensor's %v nor its flattened blocks", r.dir, name, t.size, shape)
	}
	local := make([]int, nd)
	for d := range shape {
		if t.size[d] <= 0 || shape[d]%t.size[d] != 0 {
			return nil, fmt.Errorf("%s: %s has shape %v: %d blocks do not divide the model tensor's axis %d of %d", r.dir, name, t.size, t.size[d], d, shape[d])
		}
		local[d] = shape[d] / t.size[d]
	}
	if tensor.ShapeNumel(local) != t.size[nd] {
		return nil, fmt.Errorf("%s: %s has shape %v: blocks of %v hold %d values, not %d", r.dir, name, t.size, local, tensor.ShapeNumel(local), t.size[nd])
	}
	out := make([]float32, tensor.ShapeNumel(size))
	got := 0
	for _, c := range t.chunks {
		// The chunk is values [start, start+n) of block c.off[:nd].
		base, meets := make([]int, nd), true
		for d := range base {
			base[d] = c.off[d] * local[d]
			meets = meets && base[d] < off[d]+size[d] && base[d]+local[d] > off[d]
		}
		if !meets {
			continue
		}
		vals, err := r.chunk(name, t, c)
		if err != nil {
			return nil, err
		}
		got += copyFlat(out, size, off, vals, local, base, c.off[nd])
	}
	if got != len(out) {
		return nil, fmt.Errorf("%s: %s: the stored chunks hold %d of the %d elements at %v+%v", r.dir, name, got, len(out), off, size)
	}
	return out, nil
}

// copyFlat copies the values of src, elements [start, start+len(src)) in row-major order
// of a block of shape local at global offset base, that fall in the box dst (shape dstSize
// at dstOff), returning the elements copied. It goes a row (last axis) at a time.
func copyFlat(dst []float32, dstSize, dstOff []int, src []float32, local, base []int, start int) int {
	nd := len(local)
	if nd == 0 {
		dst[0] = src[0]
		return 1
	}
	cols := local[nd-1]
	idx := make([]int, nd)
	copied := 0
	for p := start; p < start+len(src); {
		row, col := p/cols, p%cols
		run := min(cols-col, start+len(src)-p)
		for d := nd - 2; d >= 0; d-- {
			idx[d] = row % local[d]
			row /= local[d]
		}
		inside, di := true, 0
		for d := 0; d < nd-1; d++ {
			g := base[d] + idx[d] - dstOff[d]
			inside = inside && g >= 0 && g < dstSize[d]
			di = di*dstSize[d] + g
		}
		if inside {
			g0 := base[nd-1] + col
			lo, hi := max(g0, dstOff[nd-1]), min(g0+run, dstOff[nd-1]+dstSize[nd-1])
			if lo < hi {
				di = di*dstSize[nd-1] + lo - dstOff[nd-1]
				copy(dst[di:di+hi-lo], src[p-start+lo-g0:p-start+hi-g0])
				copied += hi - lo
			}
		}
		p += run
	}
	return copied
}

// chunk decodes one stored chunk (a torch.save archive) to float32.
func (r *dcpReader) chunk(name string, t *dcpTensor, c dcpChunk) ([]float32, error) {
	where := fmt.Sprintf("%s: %s bytes [%d, %d) (%s at %v)", r.dir, c.file, c.start, c.start+c.count, name, c.off)
	m, err := r.file(c.file)
	if err != nil {
		return nil, err
	}
	blob := m.data[c.start : c.start+c.count]
	v, err := torchpickle.Decode(blob)
	if err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", where, err)
	}
	x, ok := v.(*tensor.Tensor)
	if !ok {
		return nil, fmt.Errorf("megatron: %s holds a %T, not a tensor", where, v)
	}
	if !tensor.SameShape(x.Shape(), c.size) || x.DType() != t.dtype {
		return nil, fmt.Errorf("megatron: %s holds a %v %v tensor, the metadata says %v %v", where, x.DType(), x.Shape(), t.dtype, c.size)
	}
	vals := x.ToF32()
	if m.dirty {
		dropPages(m.data, blob)
	}
	return vals, nil
}

// object returns the bytes of a stored byte object.
func (r *dcpReader) object(name string) ([]byte, error) {
	p, ok := r.objects[name]
	if !ok {
		return nil, fmt.Errorf("%s has no object %s", r.dir, name)
	}
	m, err := r.file(p.file)
	if err != nil {
		return nil, err
	}
	return m.data[p.start : p.start+p.count], nil
}

// objectNames lists the byte objects whose key starts with prefix, sorted.
func (r *dcpReader) objectNames(prefix string) []string {
	var out []string
	for k := range r.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// file maps a data file on first use.
func (r *dcpReader) file(name string) (*mappedBytes, error) {
	if m, ok := r.files[name]; ok {
		return m, nil
	}
	data, unmap, mapped, err := mapOrRead(filepath.Join(r.dir, name))
	if err != nil {
		return nil, err
	}
	m := &mappedBytes{data: data, unmap: unmap, dirty: mapped}
	r.files[name] = m
	return m, nil
}

// close unmaps every data file.
func (r *dcpReader) close() error {
	var first error
	for _, m := range r.files {
		if err := m.unmap(); err != nil && first == nil {
			first = err
		}
	}
	r.files = nil
	return first
}

// copyBox copies the box [lo, hi) from src (shape srcSize at srcOff in global
// coordinates) into dst (shape dstSize at dstOff), returning the elements copied.
func copyBox(dst []float32, dstSize, dstOff []int, src []float32, srcSize, srcOff, lo, hi []int) int {
	nd := len(lo)
	if nd == 0 {
		dst[0] = src[0]
		return 1
	}
	run := hi[nd-1] - lo[nd-1]
	idx := append([]int(nil), lo...)
	copied := 0
	for {
		di, si := 0, 0
		for d := 0; d < nd; d++ {
			di = di*dstSize[d] + idx[d] - dstOff[d]
			si = si*srcSize[d] + idx[d] - srcOff[d]
		}
		copy(dst[di:di+run], src[si:si+run])
		copied += run
		d := nd - 2
		for ; d >= 0; d-- {
			if idx[d]++; idx[d] < hi[d] {
				break
			}
			idx[d] = lo[d]
		}
		if d < 0 {
			return copied
		}
	}
}

// objState checks that v is an object of class (module.Name) and returns its field dict.
func objState(v any, class string) (*torchpickle.Dict, error) {
	o, ok := v.(*torchpickle.Object)
	if !ok || o.Class.String() != class {
		return nil, fmt.Errorf("want a %s, found %s", class, describe(v))
	}
	d, ok := stateDict(o)
	if !ok {
		return nil, fmt.Errorf("%s has no fields", class)
	}
	return d, nil
}

// stateDict is an object's field dict: its BUILD state, or the dict half of a
// (dict, slots) pair.
func stateDict(o *torchpickle.Object) (*torchpickle.Dict, bool) {
	switch s := o.State.(type) {
	case *torchpickle.Dict:
		return s, true
	case torchpickle.Tuple:
		if len(s) == 2 {
			if d, ok := s[1].(*torchpickle.Dict); ok && s[0] == nil {
				return d, true
			}
			if d, ok := s[0].(*torchpickle.Dict); ok {
				return d, true
			}
		}
	}
	return nil, false
}

func describe(v any) string {
	if o, ok := v.(*torchpickle.Object); ok {
		return o.Class.String()
	}
	return fmt.Sprintf("%T", v)
}

func fieldGet(d *torchpickle.Dict, name string) (any, bool) {
	if d == nil {
		return nil, false
	}
	return d.Get(name)
}

func fieldDict(d *torchpickle.Dict, name string) (*torchpickle.Dict, bool) {
	v, _ := fieldGet(d, name)
	x, ok := v.(*torchpickle.Dict)
	return x, ok
}

func fieldInt(d *torchpickle.Dict, name string) (int64, bool) {
	v, _ := fieldGet(d, name)
	return torchpickle.AsInt64(v)
}

// ints reads a tuple or list of ints (torch.Size).
func ints(v any) ([]int, error) {
	var items []any
	switch x := v.(type) {
	case torchpickle.Tuple:
		items = x
	case []any:
		items = x
	default:
		return nil, fmt.Errorf("%T is not a tuple of ints", v)
	}
	out := make([]int, len(items))
	for i, it := range items {
		n, ok := torchpickle.AsInt64(it)
		if !ok {
			return nil, fmt.Errorf("element %d is %T", i, it)
		}
		out[i] = int(n)
	}
	return out, nil
}
