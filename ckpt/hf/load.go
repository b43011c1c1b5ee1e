package hf

import (
	"fmt"
	"strings"

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
	set   *weights
	rules []rule
	byKey map[string]rule
	// Dropped counts the stored tensors left out: DeepSeek-V3's multi-token-prediction
	// layers (model.layers.{num_hidden_layers + i}, i < num_nextn_predict_layers), which
	// transformers does not load either and which are not written back.
	Dropped int
}

// Open reads the directory's configuration and safetensors index. Every tensor the
// family's mapping needs must be stored and every stored weight have a place in it (but
// DeepSeek-V3's multi-token-prediction layers, dropped: Reader.Dropped); errors name the
// tensor.
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
	mapped := map[string]bool{}
	for _, ru := range rules {
		r.byKey[ru.megatron] = ru
		for _, name := range ru.hf {
			if set.at[name] == nil {
				set.Close()
				return nil, fmt.Errorf("%s: no tensor %s (needed for %s)", dir, name, ru.megatron)
			}
			mapped[name] = true
		}
	}
	for _, name := range set.names {
		switch {
		case mapped[name] || ignoredHF(name) || name == "lm_head.weight" && !m.Config.UntieEmbeddingsAndOutputWeights:
		case m.mtpLayer(name):
			r.Dropped++
		case strings.HasSuffix(name, "_scale_inv"):
			set.Close()
			return nil, fmt.Errorf("%s: tensor %s is a quantization scale (block FP8 weights): convert a bf16 checkpoint", set.at[name].path, name)
		default:
			set.Close()
			return nil, fmt.Errorf("%s: tensor %s is not used by the %s mapping", set.at[name].path, name, m.Family)
		}
	}
	return r, nil
}

// Close releases the weight files.
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

// FullShaped is Full for a caller that knows the tensor's full Megatron shape (a model's
// layers.Param.FullShape): every Hugging Face tensor must have the shape it implies.
func (r *Reader) FullShaped(key string, shape []int) ([]float32, error) {
	ru, ok := r.byKey[key]
	if !ok {
		return nil, fmt.Errorf("%s: the %s mapping has no %s", r.dir, r.Family, key)
	}
	v, _, err := r.read(ru, shape)
	return v, err
}

// DType is the stored dtype of the word embeddings (the model's), Invalid without them.
func (r *Reader) DType() tensor.DType {
	if ru, ok := r.byKey["embedding.word_embeddings.weight"]; ok {
		return r.set.at[ru.hf[0]].dtype
	}
	return tensor.Invalid
}

// read assembles one rule's Megatron tensor. want is its Megatron shape when the caller
// knows it (nil: the one the Hugging Face shapes imply); every source must have the shape
// it implies, checked before anything is read. Each source's pages are released once
// converted.
func (r *Reader) read(ru rule, want []int) ([]float32, []int, error) {
	shapes := make([][]int, len(ru.hf))
	for i, name := range ru.hf {
		shapes[i] = r.set.at[name].shape
	}
	if want == nil {
		want = megatronShape(ru, shapes)
	}
	for i, w := range hfShapes(&r.Config, ru, want) {
		if !tensor.SameShape(shapes[i], w) {
			return nil, nil, fmt.Errorf("%s: %s has shape %v, want %v for %s", r.set.at[ru.hf[i]].path, ru.hf[i], shapes[i], w, ru.megatron)
		}
	}
	vals := make([][]float32, len(ru.hf))
	for i, name := range ru.hf {
		t, release, err := r.set.at[name].read()
		if err != nil {
			return nil, nil, fmt.Errorf("%w (needed for %s)", err, ru.megatron)
		}
		vals[i] = t.ToF32()
		release()
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
