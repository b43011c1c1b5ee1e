package layers

import (
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// Param is one trainable tensor with the metadata Megatron attaches to it. Checkpoint I/O and
// the optimizer work from these fields; nothing re-derives them from names.
type Param struct {
	// Name is the mcore name, e.g. decoder.layers.3.self_attention.linear_qkv.weight.
	Name string
	// Data is the local shard (F32 on the CPU backend); Grad has the same shape and is a view
	// into the contiguous grad buffer once one is attached (see AttachGrads).
	Data, Grad *tensor.Tensor
	// Low, when set, is the 16-bit weight GEMMs read: a rounded copy of Data for inference
	// (SetLowPrecision), or Data itself once optim.Adam.ShadowWeights has made the model's
	// weights 16-bit as Megatron's are.
	Low *tensor.Tensor
	// Wide is an F32 copy of 16-bit Data for the ops that take F32 weights, kept current
	// by the optimizer; nil while Data is F32. NonGEMM marks the parameters such ops read
	// (norm weights, biases); Lookup the embedding tables, which lookups take in F32 or
	// BF16 (so only F16 tables need Wide).
	Wide            *tensor.Tensor
	NonGEMM, Lookup bool
	// PartitionDim is the dimension split over tensor parallelism, or -1 if replicated.
	PartitionDim int
	// SequenceParallel marks params whose grads are all-reduced over TP with
	// --sequence-parallel (norm weights, row-parallel biases).
	SequenceParallel bool
	// HeadPartial marks params every TP rank holds whole but applies to its own heads only
	// (--qk-layernorm's weights): their grads are all-reduced over TP in every layout.
	HeadPartial bool
	// Shared marks a copy of a weight owned elsewhere (the tied output layer on the last
	// pipeline stage); excluded from the grad norm.
	Shared bool
	// SharedEmbedding marks the word embeddings tied across pipeline stages (the first
	// stage's embedding and the last stage's output copy), whose grads are summed over the
	// embedding group (Megatron's shared_embedding attribute).
	SharedEmbedding bool
	// NoWeightDecay: biases and norm weights (Megatron: 1-D params or names ending in .bias).
	NoWeightDecay bool
	// Shape is the local shard's shape (Data's shape when allocated).
	Shape []int
	// FullShape is the unsharded shape; GLU marks a SwiGLU fc1 whose shard is [gate_r; up_r].
	FullShape []int
	GLU       bool
	// Expert marks an MoE expert's weight: with expert parallelism its grads are reduced
	// over the expert-data-parallel group only (Megatron's allreduce = False).
	Expert bool
	// Unfused marks a norm that stays its own module under Transformer Engine (MoE layers'
	// pre_mlp_layernorm, which no linear_fc1 follows).
	Unfused bool
	// InitKey names the full tensor whose values initialise this shard: the global name
	// (layer numbers counted over the whole model), so every parallel layout starts from the
	// same weights.
	InitKey string
	// Experts, on a GroupedMLP weight (--moe-grouped-gemm), describe the local experts'
	// SequentialMLP weights packed in it, one per expert (see Logical); nil elsewhere.
	Experts []*Param
	// InOut marks a weight stored [in, out] (y = x·W), as GroupedMLP's experts are, where
	// nn.Linear's is [out, in].
	InOut bool
	// Buffer marks a persistent buffer, not a weight (the router's expert bias): saved,
	// loaded and converted with the weights, always F32, but never given to the optimizer
	// (Params.Trainable leaves it out), so it has no Grad.
	Buffer bool
}

// Trainable is ps without its buffers: what the optimizer updates.
func (ps Params) Trainable() Params {
	out := make(Params, 0, len(ps))
	for _, p := range ps {
		if !p.Buffer {
			out = append(out, p)
		}
	}
	return out
}

// Logical returns the full tensors this parameter's shards hold, each described by its
// InitKey, FullShape, PartitionDim and GLU: the parameter itself, or the experts packed
// in a GroupedMLP weight. Checkpoints and conversions move full tensors by these names,
// so a GroupedMLP model loads from a SequentialMLP checkpoint and back, in any layout.
func (p *Param) Logical() []*Param {
	if p.Experts != nil {
		return p.Experts
	}
	return []*Param{p}
}

// LocalFrom builds this rank's shard (TP rank r of size) from the full tensors full
// returns for each of p.Logical() (the caller checks their shapes). A GroupedMLP weight
// packs its experts' shards transposed, one block after another.
func (p *Param) LocalFrom(full func(q *Param) ([]float32, error), r, size int) ([]float32, error) {
	if p.Experts == nil {
		v, err := full(p)
		if err != nil {
			return nil, err
		}
		return Shard(v, p.FullShape, p.PartitionDim, p.GLU, r, size), nil
	}
	out := make([]float32, 0, p.Numel())
	for _, q := range p.Experts {
		v, err := full(q)
		if err != nil {
			return nil, err
		}
		out = appendTransposed(out, Shard(v, q.FullShape, q.PartitionDim, q.GLU, r, size), q.Shape[0], q.Shape[1])
	}
	return out, nil
}

// ExpertBlock is block i of t, this GroupedMLP weight's local tensor (flat): expert i's
// shard, transposed.
func (p *Param) ExpertBlock(t *tensor.Tensor, i int) *tensor.Tensor {
	return block(t, i, len(p.Experts), []int{p.Experts[i].Numel()})
}

// ExpertShard returns expert i's shard in its SequentialMLP layout (Experts[i].Shape) from
// the values of its block (ExpertBlock).
func (p *Param) ExpertShard(block []float32, i int) []float32 {
	q := p.Experts[i]
	return appendTransposed(make([]float32, 0, len(block)), block, q.Shape[1], q.Shape[0])
}

// appendTransposed appends the transpose [cols, rows] of the row-major m [rows, cols].
func appendTransposed(dst, m []float32, rows, cols int) []float32 {
	for j := 0; j < cols; j++ {
		for i := 0; i < rows; i++ {
			dst = append(dst, m[i*cols+j])
		}
	}
	return dst
}

// Value is the weight as the non-GEMM ops take it: Data, or its F32 Wide copy.
func (p *Param) Value() *tensor.Tensor {
	if p.Wide != nil {
		return p.Wide
	}
	return p.Data
}

// TensorParallel reports whether the parameter is split over TP (Megatron's
// tensor_model_parallel attribute).
func (p *Param) TensorParallel() bool { return p.PartitionDim >= 0 }

// Numel is the element count of the local shard.
func (p *Param) Numel() int { return tensor.ShapeNumel(p.Shape) }

// Params is the model's parameters in registration order (Megatron's named_parameters order).
type Params []*Param

// ByName finds a parameter.
func (ps Params) ByName(name string) *Param {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Find returns the parameter holding the tensor named name: a parameter, with part −1, or
// an expert packed in a GroupedMLP weight, with its index in Experts.
func (ps Params) Find(name string) (*Param, int) {
	for _, p := range ps {
		if p.Name == name {
			return p, -1
		}
		for i, q := range p.Experts {
			if q.Name == name {
				return p, i
			}
		}
	}
	return nil, -1
}

// Numel is the total element count.
func (ps Params) Numel() int {
	n := 0
	for _, p := range ps {
		n += p.Numel()
	}
	return n
}

// paramSet registers parameters as modules are built.
type paramSet struct {
	be   kernels.Backend
	all  Params
	tp   int // TP size
	cast *castScratch
	// auxScale is the model's AuxLossScale, which MoE layers read in backward.
	auxScale *float32
	cpx      *cpScratch // the model's context-parallel staging, shared by its layers
}

// add registers a parameter of the given full shape; partitionDim ≥ 0 splits it over TP.
// initKey defaults to the name.
func (s *paramSet) add(name string, partitionDim int, full ...int) *Param {
	p := s.describe(name, partitionDim, full...)
	if s.be != nil { // nil: describe the parameters without allocating them (Specs)
		p.Data = s.be.Alloc(tensor.F32, p.Shape...)
	}
	p.NoWeightDecay = len(full) == 1 || hasSuffix(name, ".bias")
	s.all = append(s.all, p)
	return p
}

// describe is a parameter of the given full shape and split, neither allocated nor
// registered.
func (s *paramSet) describe(name string, partitionDim int, full ...int) *Param {
	local := append([]int(nil), full...)
	if partitionDim >= 0 {
		local[partitionDim] /= max(s.tp, 1)
	}
	return &Param{Name: name, Shape: local, PartitionDim: partitionDim,
		FullShape: append([]int(nil), full...), InitKey: name}
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// SetLowPrecision gives every parameter a Low copy of its weights in dt (BF16 or F16),
// so GEMMs read 16-bit weights: for inference, where the weights do not change (training
// keeps its copies current through optim.Adam.ShadowWeights instead).
func (ps Params) SetLowPrecision(be kernels.Backend, dt tensor.DType) {
	for _, p := range ps {
		if p.Low == nil || p.Low.DType() != dt {
			p.Low = be.Alloc(dt, p.Shape...)
		}
		be.Cast(p.Low, p.Data)
	}
}
