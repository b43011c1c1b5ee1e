package main

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/gomegatron/gomegatron/layers"
)

// moeSource applies the mixture-of-experts flags to the source: --num-experts on a dense
// model upcycles it (upcycleSource), on an MoE model it must match; --moe-router-topk
// sets the experts each token is routed to. The expert-parallel size of the output
// (targetEP) is checked against the resulting model.
func moeSource(c *cli, src source) (source, error) {
	out, err := moeSourceFlags(c, src)
	if err != nil {
		return nil, err
	}
	ep := c.targetEP()
	switch n := out.config().NumExperts; {
	case c.TargetEP > 1 && c.EP > 1 && c.TargetEP != c.EP:
		return nil, fmt.Errorf("--target_expert_model_parallel_size %d and --expert-model-parallel-size %d disagree", c.TargetEP, c.EP)
	case ep < 1:
		return nil, fmt.Errorf("--target_expert_model_parallel_size %d must be positive", ep)
	case ep > 1 && n == 0:
		return nil, fmt.Errorf("--target_expert_model_parallel_size %d applies to mixture-of-experts models; %s is dense (pass --num-experts to upcycle it)", ep, c.LoadPath)
	case ep > 1 && n%ep != 0:
		return nil, fmt.Errorf("--target_expert_model_parallel_size %d does not divide the %d experts", ep, n)
	}
	return out, nil
}

// targetEP is the expert-parallel size written: --target_expert_model_parallel_size, or
// Pai's --expert-model-parallel-size.
func (c *cli) targetEP() int { return max(c.TargetEP, c.EP) }

func moeSourceFlags(c *cli, src source) (source, error) {
	if c.NumExperts < 0 || c.MoERouterTopK < 0 || c.NumExpertSplits < 0 {
		return nil, fmt.Errorf("--num-experts %d, --moe-router-topk %d and --num_expert_split_size %d must not be negative", c.NumExperts, c.MoERouterTopK, c.NumExpertSplits)
	}
	cfg := src.config()
	splits := max(c.NumExpertSplits, 1)
	switch {
	case cfg.NumExperts > 0:
		if c.NumExperts > 0 && c.NumExperts != cfg.NumExperts {
			return nil, fmt.Errorf("--num-experts %d: %s already has %d experts per layer (the count cannot be changed)", c.NumExperts, c.LoadPath, cfg.NumExperts)
		}
		if splits > 1 {
			return nil, fmt.Errorf("--num_expert_split_size %d splits a dense MLP into experts; %s already has %d experts", c.NumExpertSplits, c.LoadPath, cfg.NumExperts)
		}
		if c.MoERouterTopK == 0 || c.MoERouterTopK == cfg.MoERouterTopK {
			return src, nil
		}
		cfg.MoERouterTopK = c.MoERouterTopK
		if err := cfg.Finalize(); err != nil {
			return nil, err
		}
		return &moeOverride{source: src, cfg: cfg}, nil
	case c.NumExperts == 0:
		if c.MoERouterTopK > 0 || splits > 1 {
			return nil, fmt.Errorf("--moe-router-topk and --num_expert_split_size apply to mixture-of-experts models; %s is dense: pass --num-experts to upcycle it", c.LoadPath)
		}
		return src, nil
	}
	if !cfg.SwiGLU || cfg.AddBiasLinear() {
		return nil, fmt.Errorf("--num-experts: upcycling needs a SwiGLU MLP without biases (Llama, Mistral); %s has swiglu=%v, add_bias_linear=%v", c.LoadPath, cfg.SwiGLU, cfg.AddBiasLinear())
	}
	if cfg.FFNHiddenSize%splits != 0 {
		return nil, fmt.Errorf("--num_expert_split_size %d does not divide the FFN hidden size %d", splits, cfg.FFNHiddenSize)
	}
	cfg.NumExperts = c.NumExperts
	cfg.MoERouterTopK = 2 // Megatron's --moe-router-topk default
	if c.MoERouterTopK > 0 {
		cfg.MoERouterTopK = c.MoERouterTopK
	}
	cfg.MoERouterLoadBalancingType = "aux_loss"
	cfg.FFNHiddenSize /= splits
	if err := cfg.Finalize(); err != nil {
		return nil, fmt.Errorf("--num-experts %d: %w", c.NumExperts, err)
	}
	return &upcycleSource{source: src, cfg: cfg, dense: src.config().FFNHiddenSize, splits: splits, seed: c.Seed}, nil
}

// moeOverride is an MoE source with another --moe-router-topk (the weights are the same).
type moeOverride struct {
	source
	cfg layers.Config
}

func (s *moeOverride) config() layers.Config { return s.cfg }

// upcycleSource presents a dense model as the mixture of experts Pai-Megatron-Patch's
// hf2mcore.py makes of it (--num-experts, --num_expert_split_size S): in every layer
//
//	router.weight [E, h]         N(0, 0.02²), drawn from --seed and the layer number
//	expert e linear_fc1 [2F/S, h] [gate_s; up_s]: rows s·F/S … (s+1)·F/S of the dense
//	                              linear_fc1's gate and up halves, s = e mod S
//	expert e linear_fc2 [h, F/S]  columns s·F/S … (s+1)·F/S of the dense linear_fc2
//
// and pre_mlp_layernorm the dense layer's. Without a split (S = 1) every expert is the
// dense MLP, so with top-1 routing (score 1) the model computes exactly what the dense
// one did. Pai's Llama convertor indexes the splits by expert (more experts than splits
// fail there); its Qwen1.5 dense-to-MoE convertor takes split e mod S, as here.
type upcycleSource struct {
	source
	cfg    layers.Config
	dense  int // the dense FFN hidden size F
	splits int
	seed   uint64
	// The layer's dense fc1 and fc2, read once for all its experts (and TP shards in turn).
	cache [2]denseTensor
}

type denseTensor struct {
	key   string
	v     []float32
	shape []int
}

var moeKeyRe = regexp.MustCompile(`^decoder\.layers\.(\d+)\.mlp\.(router\.weight|experts\.local_experts\.(\d+)\.linear_fc([12])\.weight)$`)

func (s *upcycleSource) family() string        { return withExperts(s.source.family(), s.cfg.NumExperts) }
func (s *upcycleSource) config() layers.Config { return s.cfg }

func (s *upcycleSource) full(key string) ([]float32, []int, error) {
	m := moeKeyRe.FindStringSubmatch(key)
	if m == nil {
		return s.source.full(key)
	}
	layer, _ := strconv.Atoi(m[1])
	h := s.cfg.HiddenSize
	if m[2] == "router.weight" {
		rng := rand.New(rand.NewPCG(s.seed, 0x5851f42d4c957f2d^uint64(layer)))
		v := make([]float32, s.cfg.NumExperts*h)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.02)
		}
		return v, []int{s.cfg.NumExperts, h}, nil
	}
	e, _ := strconv.Atoi(m[3])
	fc := m[4]
	d, err := s.denseMLP(fmt.Sprintf("decoder.layers.%d.mlp.linear_fc%s.weight", layer, fc), fc == "1")
	if err != nil {
		return nil, nil, err
	}
	F, f := s.dense, s.cfg.FFNHiddenSize
	lo := (e % s.splits) * f
	if fc == "1" { // [gate; up] rows
		out := make([]float32, 0, 2*f*h)
		out = append(out, d.v[lo*h:(lo+f)*h]...)
		out = append(out, d.v[(F+lo)*h:(F+lo+f)*h]...)
		return out, []int{2 * f, h}, nil
	}
	out := make([]float32, 0, h*f) // columns of [h, F]
	for r := 0; r < h; r++ {
		out = append(out, d.v[r*F+lo:r*F+lo+f]...)
	}
	return out, []int{h, f}, nil
}

// denseMLP reads the dense layer's linear_fc1 (fc1) or linear_fc2 and checks its shape.
func (s *upcycleSource) denseMLP(key string, fc1 bool) (denseTensor, error) {
	slot := 1
	want := []int{s.cfg.HiddenSize, s.dense}
	if fc1 {
		slot, want = 0, []int{2 * s.dense, s.cfg.HiddenSize}
	}
	if s.cache[slot].key == key {
		return s.cache[slot], nil
	}
	v, shape, err := s.source.full(key)
	if err != nil {
		return denseTensor{}, fmt.Errorf("upcycling: %w", err)
	}
	if len(shape) != 2 || shape[0] != want[0] || shape[1] != want[1] {
		return denseTensor{}, fmt.Errorf("upcycling: %s has shape %v, want %v", key, shape, want)
	}
	s.cache[slot] = denseTensor{key: key, v: v, shape: shape}
	return s.cache[slot], nil
}

// megatronOf is the Megatron checkpoint under a (possibly wrapped) source, or nil.
func megatronOf(src source) *megatronSource {
	switch s := src.(type) {
	case *megatronSource:
		return s
	case *upcycleSource:
		return megatronOf(s.source)
	case *moeOverride:
		return megatronOf(s.source)
	}
	return nil
}
