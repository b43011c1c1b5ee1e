// Package layers holds Megatron's modules — embedding, linear layers, norms, attention,
// MLP, the transformer layer and the GPT model — with explicit Forward and Backward passes
// over a kernels.Backend. Activations are [s, b, h] (sequence first) as in Megatron.
package layers

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomegatron/gomegatron/kernels"
)

// Config is the model architecture, one field per Megatron argument (the kong tags are the
// flag names, so commands embed Config directly). Defaults are Megatron's.
type Config struct {
	NumLayers                       int     `name:"num-layers" help:"Number of transformer layers."`
	HiddenSize                      int     `name:"hidden-size" help:"Transformer hidden size."`
	FFNHiddenSize                   int     `name:"ffn-hidden-size" help:"MLP hidden size (default 4·hidden, or for --swiglu the same 4·hidden)."`
	NumAttentionHeads               int     `name:"num-attention-heads" help:"Number of attention heads."`
	GroupQueryAttention             bool    `name:"group-query-attention" help:"Use grouped-query attention."`
	NumQueryGroups                  int     `name:"num-query-groups" default:"1" help:"Number of query groups with --group-query-attention."`
	KVChannels                      int     `name:"kv-channels" help:"Projection width per head (default hidden/heads)."`
	SeqLength                       int     `name:"seq-length" help:"Sequence length."`
	MaxPositionEmbeddings           int     `name:"max-position-embeddings" help:"Largest position for learned position embeddings."`
	PositionEmbeddingType           string  `name:"position-embedding-type" default:"learned_absolute" enum:"learned_absolute,rope,yarn,alibi,none" help:"learned_absolute, rope, yarn (RoPE with YaRN's frequency blend and mscale: the --yarn-* flags), alibi or none."`
	RotaryBase                      float64 `name:"rotary-base" default:"10000" help:"RoPE base θ."`
	RotaryPercent                   float64 `name:"rotary-percent" default:"1.0" help:"Fraction of each head's channels that RoPE rotates."`
	RotaryInterleaved               bool    `name:"rotary-interleaved" help:"RoPE rotates the channel pairs (2i, 2i+1) instead of (i, i+d/2) (RoFormer's layout; ChatGLM, GLM-4)."`
	RotarySeqLenInterpolationFactor float64 `name:"rotary-seq-len-interpolation-factor" help:"RoPE position interpolation: positions scaled by 1/factor (none when unset or 1)."`
	Normalization                   string  `name:"normalization" default:"LayerNorm" enum:"LayerNorm,RMSNorm" help:"LayerNorm or RMSNorm."`
	NormEpsilon                     float64 `name:"norm-epsilon" default:"1e-5" help:"Epsilon of the norms."`
	SwiGLU                          bool    `name:"swiglu" help:"SwiGLU MLP (Llama)."`
	OpenAIGeLU                      bool    `name:"openai-gelu" help:"tanh approximation of GeLU (GPT-2, BLOOM, StarCoder)."`
	SquaredReLU                     bool    `name:"squared-relu" help:"Squared ReLU MLP activation, max(x, 0)² (not with --swiglu)."`
	NoBiasGeluFusion                bool    `name:"no-bias-gelu-fusion" help:"Exact GeLU after a biased fc1: Megatron's default fused bias-GeLU (bias_gelu_impl) computes GeLU's tanh approximation."`
	UntieEmbeddingsAndOutputWeights bool    `name:"untie-embeddings-and-output-weights" help:"Separate output layer weight."`
	UseNormHead                     bool    `name:"use-normhead" help:"Baichuan 2's NormHead: the output layer's rows scaled to unit L2 norm in every forward (Pai's flag)."`
	DisableBiasLinear               bool    `name:"disable-bias-linear" help:"No biases in linear layers."`
	AddQKVBias                      bool    `name:"add-qkv-bias" help:"Bias in the QKV projection even with --disable-bias-linear (Qwen)."`
	UseRopeScaling                  bool    `name:"use-rope-scaling" help:"Llama 3.1's RoPE scaling: each frequency rescaled by its wavelength (low 1, high 4, 8192 original positions, as Megatron-Core's apply_rope_scaling), by --rope-scaling-factor."`
	RopeScalingFactor               float64 `name:"rope-scaling-factor" default:"8" help:"With --use-rope-scaling: the factor (Llama 3.1: 8, Llama 3.2: 32)."`
	// YaRN (--position-embedding-type yarn): Megatron-Core's flags and YarnRotaryEmbedding's
	// config attributes (kernels.RoPEScaling).
	YarnScalingFactor        float64 `name:"rotary-scaling-factor" default:"1" help:"With --position-embedding-type yarn: the context extension factor (Hugging Face's rope_scaling factor)."`
	YarnOrigMaxPositions     int     `name:"yarn-original-max-position-embeddings" help:"With yarn: the positions the model was trained with (required)."`
	YarnBetaFast             float64 `name:"yarn-beta-fast" default:"32" help:"With yarn: the rotations where the correction range starts."`
	YarnBetaSlow             float64 `name:"yarn-beta-slow" default:"1" help:"With yarn: the rotations where it ends."`
	YarnMScale               float64 `name:"mscale" default:"1" help:"With yarn: mscale of the concentration factor m(mscale)/m(mscale-all-dim), m(x) = 0.1·x·ln(factor) + 1."`
	YarnMScaleAllDim         float64 `name:"mscale-all-dim" default:"0" help:"With yarn: see --mscale."`
	YarnCorrectionRoundToInt bool    `name:"yarn-correction-range-round-to-int" default:"true" negatable:"" help:"With yarn: floor and ceil the correction range's dims (Hugging Face's truncate)."`
	QKLayernorm              bool    `name:"qk-layernorm" help:"Normalise each head's query and key (--normalization's norm over the head dimension, before RoPE), as Megatron-Core's q_layernorm and k_layernorm (Qwen3)."`
	// Multi-latent attention (DeepSeek-V2/V3; Megatron-Core's MLASelfAttention, see mla.go).
	MultiLatentAttention                 bool    `name:"multi-latent-attention" help:"Multi-latent attention (DeepSeek-V2/V3): queries and keys/values through low-rank projections, RoPE on a separate qk-pos-emb part of each head, the key's shared by all heads (Megatron-Core's MLASelfAttention); --qk-layernorm adds its q_layernorm and kv_layernorm."`
	QLoRARank                            int     `name:"q-lora-rank" help:"With --multi-latent-attention: rank of the queries' low-rank projection; 0 (Megatron's None): one linear_q_proj."`
	KVLoRARank                           int     `name:"kv-lora-rank" default:"32" help:"With --multi-latent-attention: rank of the keys' and values' low-rank projection."`
	QKHeadDim                            int     `name:"qk-head-dim" default:"128" help:"With --multi-latent-attention: each head's query and key width without the position part."`
	QKPosEmbHeadDim                      int     `name:"qk-pos-emb-head-dim" default:"64" help:"With --multi-latent-attention: each head's query and key width that RoPE rotates."`
	VHeadDim                             int     `name:"v-head-dim" default:"128" help:"With --multi-latent-attention: each head's value width."`
	RopeType                             string  `name:"rope-type" enum:",rope,yarn" default:"" help:"RoPE of --multi-latent-attention: rope, or yarn (its default: --rotary-scaling-factor, --mscale, --mscale-all-dim)."`
	ApplyResidualConnectionPostLayernorm bool    `name:"apply-residual-connection-post-layernorm" help:"Residual taken after the layernorm."`
	ApplyLayernorm1p                     bool    `name:"apply-layernorm-1p" help:"LayerNorm weights stored centred on zero: the norm multiplies by 1 + weight, initialised to 0 (not with RMSNorm)."`
	AttentionDropout                     float64 `name:"attention-dropout" default:"0.1" help:"Dropout on attention probabilities."`
	HiddenDropout                        float64 `name:"hidden-dropout" default:"0.1" help:"Dropout on hidden states."`
	InitMethodStd                        float64 `name:"init-method-std" default:"0.02" help:"Standard deviation of weight initialisation."`
	InitMethodXavierUniform              bool    `name:"init-method-xavier-uniform" help:"Initialise weights uniform on ±sqrt(6/(fan_in+fan_out)) of each full tensor (Megatron's --use-cpu-initialization layout), output layers unscaled."`
	VocabSize                            int     `name:"vocab-size" help:"Vocabulary size (before padding)."`
	MakeVocabSizeDivisibleBy             int     `name:"make-vocab-size-divisible-by" default:"128" help:"Pad the vocabulary to a multiple of this times TP."`

	// Families outside Megatron's GPT (set by presets and the Hugging Face loader).
	EmbeddingLayerNorm bool `name:"embedding-layernorm" help:"LayerNorm after the word embeddings (BLOOM)."`
	ParallelAttention  bool `name:"parallel-attention" help:"Attention and MLP read the same layernorm output and add in parallel (Falcon-7B)."`
	ParallelMLPNorm    bool `name:"parallel-attention-mlp-norm" help:"With --parallel-attention: the MLP reads its own norm of the layer input, pre_mlp_layernorm (Falcon-40B/180B's ln_mlp)."`
	SlidingWindow      int  `name:"sliding-window" help:"Attention window in keys, including the query's own (Mistral); 0 = full."`
	ALiBiBeforeScale   bool `name:"alibi-before-scale" hidden:"" help:"Add ALiBi before the 1/sqrt(d) scale (Falcon)."`

	// Mixture of experts (Megatron-Core's MoELayer in every layer; see MoE).
	NumExperts                 int     `name:"num-experts" help:"Experts in each layer's MoE block (Megatron-Core MoE); 0: a dense MLP."`
	MoERouterTopK              int     `name:"moe-router-topk" default:"2" help:"Experts each token is routed to."`
	MoERouterLoadBalancingType string  `name:"moe-router-load-balancing-type" default:"aux_loss" help:"Router load balancing: aux_loss (GShard's loss), seq_aux_loss (the same per sequence, DeepSeek-V2's; Megatron-Core's later type) or sinkhorn (S-BASE's balanced assignment)."`
	MoEAuxLossCoeff            float64 `name:"moe-aux-loss-coeff" help:"Scale of the load-balancing loss (1e-2 is Megatron's suggestion)."`
	MoEZLossCoeff              float64 `name:"moe-z-loss-coeff" help:"Scale of the router z-loss (1e-3 is Megatron's suggestion); 0: none."`
	MoEGroupedGemm             bool    `name:"moe-grouped-gemm" help:"GroupedMLP experts: each layer's local experts in two weights, weight1 and weight2, as Megatron's checkpoints hold them (the same maps as SequentialMLP's local_experts)."`
	MoEInputJitterEps          float64 `name:"moe-input-jitter-eps" help:"Router jitter: in training, each router logit times a uniform draw in [1 − eps, 1 + eps] (after the z-loss, as Megatron 240126); 0: none."`
	MoEFFNHiddenSize           int     `name:"moe-ffn-hidden-size" help:"Each expert's FFN size (Megatron-Core's later flag); 0: --ffn-hidden-size, as Megatron 240126 sizes experts."`
	MoELayerFreq               string  `name:"moe-layer-freq" default:"1" help:"Which layers are MoE layers (Megatron-Core's later flag): N, one every N layers from the first, or a Python list pattern such as ([0]+[1]*23); the others have the dense --ffn-hidden-size MLP."`
	MoERouterScoreFunction     string  `name:"moe-router-score-function" default:"softmax" enum:"softmax,sigmoid" help:"Router scores: softmax, or sigmoid (DeepSeek-V3: each chosen expert's σ(z), renormalised over the top k when k > 1; the aux loss takes σ normalised over all experts) (Megatron-Core's later flag)."`
	MoERouterTopKScaling       float64 `name:"moe-router-topk-scaling-factor" help:"Multiply the chosen experts' scores by this (DeepSeek's routed_scaling_factor; Megatron-Core's later flag); 0: none."`
	MoERouterNumGroups         int     `name:"moe-router-num-groups" help:"Group-limited routing (Megatron-Core's later flag): the experts in this many equal groups; a token chooses --moe-router-group-topk groups by the sum of each group's top k/group-topk scores, then its top k experts within them."`
	MoERouterGroupTopK         int     `name:"moe-router-group-topk" help:"Groups each token chooses with --moe-router-num-groups."`
	MoERouterEnableExpertBias  bool    `name:"moe-router-enable-expert-bias" help:"DeepSeek-V3's aux-loss-free balancing (sigmoid scores only): an expert bias, mlp.router.expert_bias, added to the scores for choosing experts, and after each step moved by --moe-router-bias-update-rate towards the experts that got fewer tokens than the average (Megatron-Core's later flag)."`
	MoERouterBiasUpdateRate    float64 `name:"moe-router-bias-update-rate" default:"0.001" help:"With --moe-router-enable-expert-bias: each step's change of an expert's bias, in the sign of (mean tokens − its tokens)."`
	MoERouterPreSoftmax        bool    `name:"moe-router-pre-softmax" help:"Scores are the softmax over all experts at the chosen ones, not renormalised over the top k (Megatron-Core's later flag; Qwen1.5/Qwen2-MoE's norm_topk_prob false)."`
	// Megatron-Core's SharedExpertMLP (later than 240126): a dense MLP beside the experts.
	MoESharedExpertIntermediateSize int  `name:"moe-shared-expert-intermediate-size" help:"FFN size of the shared experts together (Megatron-Core's later flag; Qwen1.5/Qwen2-MoE's shared_expert_intermediate_size); 0: none."`
	MoESharedExpertGate             bool `name:"moe-shared-expert-gate" help:"Scale the shared experts' output by sigmoid(x·gate_weight), gate_weight [1, h] (Qwen1.5/Qwen2-MoE's shared_expert_gate)."`

	// PaddedVocabSize is derived by Finalize unless set (a loaded checkpoint fixes it).
	PaddedVocabSize int `kong:"-"`
	// TensorModelParallelSize splits heads, FFN and vocabulary (issue 5); 1 here.
	TensorModelParallelSize int `kong:"-"`
	// evaluating is Megatron's model.eval() (GPTModel.Eval): no dropout, and Sinkhorn
	// routing takes the top-k activations.
	evaluating bool
}

// Defaults returns a Config with Megatron's default values filled in.
func Defaults() Config {
	return Config{
		NumQueryGroups: 1, PositionEmbeddingType: "learned_absolute", RotaryBase: 10000,
		RotaryPercent: 1, Normalization: "LayerNorm", NormEpsilon: 1e-5, AttentionDropout: 0.1,
		HiddenDropout: 0.1, InitMethodStd: 0.02, MakeVocabSizeDivisibleBy: 128, TensorModelParallelSize: 1,
		MoERouterTopK: 2, MoERouterLoadBalancingType: "aux_loss", MoERouterScoreFunction: "softmax", MoERouterBiasUpdateRate: 1e-3, RopeScalingFactor: 8,
		YarnScalingFactor: 1, YarnBetaFast: 32, YarnBetaSlow: 1, YarnMScale: 1, YarnCorrectionRoundToInt: true,
		KVLoRARank: 32, QKHeadDim: 128, QKPosEmbHeadDim: 64, VHeadDim: 128,
	}
}

// Finalize derives defaults that depend on other fields (as Megatron's validate_args does)
// and checks consistency. Errors name the flag and the numbers.
func (c *Config) Finalize() error {
	if !c.AddBiasLinear() {
		c.NoBiasGeluFusion = false // no fused bias-GeLU without a bias: canonical
	}
	if c.ParallelMLPNorm && (!c.ParallelAttention || c.ApplyResidualConnectionPostLayernorm || c.NumExperts > 0) {
		return fmt.Errorf("--parallel-attention-mlp-norm needs --parallel-attention, and is supported without --apply-residual-connection-post-layernorm and experts")
	}
	if c.UseRopeScaling && (c.PositionEmbeddingType != "rope" || c.RopeScalingFactor < 1) {
		return fmt.Errorf("--use-rope-scaling needs --position-embedding-type rope and --rope-scaling-factor ≥ 1 (have %s, %v)", c.PositionEmbeddingType, c.RopeScalingFactor)
	}
	if c.TensorModelParallelSize == 0 {
		c.TensorModelParallelSize = 1
	}
	pos := func(name string, v int) error {
		if v <= 0 {
			return fmt.Errorf("--%s must be positive, got %d", name, v)
		}
		return nil
	}
	for _, p := range []struct {
		n string
		v int
	}{{"num-layers", c.NumLayers}, {"hidden-size", c.HiddenSize}, {"num-attention-heads", c.NumAttentionHeads}, {"vocab-size", c.VocabSize}} {
		if err := pos(p.n, p.v); err != nil {
			return err
		}
	}
	if err := c.finalizeMLA(); err != nil {
		return err
	}
	if c.KVChannels == 0 {
		if c.HiddenSize%c.NumAttentionHeads != 0 {
			return fmt.Errorf("--hidden-size %d is not divisible by --num-attention-heads %d (set --kv-channels to override)", c.HiddenSize, c.NumAttentionHeads)
		}
		c.KVChannels = c.HiddenSize / c.NumAttentionHeads
	}
	if c.FFNHiddenSize == 0 {
		c.FFNHiddenSize = 4 * c.HiddenSize
	}
	if !c.GroupQueryAttention {
		c.NumQueryGroups = c.NumAttentionHeads
	} else if c.NumQueryGroups <= 0 || c.NumAttentionHeads%c.NumQueryGroups != 0 {
		return fmt.Errorf("--num-attention-heads %d is not divisible by --num-query-groups %d", c.NumAttentionHeads, c.NumQueryGroups)
	}
	tp := c.TensorModelParallelSize
	if c.NumAttentionHeads%tp != 0 {
		return fmt.Errorf("--num-attention-heads %d is not divisible by --tensor-model-parallel-size %d", c.NumAttentionHeads, tp)
	}
	if c.NumQueryGroups%tp != 0 {
		return fmt.Errorf("number of query groups %d is not divisible by --tensor-model-parallel-size %d", c.NumQueryGroups, tp)
	}
	if c.FFNHiddenSize%tp != 0 {
		return fmt.Errorf("--ffn-hidden-size %d is not divisible by --tensor-model-parallel-size %d", c.FFNHiddenSize, tp)
	}
	if c.MoEFFNHiddenSize != 0 && (c.NumExperts == 0 || c.MoEFFNHiddenSize < 0 || c.MoEFFNHiddenSize%tp != 0) {
		return fmt.Errorf("--moe-ffn-hidden-size %d needs --num-experts and a positive size divisible by --tensor-model-parallel-size %d", c.MoEFFNHiddenSize, tp)
	}
	if c.SquaredReLU && c.SwiGLU {
		return fmt.Errorf("--squared-relu and --swiglu are exclusive (as Megatron asserts)")
	}
	if c.ApplyLayernorm1p && c.Normalization == "RMSNorm" {
		return fmt.Errorf("--apply-layernorm-1p: RMSNorm does not currently support the layernorm_1p formulation (as Megatron says)")
	}
	switch c.PositionEmbeddingType {
	case "learned_absolute":
		if c.MaxPositionEmbeddings <= 0 {
			return fmt.Errorf("--position-embedding-type learned_absolute needs --max-position-embeddings")
		}
	case "rope", "yarn":
		if c.YaRN() && (c.YarnScalingFactor < 1 || c.YarnOrigMaxPositions <= 0 || c.RotaryPercent != 1 ||
			c.RotaryInterleaved || c.UseRopeScaling || c.RotarySeqLenInterpolationFactor > 1 || c.YarnBetaFast <= 0 || c.YarnBetaSlow <= 0) {
			return fmt.Errorf("--position-embedding-type yarn needs --rotary-scaling-factor ≥ 1, --yarn-original-max-position-embeddings, positive betas, full non-interleaved RoPE and no other RoPE scaling (have factor %v, %d positions, rotary-percent %v)",
				c.YarnScalingFactor, c.YarnOrigMaxPositions, c.RotaryPercent)
		}
		if c.RotaryPercent <= 0 || c.RotaryPercent > 1 {
			return fmt.Errorf("--rotary-percent must be in (0, 1], got %v", c.RotaryPercent)
		}
		if c.RotaryDim()%2 != 0 || c.RotaryDim() == 0 {
			width := fmt.Sprintf("--kv-channels %d", c.KVChannels)
			if c.MultiLatentAttention {
				width = fmt.Sprintf("--qk-pos-emb-head-dim %d", c.QKPosEmbHeadDim)
			}
			return fmt.Errorf("--rotary-percent %v of %s gives an odd or zero rotary dimension %d", c.RotaryPercent, width, c.RotaryDim())
		}
		if c.RotaryBase <= 0 {
			return fmt.Errorf("--rotary-base must be positive, got %v", c.RotaryBase)
		}
		if f := c.RotarySeqLenInterpolationFactor; f < 0 || f > 0 && f < 1 {
			return fmt.Errorf("--rotary-seq-len-interpolation-factor must be ≥ 1, got %v", f)
		}
	case "alibi", "none":
	default:
		return fmt.Errorf("--position-embedding-type %q: want learned_absolute, rope, yarn, alibi or none", c.PositionEmbeddingType)
	}
	switch c.Normalization {
	case "LayerNorm", "RMSNorm":
	default:
		return fmt.Errorf("--normalization %q: want LayerNorm or RMSNorm", c.Normalization)
	}
	if c.NormEpsilon <= 0 {
		return fmt.Errorf("--norm-epsilon must be positive, got %v", c.NormEpsilon)
	}
	if c.AttentionDropout < 0 || c.AttentionDropout >= 1 || c.HiddenDropout < 0 || c.HiddenDropout >= 1 {
		return fmt.Errorf("dropout must be in [0, 1): --attention-dropout %v, --hidden-dropout %v", c.AttentionDropout, c.HiddenDropout)
	}
	if c.UseNormHead && !c.UntieEmbeddingsAndOutputWeights {
		return fmt.Errorf("--use-normhead needs --untie-embeddings-and-output-weights (the normalised rows are the output layer's, not the word embeddings')")
	}
	if err := c.finalizeMoE(); err != nil {
		return err
	}
	if c.PaddedVocabSize == 0 {
		c.PaddedVocabSize = PaddedVocab(c.VocabSize, c.MakeVocabSizeDivisibleBy, tp)
	}
	if c.PaddedVocabSize < c.VocabSize || c.PaddedVocabSize%tp != 0 {
		return fmt.Errorf("padded vocabulary %d must be ≥ --vocab-size %d and divisible by TP %d", c.PaddedVocabSize, c.VocabSize, tp)
	}
	return nil
}

// PaddedVocab is Megatron's _vocab_size_with_padding: the vocabulary rounded up to a
// multiple of divisibleBy·TP.
func PaddedVocab(vocab, divisibleBy, tp int) int {
	if divisibleBy <= 0 {
		return vocab
	}
	m := divisibleBy * tp
	return (vocab + m - 1) / m * m
}

// RotaryDim is the number of channels per head that RoPE rotates: of --kv-channels, or of
// --qk-pos-emb-head-dim with multi-latent attention.
func (c *Config) RotaryDim() int {
	if c.MultiLatentAttention {
		return int(float64(c.QKPosEmbHeadDim) * c.RotaryPercent)
	}
	return int(float64(c.KVChannels) * c.RotaryPercent)
}

// QKVDim is the output width of linear_qkv: (np + 2·ng)·hn.
func (c *Config) QKVDim() int {
	return (c.NumAttentionHeads + 2*c.NumQueryGroups) * c.KVChannels
}

// FC1Dim is the output width of linear_fc1 (doubled for the SwiGLU gate).
func (c *Config) FC1Dim() int {
	if c.SwiGLU {
		return 2 * c.FFNHiddenSize
	}
	return c.FFNHiddenSize
}

// AddBiasLinear reports whether linear layers carry biases.
func (c *Config) AddBiasLinear() bool { return !c.DisableBiasLinear }

// TanhGeLU reports whether the GeLU MLP uses GeLU's tanh approximation: with
// --openai-gelu, or with Megatron's default --bias-gelu-fusion, whose fused bias_gelu
// kernel is the approximation (it applies when fc1 has a bias; --no-bias-gelu-fusion, or
// no bias, gives F.gelu, the exact one).
func (c *Config) TanhGeLU() bool {
	return c.OpenAIGeLU || (!c.SwiGLU && !c.SquaredReLU && c.AddBiasLinear() && !c.NoBiasGeluFusion)
}

// ALiBiSlopes returns BLOOM's head slopes: for p = 2^⌊log2 H⌋, slope_h = 2^(−8(h+1)/p)
// for h < p, and the remaining heads take 2^(−4k/p) for odd k = 1, 3, 5, …
// Computed in float32 as Hugging Face does.
func ALiBiSlopes(heads int) []float32 {
	p := 1 << int(math.Floor(math.Log2(float64(heads))))
	base := float32(math.Pow(2, -8/float64(p)))
	out := make([]float32, heads)
	for h := 0; h < p; h++ {
		out[h] = float32(math.Pow(float64(base), float64(h+1)))
	}
	if p < heads {
		extra := float32(math.Pow(2, -4/float64(p)))
		for i, k := 0, 1; p+i < heads; i, k = i+1, k+2 {
			out[p+i] = float32(math.Pow(float64(extra), float64(k)))
		}
	}
	return out
}

// finalizeMoE checks the mixture-of-experts settings (Megatron's checks, and what this
// implementation does not cover yet).
func (c *Config) finalizeMoE() error {
	if c.NumExperts < 0 {
		return fmt.Errorf("--num-experts must be positive, got %d", c.NumExperts)
	}
	if err := c.finalizeMoELayerFreq(); err != nil {
		return err
	}
	if c.NumExperts == 0 {
		if c.MoESharedExpertIntermediateSize != 0 || c.MoERouterPreSoftmax || c.MoESharedExpertGate || c.MoERouterTopKScaling != 0 ||
			c.MoERouterNumGroups != 0 || c.MoERouterGroupTopK != 0 || c.MoERouterScoreFunction == "sigmoid" || c.MoERouterEnableExpertBias {
			return fmt.Errorf("--moe-shared-expert-intermediate-size, --moe-shared-expert-gate, --moe-router-pre-softmax and the router's score function, scaling and groups need --num-experts")
		}
		return nil
	}
	if c.MoERouterTopK < 1 || c.MoERouterTopK > c.NumExperts {
		return fmt.Errorf("--moe-router-topk %d must be between 1 and --num-experts %d", c.MoERouterTopK, c.NumExperts)
	}
	switch c.MoERouterLoadBalancingType {
	case "aux_loss", "seq_aux_loss", "":
	case "sinkhorn":
		if c.MoEAuxLossCoeff != 0 {
			return fmt.Errorf("--moe-router-load-balancing-type sinkhorn: Sinkhorn routing does not support aux loss (--moe-aux-loss-coeff %v must be 0, as Megatron asserts)", c.MoEAuxLossCoeff)
		}
	default:
		return fmt.Errorf("--moe-router-load-balancing-type %q: want aux_loss, seq_aux_loss or sinkhorn", c.MoERouterLoadBalancingType)
	}
	if c.AddBiasLinear() {
		return fmt.Errorf("--num-experts: experts with biases are not supported yet; pass --disable-bias-linear (as Mixtral, Qwen-MoE and Pai's MoE scripts do)")
	}
	if c.ParallelAttention {
		return fmt.Errorf("--num-experts with --parallel-attention is not supported")
	}
	if c.MoEInputJitterEps < 0 || c.MoEInputJitterEps >= 1 {
		return fmt.Errorf("--moe-input-jitter-eps %v must be in [0, 1)", c.MoEInputJitterEps)
	}
	if c.MoEAuxLossCoeff < 0 || c.MoEZLossCoeff < 0 {
		return fmt.Errorf("--moe-aux-loss-coeff %v and --moe-z-loss-coeff %v must not be negative", c.MoEAuxLossCoeff, c.MoEZLossCoeff)
	}
	if err := c.finalizeRouter(); err != nil {
		return err
	}
	if c.MoERouterPreSoftmax && c.MoERouterLoadBalancingType == "sinkhorn" {
		return fmt.Errorf("--moe-router-pre-softmax applies to aux_loss routing, not --moe-router-load-balancing-type sinkhorn")
	}
	if s, tp := c.MoESharedExpertIntermediateSize, max(c.TensorModelParallelSize, 1); s < 0 || s%tp != 0 {
		return fmt.Errorf("--moe-shared-expert-intermediate-size %d must be positive and divisible by --tensor-model-parallel-size %d", s, tp)
	}
	if c.MoESharedExpertGate && c.MoESharedExpertIntermediateSize == 0 {
		return fmt.Errorf("--moe-shared-expert-gate needs --moe-shared-expert-intermediate-size")
	}
	return nil
}

// ExpertFFN is each expert's FFN size: --moe-ffn-hidden-size, else --ffn-hidden-size.
func (c *Config) ExpertFFN() int {
	if c.MoEFFNHiddenSize > 0 {
		return c.MoEFFNHiddenSize
	}
	return c.FFNHiddenSize
}

// ExpertFC1Dim is an expert's linear_fc1 width (both GLU halves with --swiglu).
func (c *Config) ExpertFC1Dim() int {
	if c.SwiGLU {
		return 2 * c.ExpertFFN()
	}
	return c.ExpertFFN()
}

// IsMoELayer reports whether global layer i (0-based) has experts: every layer with
// --num-experts, unless --moe-layer-freq (canonical after Finalize) says otherwise.
func (c *Config) IsMoELayer(i int) bool {
	if c.NumExperts == 0 {
		return false
	}
	if c.MoELayerFreq == "" || c.MoELayerFreq == "1" {
		return true
	}
	p, err := MoELayerPattern(c.MoELayerFreq, c.NumLayers)
	return err == nil && i < len(p) && p[i] == 1
}

// finalizeMoELayerFreq checks --moe-layer-freq against --num-layers and makes it canonical:
// "" when every layer is an MoE layer, else the Python list of 0s and 1s ("[0, 1, 1]").
func (c *Config) finalizeMoELayerFreq() error {
	if c.NumExperts == 0 || c.MoELayerFreq == "" {
		return nil
	}
	p, err := MoELayerPattern(c.MoELayerFreq, c.NumLayers)
	if err != nil {
		return fmt.Errorf("--moe-layer-freq %s: %w", c.MoELayerFreq, err)
	}
	if !slices.Contains(p, 0) {
		c.MoELayerFreq = ""
		return nil
	}
	if !slices.Contains(p, 1) {
		return fmt.Errorf("--moe-layer-freq %s: no layer is an MoE layer", c.MoELayerFreq)
	}
	c.MoELayerFreq = MoELayerList(p)
	return nil
}

// MoELayerList renders a layer pattern as Python's list literal.
func MoELayerList(p []int) string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = strconv.Itoa(v)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// SharedFC1Dim is the shared experts' linear_fc1 width (both GLU halves with --swiglu).
func (c *Config) SharedFC1Dim() int {
	if c.SwiGLU {
		return 2 * c.MoESharedExpertIntermediateSize
	}
	return c.MoESharedExpertIntermediateSize
}

// Rotary reports whether attention rotates queries and keys (RoPE, plain or YaRN).
func (c *Config) Rotary() bool {
	return c.PositionEmbeddingType == "rope" || c.PositionEmbeddingType == "yarn"
}

// RoPEScaling is YaRN's (--position-embedding-type yarn, its concentration factor
// m(mscale)/m(mscale-all-dim) as Megatron-Core's _yarn_get_concentration_factor), or
// --use-rope-scaling's Llama 3.1 scaling with Megatron-Core's fixed bands (low-frequency
// factor 1, high 4, 8192 original positions), or none.
func (c *Config) RoPEScaling() kernels.RoPEScaling {
	if c.YaRN() {
		return kernels.RoPEScaling{YaRN: true, Factor: c.YarnScalingFactor, OrigMaxPos: c.YarnOrigMaxPositions, BetaFast: c.YarnBetaFast,
			BetaSlow: c.YarnBetaSlow, Concentration: c.yarnMScale(c.YarnMScale) / c.yarnMScale(c.YarnMScaleAllDim), RoundCorrection: c.YarnCorrectionRoundToInt}
	}
	if !c.UseRopeScaling {
		return kernels.RoPEScaling{}
	}
	return kernels.RoPEScaling{Factor: c.RopeScalingFactor, LowFreqFactor: 1, HighFreqFactor: 4, OrigMaxPos: 8192}
}

// yarnMScale is YaRN's m(x) = 0.1·x·ln(factor) + 1 (1 for factors ≤ 1), Megatron-Core's
// _yarn_get_mscale.
func (c *Config) yarnMScale(x float64) float64 {
	if c.YarnScalingFactor <= 1 {
		return 1
	}
	return 0.1*x*math.Log(c.YarnScalingFactor) + 1
}

// YaRN reports whether RoPE is YaRN's: --position-embedding-type yarn, or multi-latent
// attention with --rope-type yarn (its default).
func (c *Config) YaRN() bool {
	return c.PositionEmbeddingType == "yarn" || c.MultiLatentAttention && c.RopeType != "rope"
}

// finalizeRouter checks the later router options: sigmoid scores, their scaling and
// group-limited routing (Megatron-Core's asserts).
func (c *Config) finalizeRouter() error {
	switch c.MoERouterScoreFunction {
	case "", "softmax":
		c.MoERouterScoreFunction = "softmax"
	case "sigmoid":
		if c.MoERouterLoadBalancingType == "sinkhorn" {
			return fmt.Errorf("--moe-router-score-function sigmoid with --moe-router-load-balancing-type sinkhorn is not supported")
		}
	default:
		return fmt.Errorf("--moe-router-score-function %q: want softmax or sigmoid", c.MoERouterScoreFunction)
	}
	if c.MoERouterEnableExpertBias && (c.MoERouterScoreFunction != "sigmoid" || c.MoERouterBiasUpdateRate < 0) {
		return fmt.Errorf("--moe-router-enable-expert-bias needs --moe-router-score-function sigmoid and a --moe-router-bias-update-rate ≥ 0 (have %s, %v)", c.MoERouterScoreFunction, c.MoERouterBiasUpdateRate)
	}
	if c.MoERouterTopKScaling < 0 {
		return fmt.Errorf("--moe-router-topk-scaling-factor %v must not be negative", c.MoERouterTopKScaling)
	}
	g, gk, k, E := c.MoERouterNumGroups, c.MoERouterGroupTopK, c.MoERouterTopK, c.NumExperts
	switch {
	case g == 0 && gk == 0:
	case g <= 0 || gk <= 0 || gk > g || E%g != 0 || k%gk != 0 || k/gk > E/g:
		return fmt.Errorf("--moe-router-num-groups %d, --moe-router-group-topk %d: need groups dividing --num-experts %d, at most that many chosen, dividing --moe-router-topk %d into at most a group's experts", g, gk, E, k)
	case c.MoERouterLoadBalancingType == "sinkhorn":
		return fmt.Errorf("group-limited routing with --moe-router-load-balancing-type sinkhorn is not supported")
	}
	return nil
}
