package layers

import (
	"fmt"
	"sort"
)

// preset describes a published model shape; zero fields keep the family's values.
type preset struct {
	family                          string // llama, gpt2, bloom, falcon, starcoder
	layers, hidden, ffn, heads, kvg int
	vocab, seq                      int
	ropeBase, eps                   float64
	window                          int
	qkvBias                         bool
}

var presets = map[string]preset{
	// Llama family (Meta's published shapes; 70B and Llama-3 use GQA with 8 groups).
	"llama-7b":      {"llama", 32, 4096, 11008, 32, 0, 32000, 2048, 1e4, 1e-6, 0, false},
	"llama-13b":     {"llama", 40, 5120, 13824, 40, 0, 32000, 2048, 1e4, 1e-6, 0, false},
	"llama2-7b":     {"llama", 32, 4096, 11008, 32, 0, 32000, 4096, 1e4, 1e-5, 0, false},
	"llama2-13b":    {"llama", 40, 5120, 13824, 40, 0, 32000, 4096, 1e4, 1e-5, 0, false},
	"llama2-70b":    {"llama", 80, 8192, 28672, 64, 8, 32000, 4096, 1e4, 1e-5, 0, false},
	"llama3-8b":     {"llama", 32, 4096, 14336, 32, 8, 128256, 8192, 5e5, 1e-5, 0, false},
	"llama3-70b":    {"llama", 80, 8192, 28672, 64, 8, 128256, 8192, 5e5, 1e-5, 0, false},
	"codellama-7b":  {"llama", 32, 4096, 11008, 32, 0, 32016, 16384, 1e6, 1e-5, 0, false},
	"codellama-13b": {"llama", 40, 5120, 13824, 40, 0, 32016, 16384, 1e6, 1e-5, 0, false},
	"codellama-34b": {"llama", 48, 8192, 22016, 64, 8, 32000, 16384, 1e6, 1e-5, 0, false},
	"mistral-7b":    {"llama", 32, 4096, 14336, 32, 8, 32000, 32768, 1e4, 1e-5, 4096, false},
	"qwen2-7b":      {"llama", 28, 3584, 18944, 28, 4, 152064, 32768, 1e6, 1e-6, 0, true},
	"gpt2":          {"gpt2", 12, 768, 3072, 12, 0, 50257, 1024, 0, 1e-5, 0, false},
	"gpt2-medium":   {"gpt2", 24, 1024, 4096, 16, 0, 50257, 1024, 0, 1e-5, 0, false},
	"bloom-560m":    {"bloom", 24, 1024, 4096, 16, 0, 250880, 2048, 0, 1e-5, 0, false},
	"bloom-7b1":     {"bloom", 30, 4096, 16384, 32, 0, 250880, 2048, 0, 1e-5, 0, false},
	"falcon-7b":     {"falcon", 32, 4544, 18176, 71, 1, 65024, 2048, 1e4, 1e-5, 0, false},
	"starcoder":     {"starcoder", 40, 6144, 24576, 48, 1, 49152, 8192, 0, 1e-5, 0, false},
	// Small shapes for CPUs and tests.
	"tiny-llama":  {"llama", 2, 64, 172, 4, 2, 256, 128, 1e4, 1e-5, 0, false},
	"tiny-gpt2":   {"gpt2", 2, 64, 256, 4, 0, 256, 128, 0, 1e-5, 0, false},
	"small-llama": {"llama", 4, 256, 688, 8, 4, 32000, 256, 1e4, 1e-5, 0, false},
	"bench-llama": {"llama", 6, 512, 1376, 8, 0, 32000, 256, 1e4, 1e-5, 0, false},
}

// PresetNames lists the known presets.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the Megatron configuration of a published model shape (llama2-7b,
// llama3-8b, codellama-34b, …) or a tiny test size, with dropout off as when fine-tuning a
// converted checkpoint.
func Preset(name string) (Config, error) {
	p, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown model preset %q (known: %v)", name, PresetNames())
	}
	c := Defaults()
	c.NumLayers, c.HiddenSize, c.FFNHiddenSize, c.NumAttentionHeads = p.layers, p.hidden, p.ffn, p.heads
	c.VocabSize, c.SeqLength, c.MaxPositionEmbeddings = p.vocab, p.seq, p.seq
	c.NormEpsilon = p.eps
	c.AttentionDropout, c.HiddenDropout = 0, 0
	if p.kvg > 0 {
		c.GroupQueryAttention, c.NumQueryGroups = true, p.kvg
	}
	switch p.family {
	case "llama":
		c.Normalization, c.SwiGLU, c.PositionEmbeddingType = "RMSNorm", true, "rope"
		c.RotaryBase = p.ropeBase
		c.DisableBiasLinear, c.UntieEmbeddingsAndOutputWeights = true, true
		c.AddQKVBias = p.qkvBias
		c.SlidingWindow = p.window
	case "gpt2", "starcoder":
		c.OpenAIGeLU = true
	case "bloom":
		c.OpenAIGeLU, c.PositionEmbeddingType, c.EmbeddingLayerNorm = true, "alibi", true
	case "falcon":
		c.PositionEmbeddingType, c.RotaryBase, c.ParallelAttention, c.DisableBiasLinear = "rope", p.ropeBase, true, true
	}
	return c, nil
}

// ParamCount is the number of parameters the configuration builds (TP=1), computed from
// the shapes without allocating them.
func ParamCount(c Config) (int64, error) {
	if err := c.Finalize(); err != nil {
		return 0, err
	}
	h, L := int64(c.HiddenSize), int64(c.NumLayers)
	norm := h
	if c.Normalization == "LayerNorm" {
		norm = 2 * h
	}
	bias := func(n int64, on bool) int64 {
		if on {
			return n
		}
		return 0
	}
	attnOut := int64(c.NumAttentionHeads * c.KVChannels)
	layer := norm + h*int64(c.QKVDim()) + bias(int64(c.QKVDim()), c.AddBiasLinear() || c.AddQKVBias) +
		attnOut*h + bias(h, c.AddBiasLinear()) +
		h*int64(c.FC1Dim()) + bias(int64(c.FC1Dim()), c.AddBiasLinear()) +
		int64(c.FFNHiddenSize)*h + bias(h, c.AddBiasLinear())
	if !c.ParallelAttention {
		layer += norm
	}
	n := L*layer + norm + int64(c.PaddedVocabSize)*h
	if c.UntieEmbeddingsAndOutputWeights {
		n += int64(c.PaddedVocabSize) * h
	}
	if c.PositionEmbeddingType == "learned_absolute" {
		n += int64(c.MaxPositionEmbeddings) * h
	}
	if c.EmbeddingLayerNorm {
		n += norm
	}
	return n, nil
}
