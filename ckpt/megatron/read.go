package megatron

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// MappedFile is a torch.save file opened through a private memory map: Value's tensors
// are views of the file, valid until Close, and Release drops a consumed tensor's pages
// so that walking a large file keeps the resident set near one tensor.
type MappedFile struct {
	Path  string
	Value any
	data  []byte // the mapping, nil when the file was read into memory
	unmap func() error
}

// mapOrRead maps a file privately, or reads it where mapping is impossible (mapped false).
func mapOrRead(path string) (data []byte, unmap func() error, mapped bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("megatron: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, false, fmt.Errorf("megatron: %w", err)
	}
	if data, unmap, mapped = mapFile(f, st.Size()); mapped {
		return data, unmap, true, nil
	}
	data = make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, false, fmt.Errorf("megatron: reading %s: %w", path, err)
	}
	return data, func() error { return nil }, false, nil
}

// MapTorchFile maps and unpickles a torch.save file. Errors name the file.
func MapTorchFile(path string) (*MappedFile, error) {
	data, unmap, mapped, err := mapOrRead(path)
	if err != nil {
		return nil, err
	}
	mf := &MappedFile{Path: path, unmap: unmap}
	if mapped {
		mf.data = data
	}
	if mf.Value, err = torchpickle.Decode(data); err != nil {
		unmap()
		return nil, fmt.Errorf("megatron: %s: %w", path, err)
	}
	return mf, nil
}

// Release drops the resident pages under t when t is a view of this file's mapping.
func (m *MappedFile) Release(t *tensor.Tensor) { dropPages(m.data, t.Data) }

// Close unmaps the file.
func (m *MappedFile) Close() error {
	if m.unmap == nil {
		return nil
	}
	err := m.unmap()
	m.unmap, m.data, m.Value = nil, nil, nil
	return err
}

// ShardFile is one opened model_optim_rng.pt: its top-level dict, memory-mapped so that
// tensors are views of the file, valid until Close.
type ShardFile struct {
	*MappedFile
	State *torchpickle.Dict
}

// OpenShardFile maps and unpickles a shard file and checks it holds a state dict with
// args and model. Errors name the file.
func OpenShardFile(path string) (*ShardFile, error) {
	mf, err := MapTorchFile(path)
	if err != nil {
		return nil, err
	}
	d, ok := mf.Value.(*torchpickle.Dict)
	if !ok {
		mf.Close()
		return nil, fmt.Errorf("megatron: %s holds a %T, not a checkpoint dict", path, mf.Value)
	}
	_, plain := d.Get("model")
	_, chunked := d.Get("model0")
	if !plain && !chunked {
		mf.Close()
		return nil, fmt.Errorf("megatron: %s has no \"model\" entry (nor model0, model1, … of virtual pipeline stages)", path)
	}
	return &ShardFile{MappedFile: mf, State: d}, nil
}

// VirtualStages is the number of model chunks the file holds: 1 for "model", n for
// model0 … model{n-1} (virtual pipeline stages).
func (s *ShardFile) VirtualStages() int {
	if _, ok := s.State.Get("model"); ok {
		return 1
	}
	n := 0
	for {
		if _, ok := s.State.Get(fmt.Sprintf("model%d", n)); !ok {
			return n
		}
		n++
	}
}

// Args returns the args Namespace (argparse.Namespace or types.SimpleNamespace).
func (s *ShardFile) Args() (*torchpickle.Namespace, error) {
	v, ok := s.State.Get("args")
	if !ok {
		return nil, fmt.Errorf("megatron: %s has no \"args\" entry", s.Path)
	}
	ns, ok := v.(*torchpickle.Namespace)
	if !ok {
		return nil, fmt.Errorf("megatron: %s: args is %T, not a Namespace", s.Path, v)
	}
	return ns, nil
}

// Version is checkpoint_version (0 when absent, as Megatron assumes).
func (s *ShardFile) Version() float64 {
	v, _ := s.State.Get("checkpoint_version")
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	}
	return 0
}

// Iteration is the iteration entry (0 when absent, as in release checkpoints).
func (s *ShardFile) Iteration() int {
	v, _ := s.State.Get("iteration")
	n, _ := torchpickle.AsInt64(v)
	return int(n)
}

// Model returns the model's tensors under our parameter names and the layout found; with
// virtual pipeline stages, those of the first chunk (ModelChunk reads the others).
func (s *ShardFile) Model() (map[string]*tensor.Tensor, Format, error) { return s.ModelChunk(0) }

// ModelChunk returns model chunk v's tensors under our (chunk-local) parameter names.
func (s *ShardFile) ModelChunk(v int) (map[string]*tensor.Tensor, Format, error) {
	n := s.VirtualStages()
	if v < 0 || v >= n {
		return nil, 0, fmt.Errorf("megatron: %s: no model chunk %d (the file holds %d)", s.Path, v, n)
	}
	m, _ := s.State.Get(chunkKey(v, n))
	ts, f, err := ModelTensors(m)
	if err != nil {
		return nil, f, fmt.Errorf("megatron: %s: %s: %w", s.Path, chunkKey(v, n), err)
	}
	return ts, f, nil
}

// Checkpoint is an opened Megatron checkpoint: every (TP, PP) shard of one iteration,
// the architecture its args describe, and an index from each full tensor's global name
// (layers.Param.InitKey) to where its shards live.
type Checkpoint struct {
	Location
	Args    *torchpickle.Namespace // args of shard (0, 0)
	Config  layers.Config          // TensorModelParallelSize = TP
	Info    ArgsInfo
	TP, PP  int
	EP      int     // expert-parallel size (experts split over mp_rank_…_EEE folders; 1 without)
	VP      int     // virtual pipeline stages (model chunks per shard file; 1 without)
	Version float64 // checkpoint_version
	Format  Format
	DType   tensor.DType // dtype of the stored parameters

	files   [][]*ShardFile                  // [pp][tp] of expert-parallel rank 0
	tensors [][][]map[string]*tensor.Tensor // [pp][tp][vp] by chunk-local name, expert-parallel rank 0
	// Every expert-parallel rank's files and tensors ([ep] of the above).
	epFiles   [][][]*ShardFile
	epTensors [][][][]map[string]*tensor.Tensor
	index     map[string]entry // InitKey → stage, chunk and parameter
	keys      []string         // InitKeys in stage order

	// A torch_dist checkpoint (--ckpt-format torch_dist) has no shard files: its tensors
	// are read from dist, and Common is its unsharded state (args, iteration,
	// opt_param_scheduler, …). nil for the torch format.
	Common    *torchpickle.Dict
	dist      *dcpReader
	distIndex map[string]distLoc
}

// TorchDist reports whether the checkpoint is in the torch_dist format.
func (c *Checkpoint) TorchDist() bool { return c.dist != nil }

type entry struct {
	ep, pp, vp int
	p          *layers.Param
	// part ≥ 0 names expert part of the GroupedMLP weight p (q describes it); −1 else.
	part int
	q    *layers.Param
}

// Open reads a checkpoint: a root with latest_checkpointed_iteration.txt, or an
// iteration folder. It maps every shard file, rebuilds the model configuration from the
// args, and checks every shard against it: each expected parameter present with its
// local shape, nothing unknown. Errors name the file and the tensor.
func Open(path string) (*Checkpoint, error) { return OpenWith(path, nil) }

// ArgsFixer completes the args of a checkpoint written without Megatron's full argument
// set (Pai's convertor stores a SimpleNamespace with a handful of fields). It sees the
// args, shard (0, 0)'s tensors under our names and the shard grid, and edits the
// Namespace in place before the configuration is built from it.
type ArgsFixer func(args *torchpickle.Namespace, shard00 map[string]*tensor.Tensor, tp, pp int) error

// OpenWith is Open with an ArgsFixer (nil for none).
func OpenWith(path string, fix ArgsFixer) (*Checkpoint, error) {
	loc, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	if IsTorchDist(loc.Dir()) { // args written by Megatron itself: nothing to fix
		return openDist(loc)
	}
	ep, err := ExpertSize(loc)
	if err != nil {
		return nil, err
	}
	if ep > 1 {
		loc.ExpertSize = ep
	}
	tp, pp, err := Shards(loc)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Location: loc, TP: tp, PP: pp, EP: ep, index: map[string]entry{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for e := 0; e < ep; e++ {
		at := loc
		at.ExpertRank = e
		if e > 0 {
			if t, p, err := Shards(at); err != nil {
				return nil, err
			} else if t != tp || p != pp {
				return nil, fmt.Errorf("megatron: %s: expert-parallel rank %d has a %d×%d grid of shards, rank 0 %d×%d", loc.Dir(), e, t, p, tp, pp)
			}
		}
		files := make([][]*ShardFile, pp)
		tensors := make([][][]map[string]*tensor.Tensor, pp)
		c.epFiles, c.epTensors = append(c.epFiles, files), append(c.epTensors, tensors)
		for p := 0; p < pp; p++ {
			files[p], tensors[p] = make([]*ShardFile, tp), make([][]map[string]*tensor.Tensor, tp)
			for t := 0; t < tp; t++ {
				sf, err := LoadShard(at, t, p, pp)
				if err != nil {
					return nil, err
				}
				files[p][t] = sf
			}
		}
	}
	c.files, c.tensors = c.epFiles[0], c.epTensors[0]
	first := c.files[0][0]
	if c.Args, err = first.Args(); err != nil {
		return nil, err
	}
	if fix != nil {
		ts, _, err := first.Model()
		if err != nil {
			return nil, err
		}
		if err := fix(c.Args, ts, tp, pp); err != nil {
			return nil, fmt.Errorf("megatron: %s: %w", first.Path, err)
		}
	}
	if c.Config, c.Info, err = ConfigFromArgs(c.Args); err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", first.Path, err)
	}
	if c.Info.TP != tp || c.Info.PP != pp {
		var missing []string
		for p := 0; p < c.Info.PP; p++ {
			for t := 0; t < c.Info.TP; t++ {
				if t >= tp || p >= pp {
					missing = append(missing, ShardDirName(t, p, c.Info.PP))
				}
			}
		}
		what := "extra shard folders"
		if len(missing) > 0 {
			what = "missing shard folders " + strings.Join(missing, ", ")
		}
		return nil, fmt.Errorf("megatron: %s: args say tensor_model_parallel_size %d and pipeline_model_parallel_size %d, but %s holds a %d×%d grid of shards (%s)",
			first.Path, c.Info.TP, c.Info.PP, loc.Dir(), tp, pp, what)
	}
	if c.Info.EP != ep {
		return nil, fmt.Errorf("megatron: %s: args say expert_model_parallel_size %d, the folders hold %d", first.Path, c.Info.EP, ep)
	}
	c.Version = first.Version()
	c.VP = c.Info.VP
	for e := 0; e < ep; e++ {
		for p := 0; p < pp; p++ {
			for t := 0; t < tp; t++ {
				if err := c.checkShard(e, t, p); err != nil {
					return nil, err
				}
			}
		}
	}
	if c.DType == tensor.Invalid {
		c.DType = c.Info.ParamsDType
	}
	ok = true
	return c, nil
}

// checkShard reads shard (t, p)'s model chunks (of expert-parallel rank e) and compares
// them with the parameters the args imply.
func (c *Checkpoint) checkShard(e, t, p int) error {
	sf := c.epFiles[e][p][t]
	if n := sf.VirtualStages(); n != c.VP {
		return fmt.Errorf("megatron: %s holds %d model chunks, but the args say virtual_pipeline_model_parallel_size %d", sf.Path, n, c.VP)
	}
	c.epTensors[e][p][t] = make([]map[string]*tensor.Tensor, c.VP)
	for v := 0; v < c.VP; v++ {
		if err := c.checkChunk(e, t, p, v); err != nil {
			return err
		}
	}
	return nil
}

// checkChunk checks model chunk v of shard (t, p) of expert-parallel rank e.
func (c *Checkpoint) checkChunk(e, t, p, v int) error {
	sf := c.epFiles[e][p][t]
	ts, f, err := sf.ModelChunk(v)
	if err != nil {
		return err
	}
	if t == 0 && p == 0 && v == 0 {
		c.Format = f
	} else if (f == Legacy) != (c.Format == Legacy) {
		return fmt.Errorf("megatron: %s uses the %v layout, %s the %v layout", sf.Path, f, c.files[0][0].Path, c.Format)
	} else if f == MCoreTE {
		c.Format = MCoreTE // a stage without norms looks like the local spec
	}
	where := sf.Path
	if c.VP > 1 {
		where = fmt.Sprintf("%s (model%d)", sf.Path, v)
	}
	specs, err := layers.Specs(c.Config, layers.Parallel{TPRank: t, TPSize: c.TP, PPRank: p, PPSize: c.PP, VPRank: v, VPSize: c.VP, EPRank: e, EPSize: c.EP})
	if err != nil {
		return fmt.Errorf("megatron: %s: %w", where, err)
	}
	for _, sp := range specs {
		x, ok := ts[sp.Name]
		if !ok {
			return fmt.Errorf("megatron: %s: tensor %s (%s in the %v layout) is missing; the args expect it", where, sp.Name, keyName(c.Format, sp), c.Format)
		}
		if !tensor.SameShape(x.Shape(), sp.Shape) {
			return fmt.Errorf("megatron: %s: tensor %s has shape %v, but the args (TP %d, hidden_size %d, padded_vocab_size %d, …) give %v",
				where, keyName(c.Format, sp), x.Shape(), c.TP, c.Config.HiddenSize, c.Config.PaddedVocabSize, sp.Shape)
		}
		if !x.DType().IsFloat() {
			return fmt.Errorf("megatron: %s: tensor %s has dtype %v, want a floating-point type", where, keyName(c.Format, sp), x.DType())
		}
		if c.DType == tensor.Invalid {
			c.DType = x.DType()
		}
		if t == 0 && !sp.Shared && (e == 0 || sp.Expert) { // other EP ranks: only their experts
			for i, q := range sp.Logical() {
				if sp.Experts == nil {
					i = -1
				}
				c.index[q.InitKey] = entry{e, p, v, sp, i, q}
				c.keys = append(c.keys, q.InitKey)
			}
		}
	}
	for name := range ts {
		if specs.ByName(name) == nil && !ignoredPai(name) &&
			!(name == "output_layer.weight" && f == Legacy) { // Pai's word_embeddings_for_head on a tied stage without output layer
			return fmt.Errorf("megatron: %s: tensor %s is not a parameter of the model the args describe", where, name)
		}
	}
	c.epTensors[e][p][t][v] = ts
	return nil
}

// keyName is a parameter's key in the file's layout, for messages.
func keyName(f Format, p *layers.Param) string {
	path, err := ParamKeyPath(f, p)
	if err != nil {
		return p.Name
	}
	s := path[0]
	for _, k := range path[1:] {
		s += "." + k
	}
	return s
}

// Keys lists the full tensors' global names (layers.Param.InitKey) in stage order.
func (c *Checkpoint) Keys() []string { return append([]string(nil), c.keys...) }

// Param describes the full tensor key as the checkpoint stores it (shard shapes, split;
// for an expert packed in a GroupedMLP weight, its SequentialMLP shards).
func (c *Checkpoint) Param(key string) (*layers.Param, bool) {
	e, ok := c.index[key]
	return e.q, ok
}

// Full joins the TP shards of one full tensor, named by its global name, and returns
// its values widened to float32 (exact for every float dtype but f64) with the full
// shape. The shards' file pages are released afterwards, so walking Keys keeps the
// resident set near one tensor.
func (c *Checkpoint) Full(key string) ([]float32, []int, error) {
	if c.dist != nil {
		return c.distFull(key)
	}
	e, ok := c.index[key]
	if !ok {
		return nil, nil, fmt.Errorf("megatron: %s has no tensor %s", c.Dir(), key)
	}
	shards := make([][]float32, c.TP)
	for t := 0; t < c.TP; t++ {
		x := c.epTensors[e.ep][e.pp][t][e.vp][e.p.Name]
		if e.part >= 0 {
			x = e.p.ExpertBlock(x, e.part)
		}
		v := x.ToF32()
		f := c.epFiles[e.ep][e.pp][t]
		f.Release(x)
		if err := c.fixQKV(v, e.p, x.Shape()); err != nil {
			return nil, nil, fmt.Errorf("megatron: %s: %s: %w", f.Path, e.p.Name, err)
		}
		if e.part >= 0 {
			v = e.p.ExpertShard(v, e.part)
		}
		shards[t] = v
	}
	q := e.q
	return layers.Unshard(shards, q.FullShape, q.PartitionDim, q.GLU), q.FullShape, nil
}

// ShardTensors returns shard (tp, pp)'s tensors by our local parameter names: views of
// the mapped file in the stored dtype; with virtual pipeline stages, chunk vp (default 0).
// A torch_dist checkpoint has no shard files: nil (read it with Full).
func (c *Checkpoint) ShardTensors(tpRank, ppRank int, vp ...int) map[string]*tensor.Tensor {
	if c.dist != nil {
		return nil
	}
	v := 0
	if len(vp) > 0 {
		v = vp[0]
	}
	return c.tensors[ppRank][tpRank][v]
}

// ShardFile returns the opened file of shard (tp, pp), e.g. for its optimizer state (nil
// for torch_dist).
func (c *Checkpoint) ShardFile(tpRank, ppRank int) *ShardFile {
	if c.dist != nil {
		return nil
	}
	return c.files[ppRank][tpRank]
}

// Close unmaps every shard file.
func (c *Checkpoint) Close() error {
	var first error
	if c.dist != nil {
		first = c.dist.close()
	}
	for _, files := range c.epFiles {
		for _, row := range files {
			for _, f := range row {
				if f != nil {
					if err := f.Close(); err != nil && first == nil {
						first = err
					}
				}
			}
		}
	}
	c.files, c.tensors, c.epFiles, c.epTensors = nil, nil, nil, nil
	return first
}

// fixQKV reorders a legacy query_key_value shard saved with checkpoint_version < 2.0 into
// the per-head [q, k, v] row order of version ≥ 2.0 (Megatron's
// fix_query_key_value_ordering): version 0 stores rows as [3, np, hn], version 1.0 as
// [np, hn, 3]; both become [np, 3, hn]. Only multi-head attention had those versions.
func (c *Checkpoint) fixQKV(v []float32, p *layers.Param, shape []int) error {
	if c.Version >= 2 || c.Format != Legacy || !isQKV(p.Name) {
		return nil
	}
	if c.Config.NumQueryGroups != c.Config.NumAttentionHeads {
		return fmt.Errorf("checkpoint_version %v predates grouped-query attention", c.Version)
	}
	hn := c.Config.KVChannels
	np := shape[0] / (3 * hn)
	cols := len(v) / shape[0]
	src := append([]float32(nil), v...)
	for h := 0; h < np; h++ {
		for s := 0; s < 3; s++ {
			for d := 0; d < hn; d++ {
				var in int
				if c.Version == 0 {
					in = s*np*hn + h*hn + d
				} else {
					in = h*hn*3 + d*3 + s
				}
				out := h*3*hn + s*hn + d
				copy(v[out*cols:(out+1)*cols], src[in*cols:(in+1)*cols])
			}
		}
	}
	return nil
}

func isQKV(name string) bool {
	m := layerRe.FindStringSubmatch(name)
	return m != nil && (m[2] == "self_attention.linear_qkv.weight" || m[2] == "self_attention.linear_qkv.bias")
}

// EqualTensors reports whether o holds the same full tensors as c (names, shapes and
// values, whatever the layouts and formats), naming the first that differs.
func (c *Checkpoint) EqualTensors(o *Checkpoint) error {
	if !slices.Equal(c.keys, o.keys) {
		return fmt.Errorf("megatron: %s and %s hold different tensors (%d and %d)", c.Dir(), o.Dir(), len(c.keys), len(o.keys))
	}
	for _, k := range c.keys {
		a, as, err := c.Full(k)
		if err != nil {
			return err
		}
		b, bs, err := o.Full(k)
		if err != nil {
			return err
		}
		if !slices.Equal(as, bs) || !slices.Equal(a, b) {
			return fmt.Errorf("megatron: tensor %s differs between %s and %s", k, c.Dir(), o.Dir())
		}
	}
	return nil
}
