package hf

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// WriteConfig writes conf (from ConfigJSON) as dir/config.json — indent 2, sorted keys, as
// save_pretrained — after checking that it reads back as cfg's architecture, and returns
// the model it describes.
func WriteConfig(dir string, conf map[string]any, cfg *layers.Config) (*Model, error) {
	m, b, err := renderConfig(dir, conf, cfg)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "config.json"), b); err != nil {
		return nil, err
	}
	return m, nil
}

// renderConfig renders conf as config.json bytes and parses them back: the result must
// describe cfg's architecture.
func renderConfig(dir string, conf map[string]any, cfg *layers.Config) (*Model, []byte, error) {
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	b = append(b, '\n')
	m, err := parseConfig(dir, b)
	if err != nil {
		return nil, nil, fmt.Errorf("the written config.json does not load: %w", err)
	}
	g := &m.Config
	if g.NumLayers != cfg.NumLayers || g.HiddenSize != cfg.HiddenSize || g.FFNHiddenSize != cfg.FFNHiddenSize ||
		g.NumAttentionHeads != cfg.NumAttentionHeads || g.NumQueryGroups != cfg.NumQueryGroups ||
		g.KVChannels != cfg.KVChannels || g.VocabSize != cfg.VocabSize || g.SwiGLU != cfg.SwiGLU ||
		g.Normalization != cfg.Normalization || g.PositionEmbeddingType != cfg.PositionEmbeddingType ||
		g.UntieEmbeddingsAndOutputWeights != cfg.UntieEmbeddingsAndOutputWeights || g.AddBiasLinear() != cfg.AddBiasLinear() ||
		g.AddQKVBias != cfg.AddQKVBias || g.ParallelAttention != cfg.ParallelAttention || g.EmbeddingLayerNorm != cfg.EmbeddingLayerNorm ||
		g.TanhGeLU() != cfg.TanhGeLU() || g.NormEpsilon != cfg.NormEpsilon || g.UseNormHead != cfg.UseNormHead ||
		g.NumExperts != cfg.NumExperts || g.NumExperts > 0 && (g.MoERouterTopK != cfg.MoERouterTopK || !sameRouter(g, cfg)) || !sameMLA(g, cfg) {
		return nil, nil, fmt.Errorf("the %s config.json cannot express this checkpoint's architecture (Hugging Face reads it back as %+v)", m.Family, *g)
	}
	return m, b, nil
}

// sameRouter reports whether a and b have the same router options of DeepSeek-V3's: score
// function, expert bias, top-k scaling (0 and 1 both none) and groups (none where every
// group is kept).
func sameRouter(a, b *layers.Config) bool {
	scale := func(c *layers.Config) float64 {
		if c.MoERouterTopKScaling == 0 {
			return 1
		}
		return c.MoERouterTopKScaling
	}
	groups := func(c *layers.Config) [2]int {
		if c.MoERouterGroupTopK >= c.MoERouterNumGroups {
			return [2]int{}
		}
		return [2]int{c.MoERouterNumGroups, c.MoERouterGroupTopK}
	}
	return a.MoERouterScoreFunction == b.MoERouterScoreFunction && a.MoERouterEnableExpertBias == b.MoERouterEnableExpertBias &&
		scale(a) == scale(b) && groups(a) == groups(b)
}

// sameMLA reports whether a and b have the same multi-latent attention (or none): latent
// ranks, head widths, latent norms, RoPE scaling and softmax scale.
func sameMLA(a, b *layers.Config) bool {
	if !a.MultiLatentAttention || !b.MultiLatentAttention {
		return a.MultiLatentAttention == b.MultiLatentAttention
	}
	return a.QLoRARank == b.QLoRARank && a.KVLoRARank == b.KVLoRARank && a.QKHeadDim == b.QKHeadDim &&
		a.QKPosEmbHeadDim == b.QKPosEmbHeadDim && a.VHeadDim == b.VHeadDim && a.QKLayernorm == b.QKLayernorm &&
		a.RotaryBase == b.RotaryBase && a.RoPEScaling() == b.RoPEScaling() && a.SoftmaxScale() == b.SoftmaxScale()
}

// saveShardBytes is save_pretrained's default max_shard_size, 5 GB.
const saveShardBytes = 5_000_000_000

// Save writes a whole model (TP 1, PP 1, EP 1) as a Hugging Face folder of the family:
// the weights in dtype as save_pretrained stores them (model.safetensors, or 5 GB shards
// with model.safetensors.index.json; embeddings first), then config.json (ConfigJSON over
// base, an existing config.json's keys such as the token ids, or nil), so a folder with a
// config.json is complete. A mixture-of-experts model saves as Mixtral. The vocabulary
// padding rows (PaddedVocabSize > VocabSize) of the embedding and output layer are
// dropped; DeepSeek-V3's expert bias stays float32 (StoredDType). dir must not hold
// weights already.
func Save(be kernels.Backend, gm *layers.GPTModel, dir string, family Family, dtype tensor.DType, base map[string]any) (*Model, error) {
	for _, pat := range []string{"*.safetensors", safetensors.IndexFile, "pytorch_model*.bin"} {
		if old, _ := filepath.Glob(filepath.Join(dir, pat)); len(old) > 0 {
			return nil, fmt.Errorf("saving a Hugging Face model: %s already holds weights (%s)", dir, filepath.Base(old[0]))
		}
	}
	cfg := gm.Cfg
	cfg.PaddedVocabSize = cfg.VocabSize
	conf, err := ConfigJSON(family, &cfg, dtype, base)
	if err != nil {
		return nil, err
	}
	m, b, err := renderConfig(dir, conf, &cfg)
	if err != nil {
		return nil, err
	}
	var emb, rest []safetensors.Named
	err = m.export(be, gm, false, func(meg, name string, v []float32, shape []int) error {
		p, part := gm.Params.Find(meg)
		if part >= 0 {
			p = p.Experts[part]
		}
		if !tensor.SameShape(p.Shape, p.FullShape) {
			return fmt.Errorf("saving a Hugging Face model: %s is a shard %v of %v; Save needs the whole model (TP 1)", meg, p.Shape, p.FullShape)
		}
		if (meg == "embedding.word_embeddings.weight" || meg == "output_layer.weight") && shape[0] > cfg.VocabSize {
			v, shape = v[:cfg.VocabSize*shape[1]], []int{cfg.VocabSize, shape[1]}
		}
		t := safetensors.Named{Name: name, T: tensor.FromF32Values(StoredDType(name, dtype), v, shape...)}
		if strings.HasPrefix(meg, "embedding.") {
			emb = append(emb, t)
		} else {
			rest = append(rest, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saving a Hugging Face model (the whole model, TP 1, PP 1, EP 1): %w", err)
	}
	if err := safetensors.WriteSharded(dir, append(emb, rest...), saveShardBytes, map[string]string{"format": "pt"}); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "config.json"), b); err != nil {
		return nil, err
	}
	return m, nil
}
