package hf

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Reader reads a Hugging Face model directory (config.json and model.safetensors, sharded
// or not, or pytorch_model*.bin) one full Megatron tensor at a time, so that a tensor-parallel rank can take its
// shard without holding the whole model.
type Reader struct {
	*Model
	dir   string
	set   weights
	rules []rule
	byKey map[string]rule
}

// weights are a folder's tensors by Hugging Face name: its safetensors set, or its
// pytorch_model*.bin files.
type weights interface {
	Names() []string
	Tensor(name string) (*tensor.Tensor, error)
	Close() error
}

// openWeights opens dir's *.safetensors (sharded or not), else its pytorch_model*.bin
// files (torch.save'd state dicts, as older checkpoints ship).
func openWeights(dir string) (weights, error) {
	if st, _ := filepath.Glob(filepath.Join(dir, "*.safetensors")); len(st) > 0 {
		return safetensors.OpenDir(dir)
	}
	bins, _ := filepath.Glob(filepath.Join(dir, "pytorch_model*.bin"))
	if len(bins) == 0 {
		return nil, fmt.Errorf("%s has neither *.safetensors nor pytorch_model*.bin files", dir)
	}
	sort.Strings(bins)
	b := &binWeights{tensors: map[string]*tensor.Tensor{}}
	for _, p := range bins {
		mf, err := megatron.MapTorchFile(p)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.files = append(b.files, mf)
		d, ok := mf.Value.(*torchpickle.Dict)
		if !ok {
			b.Close()
			return nil, fmt.Errorf("%s holds a %T, not a state dict", p, mf.Value)
		}
		for _, nt := range torchpickle.Flatten(d) {
			if _, dup := b.tensors[nt.Name]; dup {
				b.Close()
				return nil, fmt.Errorf("%s: tensor %s is in an earlier pytorch_model*.bin too", p, nt.Name)
			}
			b.tensors[nt.Name] = nt.T
			b.names = append(b.names, nt.Name)
		}
	}
	return b, nil
}

// binWeights are the tensors of mapped pytorch_model*.bin files.
type binWeights struct {
	files   []*megatron.MappedFile
	tensors map[string]*tensor.Tensor
	names   []string
}

func (b *binWeights) Names() []string { return append([]string(nil), b.names...) }

func (b *binWeights) Tensor(name string) (*tensor.Tensor, error) {
	t, ok := b.tensors[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %s in the pytorch_model*.bin files", name)
	}
	return t, nil
}

func (b *binWeights) Close() error {
	var first error
	for _, f := range b.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Open reads the directory's configuration and safetensors index. Every tensor the
// family's mapping needs must be stored and every stored weight have a place in it;
// errors name the tensor.
func Open(dir string) (*Reader, error) {
	m, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	rules, err := m.rules()
	if err != nil {
		return nil, err
	}
	set, err := openWeights(dir)
	if err != nil {
		return nil, err
	}
	r := &Reader{Model: m, dir: dir, set: set, rules: rules, byKey: map[string]rule{}}
	stored, mapped := map[string]bool{}, map[string]bool{}
	for _, name := range set.Names() {
		stored[name] = true
	}
	for _, ru := range rules {
		r.byKey[ru.megatron] = ru
		for _, name := range ru.hf {
			if !stored[name] {
				set.Close()
				return nil, fmt.Errorf("%s: no tensor %s (needed for %s)", dir, name, ru.megatron)
			}
			mapped[name] = true
		}
	}
	for _, name := range set.Names() {
		if !mapped[name] && !ignoredHF(name) && !(name == "lm_head.weight" && !m.Config.UntieEmbeddingsAndOutputWeights) {
			set.Close()
			return nil, fmt.Errorf("%s: tensor %s is not used by the %s mapping", dir, name, m.Family)
		}
	}
	return r, nil
}

// Close releases the safetensors files.
func (r *Reader) Close() error { return r.set.Close() }

// Full returns the full (unsharded) Megatron tensor key (a layers.Param.InitKey) and its
// shape, assembled from its Hugging Face tensors.
func (r *Reader) Full(key string) ([]float32, []int, error) {
	ru, ok := r.byKey[key]
	if !ok {
		return nil, nil, fmt.Errorf("%s: the %s mapping has no %s", r.dir, r.Family, key)
	}
	return r.read(ru, nil)
}

// read assembles one rule's Megatron tensor. want is its Megatron shape when the caller
// knows it (nil: the one the Hugging Face shapes imply); every source must have the shape
// it implies.
func (r *Reader) read(ru rule, want []int) ([]float32, []int, error) {
	src := make([]*tensor.Tensor, len(ru.hf))
	shapes := make([][]int, len(ru.hf))
	for i, name := range ru.hf {
		t, err := r.set.Tensor(name)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (needed for %s)", r.dir, err, ru.megatron)
		}
		src[i], shapes[i] = t, t.Shape()
	}
	if want == nil {
		want = megatronShape(ru, shapes)
	}
	for i, w := range hfShapes(&r.Config, ru, want) {
		if !tensor.SameShape(shapes[i], w) {
			return nil, nil, fmt.Errorf("%s: %s has shape %v, want %v for %s", r.dir, ru.hf[i], shapes[i], w, ru.megatron)
		}
	}
	vals := make([][]float32, len(src))
	for i, t := range src {
		vals[i] = t.ToF32()
	}
	out, err := toMegatron(&r.Config, ru, vals, shapes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", r.dir, ru.megatron, err)
	}
	if len(out) != tensor.ShapeNumel(want) {
		return nil, nil, fmt.Errorf("%s: %v of shapes %v give %d values, but %s has shape %v", r.dir, ru.hf, shapes, len(out), ru.megatron, want)
	}
	return out, want, nil
}

// megatronShape is the Megatron shape a rule's Hugging Face shapes make (hfShapes inverted).
func megatronShape(r rule, shapes [][]int) []int {
	s := shapes[0]
	rest := s[min(1, len(s)):]
	switch r.kind {
	case transpose, qkvConcatT:
		if len(s) == 2 {
			return []int{s[1], s[0]}
		}
	case gateUp, qkvSplit:
		rows := 0
		for _, p := range shapes {
			if len(p) > 0 {
				rows += p[0]
			}
		}
		return append([]int{rows}, rest...)
	}
	return append([]int(nil), s...)
}

// Load reads a Hugging Face model directory into a new GPT model on the backend. Every
// weight of the state dict must be used and every model parameter filled; errors name the
// tensor and the shapes.
func Load(be kernels.Backend, dir string) (*Model, *layers.GPTModel, error) {
	r, err := Open(dir)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	gm, err := layers.NewGPTModel(be, r.Config, 0)
	if err != nil {
		return nil, nil, err
	}
	for _, ru := range r.rules {
		p := gm.Params.ByName(ru.megatron)
		if p == nil {
			return nil, nil, fmt.Errorf("internal: mapping names %s, which the model lacks", ru.megatron)
		}
		vals, _, err := r.read(ru, p.Data.Shape())
		if err != nil {
			return nil, nil, err
		}
		be.Upload(p.Data, tensor.FromF32(vals, p.Data.Shape()...))
	}
	return r.Model, gm, nil
}
