// Package hf maps Hugging Face checkpoints (config.json + safetensors) of the supported model
// families onto gomegatron's Megatron-named model, and back.
package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/layers"
)

// Family identifies a Hugging Face architecture and its weight layout.
type Family string

const (
	Llama   Family = "llama" // Llama, Llama-2, Code Llama, Llama-3
	Mistral Family = "mistral"
	Qwen2   Family = "qwen2"
	Qwen3   Family = "qwen3"   // Qwen2's layers with RMSNorm on each head's queries and keys
	Mixtral Family = "mixtral" // Mistral's architecture with a sparse MoE block in every layer
	// Qwen3MoE: Qwen3's attention with a sparse MoE block (mlp.gate, mlp.experts.E.*_proj)
	// in every layer.
	Qwen3MoE Family = "qwen3_moe"
	// Qwen2MoE: Qwen1.5-MoE and Qwen2-MoE, Qwen2's attention (QKV bias) with top-k of the
	// softmax over the experts plus a gated shared expert (mlp.shared_expert{,_gate})
	Qwen2MoE Family = "qwen2_moe"
	// Deepseek: DeepSeek-MoE's remote code (model_type deepseek): Llama's attention, dense
	// first layers, routed experts and ungated shared experts (mlp.shared_experts)
	Deepseek Family = "deepseek"
	// DeepseekV2: DeepSeek-V2 and DeepSeek-V2-Lite (remote DeepseekV2ForCausalLM):
	// DeepSeek-MoE's MLP blocks with multi-latent attention (q_proj or q_a_proj/q_b_proj,
	// kv_a_proj_with_mqa, kv_b_proj, their latent RMSNorms) and YaRN on the rotary part
	DeepseekV2 Family = "deepseek_v2"
	// DeepseekV3: DeepSeek-V3, Moonlight-16B-A3B and Kimi-K2 (transformers'
	// DeepseekV3ForCausalLM, and DeepSeek's remote code): DeepSeek-V2's attention and MLP
	// blocks with a sigmoid router whose expert bias (mlp.gate.e_score_correction_bias)
	// chooses the experts, within groups, and routed_scaling_factor on the weights
	DeepseekV3 Family = "deepseek_v3"
	GPT2       Family = "gpt2"
	Bloom      Family = "bloom"
	Falcon     Family = "falcon"
	BigCode    Family = "gpt_bigcode" // StarCoder
	// Starcoder2: StarCoder 2's pre-LayerNorm GQA with RoPE, biases everywhere and a
	// tanh-approximated GeLU MLP (mlp.c_fc, mlp.c_proj)
	Starcoder2 Family = "starcoder2"
	// Internlm2: InternLM2's remote code, Llama's layers with the QKV fused per KV group
	// (attention.wqkv) and its own names
	Internlm2 Family = "internlm2"
	// ChatGLM: ChatGLM2/3's and GLM-4-9B-chat's remote code, Megatron-like names
	// (transformer.encoder.layers), [q | k | v] with multi-query groups, RoPE on half of each
	// head in interleaved pairs, base 10000·rope_ratio
	ChatGLM Family = "chatglm"
	// GLM: transformers' GlmForCausalLM (GLM-4-9B-hf): Llama's names, QKV biases, a fused
	// gate_up_proj and ChatGLM's interleaved partial RoPE
	GLM Family = "glm"
	// Phi3: Phi-3 and Phi-3.5 (transformers' Phi3ForCausalLM): Llama's layers with a fused
	// qkv_proj = [q | k | v] and gate_up_proj = [gate; up], a sliding window
	Phi3 Family = "phi3"
	// Baichuan: Baichuan-7B/13B and Baichuan 2 (remote code): Llama's layers with one
	// W_pack [q; k; v] projection; the 13B models use ALiBi instead of RoPE, and Baichuan 2's
	// lm_head is a NormHead.
	Baichuan Family = "baichuan"
	// Qwen: Qwen (1.0, QWenLMHeadModel, remote code): Llama's layers with a biased c_attn
	// [q; k; v] and the MLP's gate in w2, up in w1.
	Qwen      Family = "qwen"
	unknownFF Family = ""
)

// hfConfig is the union of the config.json keys the families use. Pointers tell "absent"
// from zero where Hugging Face's default differs.
type hfConfig struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`
	VocabSize     int      `json:"vocab_size"`
	TieWord       *bool    `json:"tie_word_embeddings"`

	// Llama family
	HiddenSize     int              `json:"hidden_size"`
	Intermediate   int              `json:"intermediate_size"`
	NumHeads       int              `json:"num_attention_heads"`
	NumKVHeads     int              `json:"num_key_value_heads"`
	NumLayers      int              `json:"num_hidden_layers"`
	RMSNormEps     float64          `json:"rms_norm_eps"`
	RopeTheta      *float64         `json:"rope_theta"`
	RopeScaling    *json.RawMessage `json:"rope_scaling"`
	RopeParameters *json.RawMessage `json:"rope_parameters"` // transformers ≥ 5 writes rope_theta here
	MaxPos         int              `json:"max_position_embeddings"`
	ModelMaxLength int              `json:"model_max_length"`

	// Qwen (1.0)
	KVChannels       int      `json:"kv_channels"`
	RotaryEmbBase    *float64 `json:"rotary_emb_base"`
	RotaryPct        *float64 `json:"rotary_pct"`
	QwenSeqLength    int      `json:"seq_length"`
	NoBias           *bool    `json:"no_bias"`
	AttentionBias    bool     `json:"attention_bias"`
	HiddenAct        string   `json:"hidden_act"`
	SlidingWindow    *int     `json:"sliding_window"`
	UseSlidingWindow *bool    `json:"use_sliding_window"`
	HeadDim          int      `json:"head_dim"`

	// GPT-2 / GPTBigCode
	NEmbd      int     `json:"n_embd"`
	NHead      int     `json:"n_head"`
	NLayer     int     `json:"n_layer"`
	NInner     *int    `json:"n_inner"`
	NPositions int     `json:"n_positions"`
	LNEps      float64 `json:"layer_norm_epsilon"`
	Activation string  `json:"activation_function"`
	MultiQuery *bool   `json:"multi_query"`
	ScaleAttn  *bool   `json:"scale_attn_weights"`
	ScaleByIdx bool    `json:"scale_attn_by_inverse_layer_idx"`
	Reorder    bool    `json:"reorder_and_upcast_attn"`

	// BLOOM
	NEmbed        int  `json:"n_embed"`
	ResidPostNorm bool `json:"apply_residual_connection_post_layernorm"`

	// GLM
	PartialRotary *float64 `json:"partial_rotary_factor"`

	// ChatGLM
	NumLayersGLM  int      `json:"num_layers"`
	FFNHiddenGLM  int      `json:"ffn_hidden_size"`
	LayernormEps  float64  `json:"layernorm_epsilon"`
	PaddedVocab   int      `json:"padded_vocab_size"`
	MultiQueryGLM bool     `json:"multi_query_attention"`
	MQGroups      int      `json:"multi_query_group_num"`
	AddBiasGLM    bool     `json:"add_bias_linear"`
	AddQKVBiasGLM bool     `json:"add_qkv_bias"`
	RopeRatio     *float64 `json:"rope_ratio"`
	RMSNormGLM    *bool    `json:"rmsnorm"`
	PostLNGLM     *bool    `json:"post_layer_norm"`
	OriginalRope  *bool    `json:"original_rope"`
	PreSeqLen     *int     `json:"pre_seq_len"`

	// StarCoder 2
	NormEpsilon *float64 `json:"norm_epsilon"`
	UseBias     *bool    `json:"use_bias"`

	// Falcon
	NewDecoderArch   bool  `json:"new_decoder_architecture"`
	NumKVHeadsFalcon *int  `json:"num_kv_heads"`
	NumLNParallel    *int  `json:"num_ln_in_parallel_attn"`
	ParallelAttn     *bool `json:"parallel_attn"`
	Bias             bool  `json:"bias"`
	ALiBi            bool  `json:"alibi"`

	// DeepSeek-V3's multi-token-prediction layers, stored after the model's own
	NextN int `json:"num_nextn_predict_layers"`
}

// Model is a parsed Hugging Face model directory: the family and the equivalent Megatron
// configuration.
type Model struct {
	Dir    string
	Family Family
	Config layers.Config
	raw    hfConfig
}

// ReadConfig parses dir/config.json and translates it into Megatron arguments.
func ReadConfig(dir string) (*Model, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading Hugging Face config: %w", err)
	}
	return parseConfig(dir, b)
}

// parseConfig translates the contents b of dir/config.json.
func parseConfig(dir string, b []byte) (*Model, error) {
	path := filepath.Join(dir, "config.json")
	var rc hfConfig
	if err := json.Unmarshal(b, &rc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{Dir: dir, raw: rc}
	if Family(rc.ModelType).HasExperts() {
		read := readMixtral
		switch Family(rc.ModelType) {
		case Deepseek, DeepseekV2, DeepseekV3:
			read = func(path string, b []byte) (layers.Config, error) { return readDeepseek(path, b, Family(rc.ModelType)) }
		case Qwen2MoE, Qwen3MoE:
			read = func(path string, b []byte) (layers.Config, error) { return readQwenMoE(path, b, Family(rc.ModelType)) }
		}
		c, err := read(path, b)
		if err != nil {
			return nil, err
		}
		m.Family = Family(rc.ModelType)
		if err := m.finish(path, c); err != nil {
			return nil, err
		}
		return m, nil
	}
	c := layers.Defaults()
	c.AttentionDropout, c.HiddenDropout = 0, 0
	c.MakeVocabSizeDivisibleBy = 1
	c.VocabSize = rc.VocabSize
	tied := func(def bool) bool {
		if rc.TieWord != nil {
			return *rc.TieWord
		}
		return def
	}
	switch rc.ModelType {
	case "llama", "mistral", "qwen2", "qwen3", "internlm2", "glm", "phi3":
		m.Family = Family(rc.ModelType)
		if rc.ModelType == "internlm2" && rc.Bias {
			return nil, fmt.Errorf("%s: bias true (InternLM2's wqkv and wo biases without MLP biases) is not supported", path)
		}
		rope, err := ropeConfig(path, rc.RopeScaling, rc.RopeParameters)
		if err != nil {
			return nil, err
		}
		if rc.HiddenAct != "" && rc.HiddenAct != "silu" {
			return nil, fmt.Errorf("%s: hidden_act %q is not supported (want silu)", path, rc.HiddenAct)
		}
		rc.llamaShape(&c)
		if rc.HeadDim != 0 {
			c.KVChannels = rc.HeadDim
		} else if rc.ModelType == "qwen3" {
			c.KVChannels = 128 // Qwen3Config's default, whatever hidden_size / heads is
		}
		c.Normalization, c.NormEpsilon = "RMSNorm", rc.RMSNormEps
		c.SwiGLU = true
		c.PositionEmbeddingType = "rope"
		c.RotaryBase = 10000
		if rc.RopeTheta != nil {
			c.RotaryBase = *rc.RopeTheta
		}
		rope.apply(&c)
		c.MaxPositionEmbeddings, c.SeqLength = rc.MaxPos, rc.MaxPos
		c.DisableBiasLinear = !rc.AttentionBias
		c.AddQKVBias = rc.ModelType == "qwen2"
		c.QKLayernorm = rc.ModelType == "qwen3"
		c.UntieEmbeddingsAndOutputWeights = !tied(false)
		if rc.SlidingWindow != nil && (rc.ModelType == "mistral" || rc.ModelType == "phi3" || rc.UseSlidingWindow != nil && *rc.UseSlidingWindow) {
			c.SlidingWindow = *rc.SlidingWindow
		}
		if rc.ModelType == "phi3" && rc.PartialRotary != nil {
			c.RotaryPercent = *rc.PartialRotary
		}
		if rc.ModelType == "glm" { // q/k/v biases only, interleaved RoPE on part of each head
			c.AddQKVBias, c.DisableBiasLinear = rc.AttentionBias, true
			c.RotaryInterleaved, c.RotaryPercent = true, 0.5
			if rc.PartialRotary != nil {
				c.RotaryPercent = *rc.PartialRotary
			}
		}
	case "kimi_k2":
		return nil, fmt.Errorf("%s: model_type kimi_k2 is Kimi-K2's name for DeepSeek-V3's architecture (DeepseekV3ForCausalLM): set model_type to deepseek_v3, as Moonshot's deployment guide says", path)
	case "chatglm":
		m.Family = ChatGLM
		switch {
		case !boolOr(rc.RMSNormGLM, true) || !boolOr(rc.PostLNGLM, true) || rc.ResidPostNorm:
			return nil, fmt.Errorf("%s: rmsnorm false, post_layer_norm false or apply_residual_connection_post_layernorm true (ChatGLM-6B's first architecture) is not supported", path)
		case !boolOr(rc.OriginalRope, true):
			return nil, fmt.Errorf("%s: original_rope false is not supported", path)
		case rc.PreSeqLen != nil && *rc.PreSeqLen > 0:
			return nil, fmt.Errorf("%s: pre_seq_len %d (P-tuning v2 prefixes) is not supported", path, *rc.PreSeqLen)
		}
		c.NumLayers, c.HiddenSize, c.FFNHiddenSize = rc.NumLayersGLM, rc.HiddenSize, rc.FFNHiddenGLM
		c.NumAttentionHeads, c.KVChannels = rc.NumHeads, rc.KVChannels
		if rc.MultiQueryGLM {
			c.GroupQueryAttention, c.NumQueryGroups = true, rc.MQGroups
		}
		c.Normalization, c.NormEpsilon, c.SwiGLU = "RMSNorm", rc.LayernormEps, true
		// RotaryEmbedding(kv_channels // 2): θᵢ = (10000·rope_ratio)^(−2i/(hn/2)) on the pairs
		// (2i, 2i+1) of each head's first half.
		c.PositionEmbeddingType, c.RotaryInterleaved, c.RotaryPercent = "rope", true, 0.5
		c.RotaryBase = 10000
		if rc.RopeRatio != nil {
			c.RotaryBase *= *rc.RopeRatio
		}
		c.DisableBiasLinear, c.AddQKVBias = !rc.AddBiasGLM, rc.AddQKVBiasGLM
		c.SeqLength, c.MaxPositionEmbeddings = rc.QwenSeqLength, rc.QwenSeqLength
		c.UntieEmbeddingsAndOutputWeights = true // transformer.output_layer
		if rc.PaddedVocab > 0 {
			c.VocabSize = rc.PaddedVocab
		}
	case "starcoder2":
		m.Family = Starcoder2
		rope, err := ropeConfig(path, rc.RopeScaling, rc.RopeParameters)
		if err != nil {
			return nil, err
		}
		switch rc.HiddenAct {
		case "", "gelu_pytorch_tanh", "gelu_new", "gelu_fast":
			c.OpenAIGeLU = true // GeLU's tanh approximation (Starcoder2Config's default)
		case "gelu":
			c.NoBiasGeluFusion = true // exact, though fc1 has a bias
		default:
			return nil, fmt.Errorf("%s: hidden_act %q is not supported (want gelu_pytorch_tanh or gelu)", path, rc.HiddenAct)
		}
		rc.llamaShape(&c)
		c.Normalization, c.NormEpsilon = "LayerNorm", 1e-5
		if rc.NormEpsilon != nil {
			c.NormEpsilon = *rc.NormEpsilon
		}
		c.PositionEmbeddingType, c.RotaryBase = "rope", 10000
		if rc.RopeTheta != nil {
			c.RotaryBase = *rc.RopeTheta
		}
		rope.apply(&c)
		c.MaxPositionEmbeddings, c.SeqLength = rc.MaxPos, rc.MaxPos
		c.DisableBiasLinear = !boolOr(rc.UseBias, true)
		c.UntieEmbeddingsAndOutputWeights = !tied(true)
		if rc.SlidingWindow != nil {
			c.SlidingWindow = *rc.SlidingWindow
		}
	case "baichuan":
		m.Family = Baichuan
		if rc.HiddenAct != "" && rc.HiddenAct != "silu" {
			return nil, fmt.Errorf("%s: hidden_act %q is not supported (want silu)", path, rc.HiddenAct)
		}
		c.NumLayers, c.HiddenSize, c.FFNHiddenSize, c.NumAttentionHeads = rc.NumLayers, rc.HiddenSize, rc.Intermediate, rc.NumHeads
		c.Normalization, c.NormEpsilon, c.SwiGLU, c.DisableBiasLinear = "RMSNorm", rc.RMSNormEps, true, true
		c.UntieEmbeddingsAndOutputWeights = !tied(false)
		c.SeqLength = rc.ModelMaxLength
		if rc.MaxPos > 0 {
			c.SeqLength = rc.MaxPos
		}
		if baichuanRoPE(rc) {
			c.PositionEmbeddingType, c.RotaryBase = "rope", 10000
			c.MaxPositionEmbeddings = c.SeqLength
		} else {
			c.PositionEmbeddingType = "alibi"
		}
		// Baichuan 2 (as its 125696-entry vocabulary tells it from Baichuan 1, the rule vLLM
		// uses) normalises lm_head's rows in every forward.
		c.UseNormHead = rc.VocabSize == baichuan2Vocab
	case "qwen":
		m.Family = Qwen
		if rc.Intermediate%2 != 0 {
			return nil, fmt.Errorf("%s: intermediate_size %d is odd; Qwen's w1 and w2 have half of it each", path, rc.Intermediate)
		}
		c.NumLayers, c.HiddenSize, c.NumAttentionHeads = rc.NumLayers, rc.HiddenSize, rc.NumHeads
		c.FFNHiddenSize = rc.Intermediate / 2
		c.KVChannels = rc.KVChannels
		c.Normalization, c.NormEpsilon, c.SwiGLU = "RMSNorm", rc.LNEps, true
		c.PositionEmbeddingType, c.RotaryBase, c.RotaryPercent = "rope", 10000, 1
		if rc.RotaryEmbBase != nil {
			c.RotaryBase = *rc.RotaryEmbBase
		}
		if rc.RotaryPct != nil {
			c.RotaryPercent = *rc.RotaryPct
		}
		c.AddQKVBias, c.DisableBiasLinear = true, boolOr(rc.NoBias, true)
		c.SeqLength, c.MaxPositionEmbeddings = rc.QwenSeqLength, rc.MaxPos
		if c.MaxPositionEmbeddings < c.SeqLength {
			c.MaxPositionEmbeddings = c.SeqLength
		}
		c.UntieEmbeddingsAndOutputWeights = !tied(false)
	case "gpt2", "gpt_bigcode":
		m.Family = Family(rc.ModelType)
		if rc.ScaleAttn != nil && !*rc.ScaleAttn || rc.ScaleByIdx || rc.Reorder {
			return nil, fmt.Errorf("%s: scale_attn_weights=false, scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn are not supported", path)
		}
		c.NumLayers, c.HiddenSize, c.NumAttentionHeads = rc.NLayer, rc.NEmbd, rc.NHead
		c.FFNHiddenSize = 4 * rc.NEmbd
		if rc.NInner != nil {
			c.FFNHiddenSize = *rc.NInner
		}
		if rc.ModelType == "gpt_bigcode" && boolOr(rc.MultiQuery, true) {
			c.GroupQueryAttention, c.NumQueryGroups = true, 1
		}
		c.NormEpsilon = rc.LNEps
		switch rc.Activation {
		case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
			c.OpenAIGeLU = true
		case "gelu":
			c.NoBiasGeluFusion = true // exact, though fc1 has a bias
		default:
			return nil, fmt.Errorf("%s: activation_function %q is not supported", path, rc.Activation)
		}
		c.MaxPositionEmbeddings, c.SeqLength = rc.NPositions, rc.NPositions
		c.UntieEmbeddingsAndOutputWeights = !tied(true)
	case "bloom":
		m.Family = Bloom
		h := rc.HiddenSize
		if h == 0 {
			h = rc.NEmbed
		}
		c.NumLayers, c.HiddenSize, c.NumAttentionHeads, c.FFNHiddenSize = rc.NLayer, h, rc.NHead, 4*h
		c.NormEpsilon = rc.LNEps
		c.OpenAIGeLU = true
		c.PositionEmbeddingType = "alibi"
		c.EmbeddingLayerNorm = true
		c.ApplyResidualConnectionPostLayernorm = rc.ResidPostNorm
		c.UntieEmbeddingsAndOutputWeights = !tied(true)
		c.SeqLength = 2048
	case "falcon", "RefinedWebModel", "RefinedWeb":
		m.Family = Falcon
		if rc.ALiBi {
			return nil, fmt.Errorf("%s: Falcon with alibi=true is not supported yet", path)
		}
		h := rc.HiddenSize
		c.NumLayers, c.HiddenSize, c.NumAttentionHeads, c.FFNHiddenSize = rc.NumLayers, h, rc.NumHeads, 4*h
		if c.NumLayers == 0 {
			c.NumLayers = rc.NLayer
		}
		if c.NumAttentionHeads == 0 {
			c.NumAttentionHeads = rc.NHead
		}
		// num_kv_heads is ignored unless new_decoder_architecture: multi_query means one KV
		// head, otherwise every head has its own (RW layout). The new architecture (40B,
		// 180B) has num_kv_heads groups, parallel attention, and by default the MLP's own
		// layernorm of the input (ln_attn, ln_mlp; num_ln_in_parallel_attn 2).
		switch {
		case rc.NewDecoderArch:
			kv := c.NumAttentionHeads
			if rc.NumKVHeadsFalcon != nil {
				kv = *rc.NumKVHeadsFalcon
			}
			c.GroupQueryAttention, c.NumQueryGroups = kv != c.NumAttentionHeads, kv
			if !boolOr(rc.ParallelAttn, true) {
				return nil, fmt.Errorf("%s: Falcon new_decoder_architecture with parallel_attn false: transformers has no MLP input for it", path)
			}
			switch ln := rc.NumLNParallel; {
			case ln == nil || *ln == 2:
				c.ParallelMLPNorm = true
			case *ln != 1:
				return nil, fmt.Errorf("%s: num_ln_in_parallel_attn %d: want 1 or 2", path, *ln)
			}
		case boolOr(rc.MultiQuery, true):
			c.GroupQueryAttention, c.NumQueryGroups = true, 1
		}
		c.NormEpsilon = rc.LNEps
		c.NoBiasGeluFusion = true // nn.GELU(): exact, even with bias=True (RW models)
		c.PositionEmbeddingType = "rope"
		c.RotaryBase = 10000
		rope, err := ropeConfig(path, rc.RopeScaling, rc.RopeParameters)
		if err != nil {
			return nil, err
		}
		if rc.RopeTheta != nil {
			c.RotaryBase = *rc.RopeTheta
		}
		rope.apply(&c)
		c.ParallelAttention = boolOr(rc.ParallelAttn, true)
		c.DisableBiasLinear = !rc.Bias
		c.UntieEmbeddingsAndOutputWeights = !tied(true)
		c.SeqLength = 2048
	default:
		return nil, fmt.Errorf("%s: model_type %q is not a supported architecture (llama, mistral, mixtral, qwen, qwen2, qwen2_moe, qwen3, qwen3_moe, deepseek, deepseek_v2, deepseek_v3, baichuan, internlm2, chatglm, glm, phi3, gpt2, gpt_bigcode, starcoder2, bloom, falcon)", path, rc.ModelType)
	}
	if err := m.finish(path, c); err != nil {
		return nil, err
	}
	return m, nil
}

// baichuan2Vocab is Baichuan 2's vocabulary size, which tells its NormHead checkpoints from
// Baichuan 1's.
const baichuan2Vocab = 125696

// baichuanRoPE: which position encoding a Baichuan checkpoint's remote code applies.
// BaiChuanForCausalLM (Baichuan-7B) uses RoPE; BaichuanForCausalLM is Baichuan 2-7B with
// RoPE at hidden size 4096, else the 13B models with ALiBi (the rule vLLM applies).
func baichuanRoPE(rc hfConfig) bool {
	for _, a := range rc.Architectures {
		if a == "BaiChuanForCausalLM" {
			return true
		}
	}
	return rc.HiddenSize == 4096
}

// finish checks the translated architecture and sets it as the model's: the vocabulary
// is stored unpadded.
func (m *Model) finish(path string, c layers.Config) error {
	// The weight mapping has a few rules per layer and expert; a corrupt count must not
	// exhaust memory before any tensor is read (the largest real models have ~10⁴ experts
	// in all: DeepSeek-V3's 61 layers × 256).
	if blocks := int64(c.NumLayers) * int64(max(c.NumExperts, 1)); blocks > 1<<20 {
		return fmt.Errorf("%s: num_hidden_layers %d × %d experts: implausibly large (over %d layer blocks)", path, c.NumLayers, c.NumExperts, 1<<20)
	}
	c.PaddedVocabSize = c.VocabSize
	if err := c.Finalize(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m.Config = c
	return nil
}

// llamaShape sets the layers, widths and (grouped) heads from Llama's keys
// (num_key_value_heads 0 or absent: one per head).
func (rc *hfConfig) llamaShape(c *layers.Config) {
	c.NumLayers, c.HiddenSize, c.FFNHiddenSize = rc.NumLayers, rc.HiddenSize, rc.Intermediate
	c.NumAttentionHeads = rc.NumHeads
	kv := rc.NumKVHeads
	if kv == 0 {
		kv = rc.NumHeads
	}
	c.GroupQueryAttention, c.NumQueryGroups = kv != rc.NumHeads, kv
}

func boolOr(p *bool, def bool) bool {
	if p != nil {
		return *p
	}
	return def
}

// ropeSpec is what a config.json says of RoPE beyond the base: a linear interpolation
// factor (Megatron's --rotary-seq-len-interpolation-factor), Llama 3.1's scaling factor
// (--use-rope-scaling --rope-scaling-factor), and rope_theta when transformers ≥ 5 wrote
// it inside rope_parameters (else nil).
type ropeSpec struct {
	interp, llama3 float64
	theta          *float64
	yarn           *yarnSpec
}

// yarnSpec is rope_scaling "yarn" in --yarn-* terms.
type yarnSpec struct {
	factor, betaFast, betaSlow, mscale, mscaleAllDim float64
	origMax                                          int
	truncate                                         bool
}

// apply sets c's RoPE scaling fields (and the base, when rope_parameters has one).
func (r ropeSpec) apply(c *layers.Config) {
	c.RotarySeqLenInterpolationFactor = r.interp
	if r.llama3 > 0 {
		c.UseRopeScaling, c.RopeScalingFactor = true, r.llama3
	}
	if r.theta != nil {
		c.RotaryBase = *r.theta
	}
	if y := r.yarn; y != nil {
		c.PositionEmbeddingType, c.YarnScalingFactor, c.YarnOrigMaxPositions = "yarn", y.factor, y.origMax
		c.YarnBetaFast, c.YarnBetaSlow, c.YarnMScale, c.YarnMScaleAllDim = y.betaFast, y.betaSlow, y.mscale, y.mscaleAllDim
		c.YarnCorrectionRoundToInt = y.truncate
	}
}

// ropeConfig reads the RoPE keys of a config.json: rope_scaling, or rope_parameters, where
// transformers ≥ 5 writes the scaling and rope_theta together.
func ropeConfig(path string, scaling, params *json.RawMessage) (ropeSpec, error) {
	r, err := ropeScaling(path, "rope_scaling", scaling)
	if err != nil || params == nil || string(*params) == "null" {
		return r, err
	}
	if r, err = ropeScaling(path, "rope_parameters", params); err != nil {
		return ropeSpec{}, err
	}
	var rp struct {
		RopeTheta *float64 `json:"rope_theta"`
	}
	if err := json.Unmarshal(*params, &rp); err != nil {
		return ropeSpec{}, fmt.Errorf("%s: rope_parameters: %w", path, err)
	}
	r.theta = rp.RopeTheta
	return r, nil
}

// ropeScalingKeys are the keys of a rope_scaling (or rope_parameters) object that the
// readers take: its kind, the factor, Llama 3.1's bands and YaRN's parameters.
type ropeScalingKeys struct {
	Type         string   `json:"type"`
	RopeType     string   `json:"rope_type"`
	Factor       *float64 `json:"factor"`
	Low          *float64 `json:"low_freq_factor"`
	High         *float64 `json:"high_freq_factor"`
	OrigMax      *int     `json:"original_max_position_embeddings"`
	BetaFast     *float64 `json:"beta_fast"`
	BetaSlow     *float64 `json:"beta_slow"`
	MScale       *float64 `json:"mscale"`
	MScaleAllDim *float64 `json:"mscale_all_dim"`
	AttnFact     *float64 `json:"attention_factor"`
	Truncate     *bool    `json:"truncate"`
	Theta        *float64 `json:"rope_theta"` // rope_parameters (transformers ≥ 5)
}

// kind is rope_type, or the older type.
func (r ropeScalingKeys) kind() string {
	if r.RopeType != "" {
		return r.RopeType
	}
	return r.Type
}

// ropeScaling reads a rope_scaling (or rope_parameters) object: none; linear scaling
// {"type" or "rope_type": "linear", "factor": f}, which is Megatron's
// --rotary-seq-len-interpolation-factor f (positions scaled by 1/f; Hugging Face divides
// by f, the same angles when f is a power of two); or Llama 3.1's "llama3" with
// Megatron-Core's fixed bands (low_freq_factor 1, high_freq_factor 4,
// original_max_position_embeddings 8192), which is --use-rope-scaling. Other kinds, and
// llama3 with other bands, are refused.
func ropeScaling(path, key string, raw *json.RawMessage) (ropeSpec, error) {
	if raw == nil || string(*raw) == "null" {
		return ropeSpec{}, nil
	}
	var rs ropeScalingKeys
	if err := json.Unmarshal(*raw, &rs); err != nil {
		return ropeSpec{}, fmt.Errorf("%s: %s: %w", path, key, err)
	}
	factor := 0.0
	if rs.Factor != nil {
		factor = *rs.Factor
	}
	switch rs.kind() {
	case "", "default":
		return ropeSpec{}, nil
	case "linear":
		if factor < 1 {
			return ropeSpec{}, fmt.Errorf("%s: %s linear factor %v: want ≥ 1", path, key, factor)
		}
		return ropeSpec{interp: factor}, nil
	case "llama3":
		if factor < 1 || rs.Low == nil || *rs.Low != 1 || rs.High == nil || *rs.High != 4 || rs.OrigMax == nil || *rs.OrigMax != 8192 {
			return ropeSpec{}, fmt.Errorf("%s: %s %s: Llama 3.1's scaling is supported with factor ≥ 1, low_freq_factor 1, high_freq_factor 4 and original_max_position_embeddings 8192 (Megatron-Core's --use-rope-scaling)", path, key, string(*raw))
		}
		return ropeSpec{llama3: factor}, nil
	case "yarn":
		// transformers' _compute_yarn_parameters: betas 32 and 1; the attention factor
		// m(mscale)/m(mscale_all_dim) when both are given, else m(1); Megatron-Core's
		// concentration factor with its defaults mscale 1, mscale_all_dim 0 is the latter.
		y := &yarnSpec{factor: factor, betaFast: 32, betaSlow: 1, mscale: 1, truncate: boolOr(rs.Truncate, true)}
		if rs.OrigMax == nil || factor < 1 {
			return ropeSpec{}, fmt.Errorf("%s: %s %s: yarn is supported with factor ≥ 1 and original_max_position_embeddings given", path, key, string(*raw))
		}
		y.origMax = *rs.OrigMax
		if rs.BetaFast != nil {
			y.betaFast = *rs.BetaFast
		}
		if rs.BetaSlow != nil {
			y.betaSlow = *rs.BetaSlow
		}
		if rs.MScale != nil && rs.MScaleAllDim != nil && *rs.MScale != 0 && *rs.MScaleAllDim != 0 {
			y.mscale, y.mscaleAllDim = *rs.MScale, *rs.MScaleAllDim
		}
		if rs.AttnFact != nil {
			c := layers.Config{PositionEmbeddingType: "yarn", YarnScalingFactor: y.factor, YarnMScale: y.mscale, YarnMScaleAllDim: y.mscaleAllDim}
			if got := c.RoPEScaling().Concentration; math.Abs(got-*rs.AttnFact) > 1e-9*got {
				return ropeSpec{}, fmt.Errorf("%s: %s attention_factor %v: only YaRN's own (%v) is supported", path, key, *rs.AttnFact, got)
			}
		}
		return ropeSpec{yarn: y}, nil
	}
	return ropeSpec{}, fmt.Errorf("%s: %s %s is not supported (linear, Llama 3.1's llama3 and yarn are)", path, key, string(*raw))
}
