package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// hfConfig renders config.json for the family from a Megatron configuration, on top of
// base (an existing config.json's keys, e.g. bos/eos ids, kept unless they describe the
// architecture). readHFModel of the result gives back cfg's architecture.
func hfConfig(family string, cfg *layers.Config, dtype tensor.DType, base map[string]any) (map[string]any, error) {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	tied := !cfg.UntieEmbeddingsAndOutputWeights
	m["vocab_size"] = cfg.VocabSize
	m["tie_word_embeddings"] = tied
	m["torch_dtype"] = dtype.String()
	m["model_type"] = family
	delete(m, "_name_or_path")
	if cfg.NumExperts > 0 && family != mixtral {
		return nil, fmt.Errorf("a %s model has no experts; this mixture-of-experts checkpoint (%d experts) converts to mixtral", family, cfg.NumExperts)
	}
	switch hf.Family(family) {
	case hf.Llama, hf.Mistral, hf.Qwen2, mixtral:
		if cfg.Normalization != "RMSNorm" || !cfg.SwiGLU || cfg.PositionEmbeddingType != "rope" || cfg.RotaryPercent != 1 {
			return nil, fmt.Errorf("a %s model needs RMSNorm, SwiGLU and full RoPE; the checkpoint has %s, swiglu=%v, %s (rotary_percent %v)",
				family, cfg.Normalization, cfg.SwiGLU, cfg.PositionEmbeddingType, cfg.RotaryPercent)
		}
		arch := map[hf.Family]string{hf.Llama: "LlamaForCausalLM", hf.Mistral: "MistralForCausalLM", hf.Qwen2: "Qwen2ForCausalLM", mixtral: "MixtralForCausalLM"}
		m["architectures"] = []string{arch[hf.Family(family)]}
		m["hidden_size"] = cfg.HiddenSize
		m["intermediate_size"] = cfg.FFNHiddenSize
		m["num_attention_heads"] = cfg.NumAttentionHeads
		m["num_key_value_heads"] = cfg.NumQueryGroups
		m["num_hidden_layers"] = cfg.NumLayers
		m["rms_norm_eps"] = cfg.NormEpsilon
		m["rope_theta"] = cfg.RotaryBase
		m["rope_scaling"] = nil
		if cfg.MaxPositionEmbeddings > 0 { // absent from Pai's args: keep the base config's
			m["max_position_embeddings"] = cfg.MaxPositionEmbeddings
		}
		m["hidden_act"] = "silu"
		if cfg.KVChannels*cfg.NumAttentionHeads != cfg.HiddenSize {
			m["head_dim"] = cfg.KVChannels
		} else {
			delete(m, "head_dim")
		}
		switch hf.Family(family) {
		case hf.Llama:
			if cfg.AddQKVBias && cfg.DisableBiasLinear {
				return nil, fmt.Errorf("a llama model cannot have a QKV bias without the other biases (use qwen2)")
			}
			m["attention_bias"] = cfg.AddBiasLinear()
		case hf.Mistral:
			if cfg.SlidingWindow > 0 {
				m["sliding_window"] = cfg.SlidingWindow
			} else {
				m["sliding_window"] = nil
			}
		case hf.Qwen2:
			m["use_sliding_window"] = cfg.SlidingWindow > 0
			if cfg.SlidingWindow > 0 {
				m["sliding_window"] = cfg.SlidingWindow
			}
		case mixtral:
			if err := mixtralConfigKeys(m, cfg); err != nil {
				return nil, err
			}
		}
	case hf.GPT2, hf.BigCode:
		m["architectures"] = []string{map[hf.Family]string{hf.GPT2: "GPT2LMHeadModel", hf.BigCode: "GPTBigCodeForCausalLM"}[hf.Family(family)]}
		m["n_embd"] = cfg.HiddenSize
		m["n_head"] = cfg.NumAttentionHeads
		m["n_layer"] = cfg.NumLayers
		m["n_inner"] = cfg.FFNHiddenSize
		m["n_positions"] = cfg.MaxPositionEmbeddings
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["activation_function"] = "gelu"
		if cfg.OpenAIGeLU {
			m["activation_function"] = "gelu_new"
		}
		m["scale_attn_weights"] = true
		if hf.Family(family) == hf.BigCode {
			m["multi_query"] = cfg.GroupQueryAttention && cfg.NumQueryGroups == 1
		}
	case hf.Bloom:
		m["architectures"] = []string{"BloomForCausalLM"}
		m["hidden_size"] = cfg.HiddenSize
		m["n_head"] = cfg.NumAttentionHeads
		m["n_layer"] = cfg.NumLayers
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["apply_residual_connection_post_layernorm"] = cfg.ApplyResidualConnectionPostLayernorm
	case hf.Falcon:
		m["architectures"] = []string{"FalconForCausalLM"}
		m["hidden_size"] = cfg.HiddenSize
		m["num_attention_heads"] = cfg.NumAttentionHeads
		m["num_hidden_layers"] = cfg.NumLayers
		m["layer_norm_epsilon"] = cfg.NormEpsilon
		m["multi_query"] = cfg.GroupQueryAttention && cfg.NumQueryGroups == 1
		m["parallel_attn"] = cfg.ParallelAttention
		m["bias"] = cfg.AddBiasLinear()
		m["alibi"] = false
		m["new_decoder_architecture"] = false
		m["rope_theta"] = cfg.RotaryBase
	default:
		return nil, fmt.Errorf("no Hugging Face config for family %q", family)
	}
	return m, nil
}

// readJSONMap reads a JSON object file; a missing file gives nil.
func readJSONMap(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// writeHFConfig writes config.json (indent 2, sorted keys, as save_pretrained) and reads
// it back through readHFModel, which checks that it describes cfg.
func writeHFConfig(dir string, m map[string]any, cfg *layers.Config) (*hfModel, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, "config.json"), append(b, '\n')); err != nil {
		return nil, err
	}
	hm, err := readHFModel(dir)
	if err != nil {
		return nil, fmt.Errorf("the written config.json does not load: %w", err)
	}
	g := &hm.Config
	if g.NumLayers != cfg.NumLayers || g.HiddenSize != cfg.HiddenSize || g.FFNHiddenSize != cfg.FFNHiddenSize ||
		g.NumAttentionHeads != cfg.NumAttentionHeads || g.NumQueryGroups != cfg.NumQueryGroups ||
		g.KVChannels != cfg.KVChannels || g.VocabSize != cfg.VocabSize || g.SwiGLU != cfg.SwiGLU ||
		g.Normalization != cfg.Normalization || g.PositionEmbeddingType != cfg.PositionEmbeddingType ||
		g.UntieEmbeddingsAndOutputWeights != cfg.UntieEmbeddingsAndOutputWeights || g.AddBiasLinear() != cfg.AddBiasLinear() ||
		g.AddQKVBias != cfg.AddQKVBias || g.ParallelAttention != cfg.ParallelAttention || g.EmbeddingLayerNorm != cfg.EmbeddingLayerNorm ||
		g.OpenAIGeLU != cfg.OpenAIGeLU || g.NormEpsilon != cfg.NormEpsilon ||
		g.NumExperts != cfg.NumExperts || g.NumExperts > 0 && g.MoERouterTopK != cfg.MoERouterTopK {
		return nil, fmt.Errorf("the %s config.json cannot express this checkpoint's architecture (Hugging Face reads it back as %+v)", hm.Family, *g)
	}
	return hm, nil
}
