package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// source yields the model's full (unsharded) tensors by global Megatron name
// (layers.Param.InitKey) in Megatron's layout, one at a time.
type source interface {
	kind() string   // "hf" or "megatron"
	family() string // Hugging Face model_type, "" when unknown
	// config is the architecture; VocabSize is the true vocabulary and PaddedVocabSize the
	// word-embedding rows the source stores.
	config() layers.Config
	dtype() tensor.DType
	full(key string) ([]float32, []int, error)
	close()
}

// openSource recognises a Megatron checkpoint (tracker file, release/ or iter_ folder, or
// mp_rank_* folders) or a Hugging Face folder (config.json).
func openSource(path, modelName string) (source, error) {
	if _, err := megatron.Resolve(path); err == nil {
		return openMegatron(path, modelName)
	}
	if _, err := os.Stat(filepath.Join(path, "config.json")); err == nil {
		return openHF(path)
	}
	return nil, fmt.Errorf("--load_path %s is neither a Megatron checkpoint (no %s, not a release/ or iter_XXXXXXX folder) nor a Hugging Face folder (no config.json)", path, megatron.TrackerFile)
}

// megatronSource reads a Megatron checkpoint.
type megatronSource struct{ c *megatron.Checkpoint }

func openMegatron(path, modelName string) (*megatronSource, error) {
	c, err := megatron.OpenWith(path, paiArgsFixer(modelName))
	if err != nil {
		return nil, err
	}
	return &megatronSource{c}, nil
}

func (s *megatronSource) kind() string { return "megatron" }
func (s *megatronSource) family() string {
	if s.c.Info.HFModelType != "" {
		return s.c.Info.HFModelType
	}
	return inferFamily(&s.c.Config)
}
func (s *megatronSource) config() layers.Config                     { return s.c.Config }
func (s *megatronSource) dtype() tensor.DType                       { return s.c.DType }
func (s *megatronSource) full(key string) ([]float32, []int, error) { return s.c.Full(key) }
func (s *megatronSource) close()                                    { s.c.Close() }

// mixtral is Hugging Face's model_type for Mixtral (MixtralForCausalLM), the family of
// every mixture-of-experts model here.
const mixtral = string(hf.Mixtral)

// inferFamily names the Hugging Face family whose architecture the configuration is.
func inferFamily(c *layers.Config) string {
	switch {
	case c.NumExperts > 0:
		return mixtral
	case c.PositionEmbeddingType == "alibi":
		return string(hf.Bloom)
	case c.PositionEmbeddingType == "learned_absolute":
		if c.GroupQueryAttention && c.NumQueryGroups == 1 {
			return string(hf.BigCode)
		}
		return string(hf.GPT2)
	case c.ParallelAttention || c.Normalization == "LayerNorm":
		return string(hf.Falcon)
	case c.AddQKVBias:
		return string(hf.Qwen2)
	case c.SlidingWindow > 0:
		return string(hf.Mistral)
	}
	return string(hf.Llama)
}

// hfTensor locates one Hugging Face tensor: in a safetensors file (read with pread, so
// nothing stays mapped) or in a mapped pytorch_model*.bin.
type hfTensor struct {
	path  string
	off   int64 // absolute byte offset (safetensors)
	info  safetensors.Info
	bin   *megatron.MappedFile
	binT  *tensor.Tensor
	shape []int
}

// hfSource reads a Hugging Face folder through the family's mapping rules.
type hfSource struct {
	m       *hf.Model
	rules   map[string]hf.Rule
	tensors map[string]*hfTensor
	bins    []*megatron.MappedFile
	dt      tensor.DType
	shapes  map[string][]int // full shape by global name
}

func openHF(dir string) (*hfSource, error) {
	m, err := hf.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	s := &hfSource{m: m, rules: map[string]hf.Rule{}, tensors: map[string]*hfTensor{}}
	rules, err := m.Rules()
	if err != nil {
		return nil, err
	}
	if s.shapes, err = fullShapes(m.Config); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	for _, r := range rules {
		s.rules[r.Megatron] = r
	}
	bins, _ := filepath.Glob(filepath.Join(dir, "pytorch_model*.bin"))
	sts, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if len(sts) > 0 {
		err = s.indexSafetensors(dir)
	} else if len(bins) > 0 {
		sort.Strings(bins)
		err = s.indexBins(bins)
	} else {
		err = fmt.Errorf("%s has neither *.safetensors nor pytorch_model*.bin files", dir)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	used := map[string]bool{}
	for _, r := range rules {
		for _, n := range r.HF {
			if _, ok := s.tensors[n]; !ok {
				s.close()
				return nil, fmt.Errorf("%s: tensor %s (needed for %s) is missing", dir, n, r.Megatron)
			}
			used[n] = true
		}
	}
	for n, t := range s.tensors {
		if !used[n] && !hf.IgnoredHF(n) && !(n == "lm_head.weight" && !m.Config.UntieEmbeddingsAndOutputWeights) {
			s.close()
			return nil, fmt.Errorf("%s: tensor %s is not used by the %s mapping", t.path, n, m.Family)
		}
	}
	if r, ok := s.rules["embedding.word_embeddings.weight"]; ok {
		s.dt = s.tensors[r.HF[0]].dtype()
	}
	return s, nil
}

func (t *hfTensor) dtype() tensor.DType {
	if t.binT != nil {
		return t.binT.DType()
	}
	return t.info.DType
}

// indexSafetensors records where every tensor of the folder's safetensors set lives.
func (s *hfSource) indexSafetensors(dir string) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	for _, f := range set.Files() {
		base, err := dataStart(f.Path())
		if err != nil {
			return err
		}
		for _, in := range f.Infos() {
			s.tensors[in.Name] = &hfTensor{path: f.Path(), off: base + in.Begin, info: in, shape: in.Shape}
		}
	}
	return nil
}

// dataStart is the byte offset of a safetensors file's data section: 8 + header length.
func dataStart(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, fmt.Errorf("%s: reading the header length: %w", path, err)
	}
	return 8 + int64(binary.LittleEndian.Uint64(b[:])), nil
}

// indexBins maps every pytorch_model*.bin (a pickled OrderedDict of tensors).
func (s *hfSource) indexBins(paths []string) error {
	for _, p := range paths {
		if strings.HasSuffix(p, ".index.json") {
			continue
		}
		mf, err := megatron.MapTorchFile(p)
		if err != nil {
			return err
		}
		s.bins = append(s.bins, mf)
		d, ok := mf.Value.(*torchpickle.Dict)
		if !ok {
			return fmt.Errorf("%s holds a %T, not a state dict", p, mf.Value)
		}
		for _, nt := range torchpickle.Flatten(d) {
			if _, dup := s.tensors[nt.Name]; dup {
				return fmt.Errorf("%s: tensor %s is also in %s", p, nt.Name, s.tensors[nt.Name].path)
			}
			s.tensors[nt.Name] = &hfTensor{path: p, bin: mf, binT: nt.T, shape: nt.T.Shape()}
		}
	}
	return nil
}

// read returns the tensor's values in a fresh buffer (safetensors) or as a view that is
// released after conversion (bin).
func (t *hfTensor) read() (*tensor.Tensor, func(), error) {
	if t.binT != nil {
		return t.binT, func() { t.bin.Release(t.binT) }, nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b := make([]byte, t.info.End-t.info.Begin)
	if _, err := f.ReadAt(b, t.off); err != nil {
		return nil, nil, fmt.Errorf("%s: reading tensor %s: %w", t.path, t.info.Name, err)
	}
	x, err := tensor.FromBytes(t.info.DType, t.info.Shape, b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %s: %w", t.path, t.info.Name, err)
	}
	return x, func() {}, nil
}

func (s *hfSource) kind() string          { return "hf" }
func (s *hfSource) family() string        { return string(s.m.Family) }
func (s *hfSource) config() layers.Config { return s.m.Config }
func (s *hfSource) dtype() tensor.DType   { return s.dt }

// full converts the rule's Hugging Face tensors into the full Megatron tensor, with its
// shape from the TP=1 parameter description.
func (s *hfSource) full(key string) ([]float32, []int, error) {
	r, ok := s.rules[key]
	if !ok {
		return nil, nil, fmt.Errorf("the %s mapping has no source for %s", s.m.Family, key)
	}
	shape, ok := s.shapes[key]
	if !ok {
		return nil, nil, fmt.Errorf("the %s model has no parameter %s", s.m.Family, key)
	}
	want := s.m.HFShapes(r, shape)
	src := make([]*tensor.Tensor, len(r.HF))
	for i, n := range r.HF {
		t := s.tensors[n]
		if !tensor.SameShape(t.shape, want[i]) {
			return nil, nil, fmt.Errorf("%s: %s has shape %v, want %v for %s", t.path, n, t.shape, want[i], key)
		}
		x, done, err := t.read()
		if err != nil {
			return nil, nil, err
		}
		defer done()
		src[i] = x
	}
	v, err := s.m.ToMegatron(r, src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", s.m.Dir, key, err)
	}
	if n := tensor.ShapeNumel(shape); n != len(v) {
		return nil, nil, fmt.Errorf("%s: %v (shapes %v) give %d values for %s, whose shape %v needs %d", s.m.Dir, r.HF, shapesOf(src), len(v), key, shape, n)
	}
	return v, shape, nil
}

func (s *hfSource) close() {
	for _, b := range s.bins {
		b.Close()
	}
}

// fullShapes gives every full tensor's shape by global name (a GroupedMLP weight's
// experts each).
func fullShapes(cfg layers.Config) (map[string][]int, error) {
	specs, err := layers.Specs(cfg, layers.Parallel{TPSize: 1, PPSize: 1})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]int, len(specs))
	for _, p := range specs {
		for _, q := range p.Logical() {
			out[q.InitKey] = q.FullShape
		}
	}
	return out, nil
}

func shapesOf(ts []*tensor.Tensor) [][]int {
	out := make([][]int, len(ts))
	for i, t := range ts {
		out[i] = t.Shape()
	}
	return out
}

// targetDType parses --target_params_dtype; empty keeps the source's dtype.
func targetDType(flag string, src tensor.DType) (tensor.DType, error) {
	switch strings.ToLower(flag) {
	case "":
		if src == tensor.Invalid || src == tensor.F64 {
			return tensor.F32, nil
		}
		return src, nil
	case "fp16", "float16", "half":
		return tensor.F16, nil
	case "bf16", "bfloat16":
		return tensor.BF16, nil
	case "fp32", "float32", "float":
		return tensor.F32, nil
	}
	return tensor.Invalid, fmt.Errorf("--target_params_dtype %q: want fp16, bf16 or fp32", flag)
}

// checkModelName compares Pai's --model_name with the family read from the source.
func checkModelName(name, family string) error {
	if name == "" {
		return nil
	}
	fam, ok := familyOfModelName(name)
	if !ok {
		return fmt.Errorf("--model_name %q: unknown model (llama*, llama2-*, llama3-*, codellama-*, deepseek-*, mistral*, mixtral*, qwen*, gpt2*, starcoder*, bloom*, falcon*)", name)
	}
	// Mixtral is Mistral's (and Llama's) architecture with experts: Pai's scripts name an
	// upcycled Llama by its dense model.
	if family == mixtral && (fam == "llama" || fam == "mistral") {
		return nil
	}
	if family != "" && fam != family {
		return fmt.Errorf("--model_name %q is a %s model, but the source is %s", name, fam, family)
	}
	return nil
}

// familyOfModelName maps Pai's model names (and Hugging Face ones) to a family.
func familyOfModelName(name string) (string, bool) {
	n := strings.ToLower(name)
	for _, p := range []struct{ prefix, fam string }{
		{"llama", "llama"}, {"codellama", "llama"}, {"deepseek", "llama"}, {"mistral", "mistral"}, {"mixtral", mixtral},
		{"qwen", "qwen2"}, {"gpt2", "gpt2"}, {"starcoder", "gpt_bigcode"}, {"gpt_bigcode", "gpt_bigcode"},
		{"bloom", "bloom"}, {"falcon", "falcon"},
	} {
		if strings.HasPrefix(n, p.prefix) {
			return p.fam, true
		}
	}
	return "", false
}
