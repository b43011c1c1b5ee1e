package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
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

// withExperts is the Hugging Face family of a family's architecture with experts (when
// experts > 0): Mixtral for Llama and Mistral, Qwen3-MoE for Qwen3.
func withExperts(family string, experts int) string {
	switch {
	case experts == 0:
		return family
	case family == "llama" || family == "mistral":
		return mixtral
	case family == string(hf.Qwen3):
		return string(hf.Qwen3MoE)
	}
	return family
}

// starcoder2Like tells StarCoder 2 from Falcon's sequential (RW) layout among RoPE models
// with LayerNorm: its tanh GeLU, a sliding window, or query groups Falcon's old
// architecture cannot have (its new one needs parallel attention).
func starcoder2Like(c *layers.Config) bool {
	groups := c.NumAttentionHeads
	if c.GroupQueryAttention {
		groups = c.NumQueryGroups
	}
	return c.OpenAIGeLU || c.SlidingWindow > 0 || groups != 1 && groups != c.NumAttentionHeads
}

// inferFamily names the Hugging Face family whose architecture the configuration is.
func inferFamily(c *layers.Config) string {
	switch {
	case c.MultiLatentAttention && (c.MoERouterScoreFunction == "sigmoid" || c.MoERouterEnableExpertBias):
		return string(hf.DeepseekV3)
	case c.MultiLatentAttention:
		return string(hf.DeepseekV2)
	case c.NumExperts > 0 && c.MoESharedExpertIntermediateSize > 0 && !c.MoESharedExpertGate:
		return string(hf.Deepseek)
	case c.NumExperts > 0 && c.MoESharedExpertIntermediateSize > 0:
		return string(hf.Qwen2MoE)
	case c.NumExperts > 0 && c.QKLayernorm:
		return string(hf.Qwen3MoE)
	case c.NumExperts > 0:
		return mixtral
	case c.QKLayernorm:
		return string(hf.Qwen3)
	case c.RotaryInterleaved: // ChatGLM2/3 and GLM-4 (transformers' glm has the same layers)
		return string(hf.ChatGLM)
	case c.Rotary() && c.RotaryPercent < 1 && c.Normalization == "RMSNorm" && c.SwiGLU && !c.AddQKVBias:
		return string(hf.Phi3) // Phi-4-mini's partial rotary (Phi-3 itself reads as Mistral)
	case c.UseNormHead || c.PositionEmbeddingType == "alibi" && c.Normalization == "RMSNorm":
		return string(hf.Baichuan)
	case c.PositionEmbeddingType == "alibi":
		return string(hf.Bloom)
	case c.PositionEmbeddingType == "learned_absolute":
		if c.GroupQueryAttention && c.NumQueryGroups == 1 {
			return string(hf.BigCode)
		}
		return string(hf.GPT2)
	case c.Normalization == "LayerNorm" && !c.ParallelAttention && starcoder2Like(c):
		return string(hf.Starcoder2)
	case c.ParallelAttention || c.ParallelMLPNorm || c.Normalization == "LayerNorm":
		return string(hf.Falcon)
	case c.AddQKVBias:
		return string(hf.Qwen2)
	case c.SlidingWindow > 0:
		return string(hf.Mistral)
	}
	return string(hf.Llama)
}

// hfSource reads a Hugging Face folder (hf.Reader: one tensor at a time, nothing kept
// mapped), each full tensor shaped as the TP = 1 model's parameter.
type hfSource struct {
	r      *hf.Reader
	shapes map[string][]int // full shape by global name
}

func openHF(dir string) (*hfSource, error) {
	r, err := hf.Open(dir)
	if err != nil {
		return nil, err
	}
	shapes, err := fullShapes(r.Config)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &hfSource{r: r, shapes: shapes}, nil
}

func (s *hfSource) kind() string          { return "hf" }
func (s *hfSource) family() string        { return string(s.r.Family) }
func (s *hfSource) config() layers.Config { return s.r.Config }
func (s *hfSource) dtype() tensor.DType   { return s.r.DType() }
func (s *hfSource) close()                { s.r.Close() }

// full converts the rule's Hugging Face tensors into the full Megatron tensor, with its
// shape from the TP=1 parameter description.
func (s *hfSource) full(key string) ([]float32, []int, error) {
	shape, ok := s.shapes[key]
	if !ok {
		return nil, nil, fmt.Errorf("the %s model has no parameter %s", s.r.Family, key)
	}
	v, err := s.r.FullShaped(key, shape)
	return v, shape, err
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
		return fmt.Errorf("--model_name %q: unknown model (llama*, llama2-*, llama3-*, codellama-*, deepseek-moe*, deepseek-v2*, deepseek-v3*, moonlight*, kimi-k2*, deepseek-*, mistral*, mixtral*, qwen-* (Qwen 1.0), qwen3*, qwen1.5-moe*, qwen2-57b-a14b*, qwen* (Qwen1.5 and 2), gpt2*, phi*, internlm2*, chatglm*, glm*, starcoder2*, starcoder*, bloom*, falcon*, baichuan*)", name)
	}
	// Pai's scripts name an upcycled model by its dense one.
	if family != fam && withExperts(fam, 1) == family {
		return nil
	}
	// Pai's mcore Qwen1.5 convertor passes the bare "qwen", which names either generation.
	if strings.ToLower(name) == "qwen" && family == string(hf.Qwen) {
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
		{"llama", "llama"}, {"codellama", "llama"}, {"deepseek-moe", "deepseek"}, {"deepseek-v2", "deepseek_v2"}, {"deepseek_v2", "deepseek_v2"},
		{"deepseek-v3", "deepseek_v3"}, {"deepseek_v3", "deepseek_v3"}, {"moonlight", "deepseek_v3"}, {"kimi-k2", "deepseek_v3"}, {"deepseek", "llama"}, {"mistral", "mistral"}, {"mixtral", mixtral},
		{"qwen-", "qwen"}, {"qwen3-30b-a3b", "qwen3_moe"}, {"qwen3-235b-a22b", "qwen3_moe"}, {"qwen3_moe", "qwen3_moe"},
		{"qwen1.5-moe", "qwen2_moe"}, {"qwen2-57b-a14b", "qwen2_moe"}, {"qwen2_moe", "qwen2_moe"},
		{"qwen3", "qwen3"}, {"qwen", "qwen2"}, {"gpt2", "gpt2"}, {"phi", "phi3"}, {"internlm2", "internlm2"}, {"chatglm", "chatglm"}, {"glm", "glm"}, {"starcoder2", "starcoder2"}, {"starcoder", "gpt_bigcode"}, {"gpt_bigcode", "gpt_bigcode"},
		{"bloom", "bloom"}, {"falcon", "falcon"}, {"baichuan", "baichuan"},
	} {
		if strings.HasPrefix(n, p.prefix) {
			return p.fam, true
		}
	}
	return "", false
}
