package megatron

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Writing torch_dist. Every rank that holds data writes its own __R_0.distcp (each chunk a
// torch.save archive, each byte object torch.save([value]), as Megatron's writer does) and a
// sidecar listing what it wrote; once all have, rank 0 merges the sidecars into the DCP
// .metadata, writes metadata.json and common.pt, and removes the sidecars. Every file is
// written atomically; a folder without .metadata is an unfinished save.

// DistPiece is one item a rank stores: a chunk of a global tensor, or a byte object.
type DistPiece struct {
	Key    string
	Global []int          // the tensor's global shape (nil for an object)
	Offset []int          // the chunk's offsets in it
	Data   *tensor.Tensor // the chunk (shape = its sizes); nil for an object
	Object any            // an object's value, stored as torch.save([Object])
	// Flattened is, for optimizer state in the N-D flattened form, the model tensor's
	// global shape (Megatron's nd_reformulated_orig_global_shape); nil else.
	Flattened []int
}

// DistShard is what one rank stores: its parameters' shards, each produced on demand (so
// a writer holds one parameter at a time), in the layout of Cfg at TP rank TPRank of
// TPSize.
type DistShard struct {
	Cfg            layers.Config
	Format         Format
	TPRank, TPSize int
	Params         []DistParam
	States         []DistState
}

// DistState is one optimizer state of a parameter (OptimizerStates): Local returns the
// values of the parameter's local shard (in its layout). With Own, it is stored as the
// distributed optimizer stores it (fully_sharded_model_space), only the flat ranges Own
// (this rank's part); with Own nil, whole, in the model tensor's shape and chunks, as the
// non-distributed optimizers store it.
type DistState struct {
	Param *layers.Param
	Chain string // the key prefix of the parameter's optimizer (see Chain)
	Name  string
	Own   [][2]int
	Local func() ([]float32, error)
}

// DistParam is one parameter of a DistShard: Local returns its local shard's values (in
// the parameter's layout), stored as DType.
type DistParam struct {
	Param *layers.Param
	DType tensor.DType
	Local func() ([]float32, error)
}

// DistWrites reports whether the rank at TP rank tp and expert-parallel rank ep stores p
// (among the ranks of one data-parallel replica): a replicated parameter is stored by TP
// rank 0, a dense one by expert-parallel rank 0, and a tied copy not at all.
func DistWrites(p *layers.Param, tp, ep int) bool {
	return !p.Shared && (p.Expert || ep == 0) && (p.PartitionDim >= 0 || p.Experts != nil || tp == 0)
}

// distItem is a written piece as the sidecar records it.
type distItem struct {
	Key    string `json:"key"`
	Global []int  `json:"global,omitempty"`
	Offset []int  `json:"offset,omitempty"`
	Size   []int  `json:"size,omitempty"`
	DType  string `json:"dtype,omitempty"`
	File   string `json:"file"`
	Start  int64  `json:"start"`
	Length int64  `json:"length"`
	Object bool   `json:"object,omitempty"`
	// Flattened: DistPiece.Flattened.
	Flattened []int `json:"flattened,omitempty"`
}

const distSidecarSuffix = ".gomegatron-items.json"

// DistFileName is rank's data file (one writer thread, as Megatron-Core ≥ 0.14 writes).
func DistFileName(rank int) string { return fmt.Sprintf("__%d_0.distcp", rank) }

// WriteDistShard writes rank's data file and its sidecar into dir: each parameter's
// chunks and, on TP rank 0, its modules' _extra_state objects.
func WriteDistShard(dir string, rank int, sh DistShard) error {
	name := DistFileName(rank)
	var items []distItem
	err := atomicfile.Write(filepath.Join(dir, name), func(w *bufio.Writer) error {
		var at int64
		for _, dp := range sh.Params {
			local, err := dp.Local()
			if err != nil {
				return err
			}
			pieces := DistPieces(sh.Cfg, sh.Format, dp.Param, local, dp.DType, sh.TPRank, sh.TPSize)
			if sh.TPRank == 0 {
				pieces = append(pieces, DistExtraStates(sh.Cfg, dp.Param)...)
			}
			if at, err = writePieces(w, name, at, pieces, &items); err != nil {
				return err
			}
		}
		for _, st := range sh.States {
			local, err := st.Local()
			if err != nil {
				return err
			}
			pieces, err := DistStatePieces(sh.Cfg, sh.Format, st, local, sh.TPRank, sh.TPSize)
			if err != nil {
				return err
			}
			if at, err = writePieces(w, name, at, pieces, &items); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	js, err := json.Marshal(items)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+distSidecarSuffix), js)
}

// writePieces appends pieces to file name (through w, at byte at) and records them.
func writePieces(w *bufio.Writer, name string, at int64, pieces []DistPiece, items *[]distItem) (int64, error) {
	for _, p := range pieces {
		cw := &countingWriter{w: w}
		it := distItem{Key: p.Key, File: name, Start: at}
		var v any = []any{p.Object} // a ShardedObject is saved as [value]
		if p.Data != nil {
			v = p.Data
			it.Global, it.Offset, it.Size, it.DType, it.Flattened = p.Global, p.Offset, p.Data.Shape(), p.Data.DType().String(), p.Flattened
		} else {
			it.Object = true
		}
		if err := torchpickle.Encode(cw, "archive", v); err != nil {
			return at, fmt.Errorf("%s: %w", p.Key, err)
		}
		it.Length = cw.n
		at += cw.n
		*items = append(*items, it)
	}
	return at, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ClearDist removes a torch_dist save's files from dir (data files, sidecars, index, common
// state), so that saving an iteration again, at another layout, leaves nothing stale.
func ClearDist(dir string) error {
	for _, pat := range []string{"__*_*.distcp", "*" + distSidecarSuffix, dcpMetadataFile, DistMetadataFile, DistCommonFile} {
		files, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("megatron: %w", err)
			}
		}
	}
	return nil
}

// FinishDist merges the ranks' sidecars in dir into .metadata, writes common.pt (the
// unsharded state: args, iteration, …) and metadata.json, and removes the sidecars.
// Call it on one rank after every rank's WriteDistShard.
func FinishDist(dir string, common *torchpickle.Dict) error {
	sidecars, err := filepath.Glob(filepath.Join(dir, "*"+distSidecarSuffix))
	if err != nil {
		return err
	}
	sort.Strings(sidecars)
	var items []distItem
	for _, sc := range sidecars {
		raw, err := os.ReadFile(sc)
		if err != nil {
			return fmt.Errorf("megatron: %w", err)
		}
		var its []distItem
		if err := json.Unmarshal(raw, &its); err != nil {
			return fmt.Errorf("megatron: %s: %w", sc, err)
		}
		items = append(items, its...)
	}
	md, err := dcpMetadata(items)
	if err != nil {
		return fmt.Errorf("megatron: %s: %w", dir, err)
	}
	raw, err := torchpickle.Pickle(md)
	if err != nil {
		return fmt.Errorf("megatron: %s: %w", dir, err)
	}
	if err := torchpickle.Save(filepath.Join(dir, DistCommonFile), common); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, dcpMetadataFile), raw); err != nil {
		return err
	}
	js := []byte(`{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}`)
	if err := writeFileAtomic(filepath.Join(dir, DistMetadataFile), js); err != nil {
		return err
	}
	for _, sc := range sidecars {
		if err := os.Remove(sc); err != nil {
			return fmt.Errorf("megatron: %w", err)
		}
	}
	return nil
}

// dcpMetadata builds PyTorch's Metadata for the written items, pickling as torch does:
// dataclasses by NEWOBJ and a field dict, TensorProperties by its state tuple.
func dcpMetadata(items []distItem) (*torchpickle.Object, error) {
	const md = "torch.distributed.checkpoint.metadata"
	dataclass := func(class string, fields ...any) *torchpickle.Object {
		d := torchpickle.NewDict(false)
		for i := 0; i < len(fields); i += 2 {
			d.Set(fields[i], fields[i+1])
		}
		mod, name := md, class
		if i := strings.LastIndexByte(class, '.'); i >= 0 {
			mod, name = class[:i], class[i+1:]
		}
		return &torchpickle.Object{Class: torchpickle.Global{Module: mod, Name: name}, Args: torchpickle.Tuple{}, NewObj: true, State: d}
	}
	size := func(v []int) *torchpickle.Object {
		t := make(torchpickle.Tuple, len(v))
		for i, x := range v {
			t[i] = int64(x)
		}
		return &torchpickle.Object{Class: torchpickle.Global{Module: "torch", Name: "Size"}, Args: torchpickle.Tuple{t}}
	}
	layout := &torchpickle.Object{Class: torchpickle.Global{Module: "torch.serialization", Name: "_get_layout"}, Args: torchpickle.Tuple{"torch.strided"}}
	contiguous := &torchpickle.Object{Class: torchpickle.Global{Module: md, Name: "_MEM_FORMAT_ENCODING"}, Args: torchpickle.Tuple{int64(0)}}

	sdm := torchpickle.NewDict(false)
	storage := torchpickle.NewDict(false)
	type tensorMeta struct {
		meta      *torchpickle.Object
		chunks    []any
		global    []int
		dtype     string
		flattened []int
	}
	metas := map[string]*tensorMeta{}
	var order []string
	for _, it := range items {
		if it.Object {
			if _, dup := sdm.Get(it.Key); dup {
				return nil, fmt.Errorf("object %s written twice", it.Key)
			}
			sdm.Set(it.Key, dataclass("BytesStorageMetadata"))
			storage.Set(dataclass("MetadataIndex", "fqn", it.Key, "offset", nil, "index", nil),
				dataclass("torch.distributed.checkpoint.filesystem._StorageInfo", "relative_path", it.File, "offset", it.Start, "length", it.Length))
			continue
		}
		dt, err := tensor.ParseDType(it.DType)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", it.Key, err)
		}
		m, ok := metas[it.Key]
		if !ok {
			m = &tensorMeta{global: it.Global, dtype: it.DType, flattened: it.Flattened}
			props := &torchpickle.Object{Class: torchpickle.Global{Module: md, Name: "TensorProperties"}, Args: torchpickle.Tuple{}, NewObj: true,
				State: torchpickle.Tuple{dt, layout, false, contiguous, false}}
			m.meta = dataclass("TensorStorageMetadata", "properties", props, "size", size(it.Global), "chunks", nil)
			metas[it.Key] = m
			order = append(order, it.Key)
		} else if !tensor.SameShape(m.global, it.Global) || m.dtype != it.DType {
			return nil, fmt.Errorf("%s: ranks disagree on its shape or dtype (%v %s, %v %s)", it.Key, m.global, m.dtype, it.Global, it.DType)
		}
		m.chunks = append(m.chunks, dataclass("ChunkStorageMetadata", "offsets", size(it.Offset), "sizes", size(it.Size)))
		storage.Set(dataclass("MetadataIndex", "fqn", it.Key, "offset", size(it.Offset), "index", nil),
			dataclass("torch.distributed.checkpoint.filesystem._StorageInfo", "relative_path", it.File, "offset", it.Start, "length", it.Length))
	}
	// Megatron's MCoreSavePlanner adds mcore_data to the Metadata: for each tensor, the
	// original global shape of an N-D flattened one (its loader reformulates by it).
	mcore := torchpickle.NewDict(false)
	for _, k := range order {
		m := metas[k]
		m.meta.State.(*torchpickle.Dict).Set("chunks", m.chunks)
		sdm.Set(k, m.meta)
		d := torchpickle.NewDict(false)
		if m.flattened != nil {
			t := make(torchpickle.Tuple, len(m.flattened))
			for i, x := range m.flattened {
				t[i] = int64(x)
			}
			d.Set("nd_reformulated_orig_global_shape", t)
		}
		mcore.Set(k, d)
	}
	return dataclass("Metadata", "state_dict_metadata", sdm, "planner_data", nil, "storage_data", storage, "storage_meta", nil,
		"mcore_data", mcore), nil
}

// DistStacked reports whether Megatron-Core stacks cfg's layers on one axis in torch_dist
// (TransformerBlock.sharded_state_dict): not when --moe-layer-freq mixes layer kinds.
func DistStacked(cfg layers.Config) bool { return cfg.NumExperts == 0 || cfg.MoELayerFreq == "" }

// DistPieces cuts parameter p's local shard (TP rank r of size; values in p's layout,
// converted to dtype) into the chunks torch_dist stores: one per logical tensor, two for a
// GLU fc1 (its gate and up rows land in the [gate; up] global tensor).
func DistPieces(cfg layers.Config, f Format, p *layers.Param, local []float32, dtype tensor.DType, r, size int) []DistPiece {
	stacked := DistStacked(cfg)
	var out []DistPiece
	for i, q := range p.Logical() {
		v := local
		if p.Experts != nil {
			n := q.Numel()
			v = p.ExpertShard(local[i*n:(i+1)*n], i)
		}
		key, prefix, axes := distKey(cfg, q.InitKey, stacked, p.Unfused && f == MCoreTE)
		global := append(append([]int(nil), axes...), q.FullShape...)
		np := len(prefix)
		chunk := func(vals []float32, dim, lo int, shape []int) DistPiece {
			off := append(append([]int(nil), prefix...), make([]int, len(q.FullShape))...)
			if dim >= 0 {
				off[np+dim] = lo
			}
			sh := make([]int, np, np+len(shape))
			for d := range sh {
				sh[d] = 1
			}
			return DistPiece{Key: key, Global: global, Offset: off, Data: tensor.FromF32Values(dtype, vals, append(sh, shape...)...)}
		}
		switch {
		case q.GLU: // Megatron stores the gate and up rows as two chunks, even unsplit
			half := q.FullShape[0] / 2
			lo, hi := layers.ShardRange(half, r, size)
			rows := append([]int{hi - lo}, q.FullShape[1:]...)
			n := len(v) / 2
			out = append(out, chunk(v[:n], 0, lo, rows), chunk(v[n:], 0, half+lo, rows))
		case q.PartitionDim < 0 || size == 1:
			out = append(out, chunk(v, -1, 0, q.FullShape))
		default:
			d := q.PartitionDim
			lo, _ := layers.ShardRange(q.FullShape[d], r, size)
			out = append(out, chunk(v, d, lo, q.Shape))
		}
	}
	return out
}

// DistStatePieces cuts optimizer state st (local: its values over the parameter's local
// shard) into DistPieces' chunks (st.Own nil), or into those of Megatron-Core's N-D
// flattened form (see dcpReader.stateRegion):
// each of DistPieces' blocks becomes [F_0, …, F_{n-1}, ∏l_d], of which each range in st.Own
// is a chunk. GroupedMLP weights, whose blocks are transposed out of the local shard, are
// not supported.
func DistStatePieces(cfg layers.Config, f Format, st DistState, local []float32, r, size int) ([]DistPiece, error) {
	if st.Own == nil {
		pieces := DistPieces(cfg, f, st.Param, local, tensor.F32, r, size)
		for i := range pieces {
			pieces[i].Key = OptimizerKey(st.Chain, st.Name, pieces[i].Key)
		}
		return pieces, nil
	}
	if st.Param.Experts != nil {
		return nil, fmt.Errorf("megatron: %s: the distributed optimizer's state of GroupedMLP experts (--moe-grouped-gemm) cannot be written in torch_dist", st.Param.Name)
	}
	var out []DistPiece
	at := 0 // each block is the next run of the local shard (a GLU fc1's gate rows, then its up rows)
	for _, b := range DistPieces(cfg, f, st.Param, local, tensor.F32, r, size) {
		shape := b.Data.Shape()
		n := tensor.ShapeNumel(shape)
		global, block := make([]int, len(shape)+1), make([]int, len(shape))
		for d, l := range shape {
			global[d], block[d] = b.Global[d]/l, b.Offset[d]/l
		}
		global[len(shape)] = n
		vals := b.Data.F32()
		for _, o := range st.Own {
			lo, hi := max(o[0], at), min(o[1], at+n)
			if lo >= hi {
				continue
			}
			sizes := make([]int, len(global))
			for d := range sizes {
				sizes[d] = 1
			}
			sizes[len(shape)] = hi - lo
			out = append(out, DistPiece{Key: OptimizerKey(st.Chain, st.Name, b.Key), Global: global,
				Offset: append(append([]int(nil), block...), lo-at), Flattened: b.Global,
				Data: tensor.FromF32Values(tensor.F32, vals[lo-at:hi-at], sizes...)})
		}
		at += n
	}
	if at != len(local) {
		return nil, fmt.Errorf("megatron: %s: its torch_dist blocks hold %d values, its local shard %d", st.Param.Name, at, len(local))
	}
	return out, nil
}

var extraStateModRe = regexp.MustCompile(`^(.*)\.(linear_qkv|linear_proj|linear_fc1|linear_fc2)\.weight$`)

// DistExtraStates lists the _extra_state objects Megatron-Core keeps beside p's module
// (its parallel linears, None with the local spec), keyed as ShardedObjects
// (key/shard_<offsets>_<shape>), for the rank that writes p's replica.
func DistExtraStates(cfg layers.Config, p *layers.Param) []DistPiece {
	var out []DistPiece
	for _, q := range p.Logical() {
		m := extraStateModRe.FindStringSubmatch(q.InitKey)
		if m == nil || !strings.HasPrefix(q.InitKey, "decoder.layers.") {
			continue
		}
		key, prefix, axes := distKey(cfg, q.InitKey, DistStacked(cfg), false)
		key = strings.TrimSuffix(key, ".weight") + "._extra_state"
		if len(axes) == 0 {
			prefix, axes = []int{0}, []int{1}
		}
		out = append(out, DistPiece{Key: fmt.Sprintf("%s/shard_%s_%s", key, joinInts(prefix), joinInts(axes))})
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ".")
}
