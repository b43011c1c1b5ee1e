package megatron

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Megatron-Core's torch_dist format (--ckpt-format torch_dist, Megatron's default since
// Megatron-Core 0.8) keeps one iteration in one folder, whatever the parallel layout:
//
//	iter_0000100/metadata.json   {"sharded_backend": "torch_dist", …}
//	iter_0000100/.metadata       the PyTorch distributed checkpoint index (see dcp.go)
//	iter_0000100/__R_N.distcp    every rank's chunks
//	iter_0000100/common.pt       the state dict's unsharded part (args, iteration,
//	                             opt_param_scheduler, …); newer Megatron-Core stores it as
//	                             the byte object common_state/shard_0_1 instead
//
// Tensor keys are global. A stack of identical layers is one tensor with a leading layer
// axis: decoder.layers.self_attention.linear_qkv.weight is [num_layers, rows, hidden], TP
// shards are chunks along the split axis, and an MoE layer's experts add an expert axis
// (decoder.layers.mlp.experts.experts.linear_fc1.weight is [num_layers, experts, …]). The
// norms carry the Transformer Engine names whichever spec saved them
// (self_attention.linear_qkv.layer_norm_weight), and a GLU fc1 is [gate; up] over the
// whole FFN, not the rank-local halves of the torch format. Models whose layers differ
// key each layer alone (decoder.layers.3.…).

// Names of Megatron's dist_checkpointing files.
const (
	DistMetadataFile = "metadata.json"
	DistCommonFile   = "common.pt"
	distCommonObject = "common_state/"
)

// IsTorchDist reports whether an iteration folder holds a Megatron dist_checkpointing
// checkpoint (metadata.json present).
func IsTorchDist(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, DistMetadataFile))
	return err == nil
}

// distLoc is where a full tensor lives in a torch_dist checkpoint: a stored key and the
// box of it (offsets and sizes; the leading layer and expert axes are of size 1).
type distLoc struct {
	key       string
	off, size []int
}

// openDist opens a torch_dist iteration folder.
func openDist(loc Location) (*Checkpoint, error) {
	dir := loc.Dir()
	if err := checkDistBackend(dir); err != nil {
		return nil, err
	}
	r, err := openDCP(dir)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Location: loc, dist: r, distIndex: map[string]distLoc{}, index: map[string]entry{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if c.Common, err = distCommon(dir, r); err != nil {
		return nil, err
	}
	args, _ := c.Common.Get("args")
	ns, isNS := args.(*torchpickle.Namespace)
	if !isNS {
		return nil, fmt.Errorf("megatron: %s: the common state has no args (found %T); it was not written by Megatron's save_checkpoint", dir, args)
	}
	c.Args = ns
	if c.Config, c.Info, err = ConfigFromArgs(ns); err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", dir, err)
	}
	c.TP, c.PP, c.EP, c.VP = c.Info.TP, c.Info.PP, c.Info.EP, c.Info.VP
	if v, ok := c.Common.Get("checkpoint_version"); ok {
		c.Version, _ = torchpickle.AsFloat64(v)
	}
	c.Format = MCoreTE
	if impl, _ := ns.Get("transformer_impl"); impl == "local" {
		c.Format = MCore
	}
	if err := c.indexDist(); err != nil {
		return nil, fmt.Errorf("megatron: %s: %w", dir, err)
	}
	if c.DType == tensor.Invalid {
		c.DType = c.Info.ParamsDType
	}
	ok = true
	return c, nil
}

// checkDistBackend reads metadata.json and refuses backends other than torch_dist.
func checkDistBackend(dir string) error {
	path := filepath.Join(dir, DistMetadataFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	var md struct {
		Backend string `json:"sharded_backend"`
	}
	if err := json.Unmarshal(raw, &md); err != nil {
		return fmt.Errorf("megatron: %s: %w", path, err)
	}
	if md.Backend != "torch_dist" {
		return fmt.Errorf("megatron: %s: sharded_backend %q is not supported (only torch_dist; convert with Megatron's tools/checkpoint first)", path, md.Backend)
	}
	return nil
}

// distCommon reads the unsharded state: common.pt, or the common_state byte object of r
// (opened here when nil and needed).
func distCommon(dir string, r *dcpReader) (*torchpickle.Dict, error) {
	var v any
	path := filepath.Join(dir, DistCommonFile)
	if raw, err := os.ReadFile(path); err == nil {
		if v, err = torchpickle.Decode(raw); err != nil {
			return nil, fmt.Errorf("megatron: %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("megatron: %w", err)
	} else {
		if r == nil {
			if r, err = openDCP(dir); err != nil {
				return nil, err
			}
			defer r.close()
		}
		names := r.objectNames(distCommonObject)
		if len(names) != 1 {
			return nil, fmt.Errorf("megatron: %s has no %s and %d common_state objects (want one)", dir, DistCommonFile, len(names))
		}
		raw, err := r.object(names[0])
		if err != nil {
			return nil, err
		}
		if v, err = torchpickle.Decode(raw); err != nil {
			return nil, fmt.Errorf("megatron: %s: %s: %w", dir, names[0], err)
		}
		path = names[0]
	}
	if l, ok := v.([]any); ok && len(l) == 1 { // a ShardedObject is saved as [value]
		v = l[0]
	}
	d, ok := v.(*torchpickle.Dict)
	if !ok {
		return nil, fmt.Errorf("megatron: %s holds a %T, want a dict", path, v)
	}
	return d, nil
}

// indexDist finds every parameter the args imply among the stored tensors, checks the
// shapes, and refuses model tensors no parameter uses.
func (c *Checkpoint) indexDist() error {
	used := map[string]bool{}
	for e := 0; e < c.EP; e++ {
		for p := 0; p < c.PP; p++ {
			for v := 0; v < c.VP; v++ {
				specs, err := layers.Specs(c.Config, layers.Parallel{TPSize: c.TP, PPRank: p, PPSize: c.PP, VPRank: v, VPSize: c.VP, EPRank: e, EPSize: c.EP})
				if err != nil {
					return err
				}
				for _, sp := range specs {
					if sp.Shared || (e > 0 && !sp.Expert) {
						continue
					}
					for i, q := range sp.Logical() {
						if sp.Experts == nil {
							i = -1
						}
						l, err := c.locate(q)
						if err != nil {
							return err
						}
						used[l.key] = true
						c.distIndex[q.InitKey] = l
						c.index[q.InitKey] = entry{e, p, v, sp, i, q}
						c.keys = append(c.keys, q.InitKey)
					}
				}
			}
		}
	}
	var extra []string
	for k := range c.dist.tensors {
		if !used[k] && isModelKey(k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("tensor %s is not a parameter of the model the args describe", strings.Join(extra[:min(3, len(extra))], ", "))
	}
	return nil
}

// isModelKey tells model tensors from the optimizer's and others' (optimizer.…, rng_state).
func isModelKey(k string) bool {
	for _, p := range []string{"embedding.", "decoder.", "output_layer.", "mtp.", "model"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

var expertKeyRe = regexp.MustCompile(`^mlp\.experts\.local_experts\.(\d+)\.(.+)$`)

// distAltNames are other names a layer's parameter may be stored under: Transformer
// Engine's multi-latent attention spec fuses the latent norms (--qk-layernorm) into the up
// projections (gpt_layer_specs.py; no fixture here, as Megatron builds MLA only with TE).
var distAltNames = map[string][]string{
	"self_attention.q_layernorm.weight":  {"self_attention.linear_q_up_proj.layer_norm_weight"},
	"self_attention.kv_layernorm.weight": {"self_attention.linear_kv_up_proj.layer_norm_weight"},
}

// distKey is where the full tensor named initKey (a Param.InitKey) is stored: the key, the
// indices on its stacked axes and their sizes. stacked: the layers share one tensor with a
// leading layer axis (DistStacked), else each layer has its own keys; experts add an
// expert axis. The norms take their Transformer Engine names unless unfused (a TE MoE
// layer's own pre_mlp_layernorm, Param.Unfused with the TE spec).
func distKey(cfg layers.Config, initKey string, stacked, unfused bool) (key string, prefix, axes []int) {
	m := layerRe.FindStringSubmatch(initKey)
	if m == nil {
		return initKey, nil, nil
	}
	layer, _ := strconv.Atoi(m[1])
	rest := m[2]
	if te, ok := teNames[rest]; ok && !unfused {
		rest = te
	}
	head := "decoder.layers." + m[1] + "."
	if stacked {
		head, prefix, axes = "decoder.layers.", []int{layer}, []int{cfg.NumLayers}
	}
	if em := expertKeyRe.FindStringSubmatch(rest); em != nil {
		e, _ := strconv.Atoi(em[1])
		return head + "mlp.experts.experts." + em[2], append(prefix, e), append(axes, cfg.NumExperts)
	}
	return head + rest, prefix, axes
}

// locate finds parameter q's stored tensor among the names Megatron may have given it:
// distKey's, stacked or per layer, with the norms under their Transformer Engine names or
// their own; then the layer's local name as it is, and distAltNames.
func (c *Checkpoint) locate(q *layers.Param) (distLoc, error) {
	type cand struct {
		key    string
		prefix []int // indices on the leading stacked axes
	}
	var cands []cand
	for _, stacked := range []bool{true, false} {
		for _, unfused := range []bool{false, true} {
			key, prefix, _ := distKey(c.Config, q.InitKey, stacked, unfused)
			cands = append(cands, cand{key, prefix})
		}
	}
	if m := layerRe.FindStringSubmatch(q.InitKey); m != nil {
		layer, _ := strconv.Atoi(m[1])
		for _, rest := range append([]string{m[2]}, distAltNames[m[2]]...) {
			cands = append(cands, cand{"decoder.layers." + rest, []int{layer}}, cand{"decoder.layers." + m[1] + "." + rest, nil})
		}
	}
	for _, cd := range cands {
		t, ok := c.dist.tensors[cd.key]
		if !ok {
			continue
		}
		np := len(cd.prefix)
		if len(t.size) != np+len(q.FullShape) || !tensor.SameShape(t.size[np:], q.FullShape) {
			return distLoc{}, fmt.Errorf("tensor %s has shape %v; %s needs %v after %d stacked axes (TP %d, hidden_size %d, padded_vocab_size %d, …)",
				cd.key, t.size, q.InitKey, q.FullShape, np, c.TP, c.Config.HiddenSize, c.Config.PaddedVocabSize)
		}
		for d, i := range cd.prefix {
			if i >= t.size[d] {
				return distLoc{}, fmt.Errorf("tensor %s stacks %d along axis %d; %s needs index %d", cd.key, t.size[d], d, q.InitKey, i)
			}
		}
		if !t.dtype.IsFloat() {
			return distLoc{}, fmt.Errorf("tensor %s has dtype %v, want a floating-point type", cd.key, t.dtype)
		}
		if c.DType == tensor.Invalid {
			c.DType = t.dtype
		}
		off := append(append([]int(nil), cd.prefix...), make([]int, len(q.FullShape))...)
		size := make([]int, np, np+len(q.FullShape))
		for d := range size {
			size[d] = 1
		}
		return distLoc{cd.key, off, append(size, q.FullShape...)}, nil
	}
	return distLoc{}, fmt.Errorf("tensor %s (stored as %s) is missing; the args expect it", q.InitKey, cands[0].key)
}

// distFull reads one full tensor of a torch_dist checkpoint.
func (c *Checkpoint) distFull(key string) ([]float32, []int, error) {
	l, ok := c.distIndex[key]
	if !ok {
		return nil, nil, fmt.Errorf("megatron: %s has no tensor %s", c.Dir(), key)
	}
	v, err := c.dist.region(l.key, l.off, l.size)
	if err != nil {
		return nil, nil, fmt.Errorf("megatron: %w", err)
	}
	q := c.index[key].q
	return v, q.FullShape, nil
}

// OptimizerStates are the per-parameter optimizer states Megatron-Core's torch_dist
// checkpoints hold (optimizer.state.<name>.<model key>): Adam's moments and the fp32 main
// parameters of 16-bit training.
var OptimizerStates = []string{"exp_avg", "exp_avg_sq", "fp32_param"}

// OptimizerKey is where a torch_dist checkpoint stores optimizer state name of the model
// tensor stored as key, by optimizer chain (Chain).
func OptimizerKey(chain, name, key string) string {
	return chain + "optimizer.state." + name + "." + key
}

// Chain is the prefix Megatron-Core's ChainedOptimizer gives optimizer i's keys when a
// rank has more than one (dense and expert-parallel parameters: "chained_0.",
// "chained_1."), or "" for a rank with one.
func Chain(i, n int) string {
	if n < 2 {
		return ""
	}
	return fmt.Sprintf("chained_%d.", i)
}

// optimizerKey finds the stored key of optimizer state name of the tensor stored as key:
// unprefixed, or under either optimizer of a chain (ranks with and without experts differ).
func (c *Checkpoint) optimizerKey(name, key string) (string, bool) {
	for _, chain := range []string{"", Chain(0, 2), Chain(1, 2)} {
		if k := OptimizerKey(chain, name, key); c.dist.tensors[k] != nil {
			return k, true
		}
	}
	return OptimizerKey("", name, key), false
}

// HasOptimizerState reports whether the checkpoint holds optimizer state name for its
// parameters (a torch_dist checkpoint saved with it).
func (c *Checkpoint) HasOptimizerState(name string) bool {
	if c.dist == nil || len(c.keys) == 0 {
		return false
	}
	_, ok := c.optimizerKey(name, c.distIndex[c.keys[0]].key)
	return ok
}

// OptimizerFull reads optimizer state name (see OptimizerStates) of the full tensor key,
// in key's shape, from a torch_dist checkpoint, whichever optimizer and layout saved it.
func (c *Checkpoint) OptimizerFull(name, key string) ([]float32, []int, error) {
	l, ok := c.distIndex[key]
	if !ok {
		return nil, nil, fmt.Errorf("megatron: %s has no tensor %s", c.Dir(), key)
	}
	stored, _ := c.optimizerKey(name, l.key)
	v, err := c.dist.stateRegion(stored, c.dist.tensors[l.key].size, l.off, l.size)
	if err != nil {
		return nil, nil, fmt.Errorf("megatron: optimizer state %s of %s: %w", name, key, err)
	}
	return v, c.index[key].q.FullShape, nil
}

// LoadArgs reads the args a checkpoint recorded: shard (0, 0)'s in the torch format, the
// common state's in torch_dist. where names the file they came from.
func LoadArgs(loc Location) (ns *torchpickle.Namespace, where string, err error) {
	dir := loc.Dir()
	if IsTorchDist(dir) {
		if err := checkDistBackend(dir); err != nil {
			return nil, "", err
		}
		common, err := distCommon(dir, nil)
		if err != nil {
			return nil, "", err
		}
		v, _ := common.Get("args")
		ns, ok := v.(*torchpickle.Namespace)
		if !ok {
			return nil, "", fmt.Errorf("megatron: %s: the common state has no args", dir)
		}
		return ns, dir, nil
	}
	_, pp, err := Shards(loc)
	if err != nil {
		return nil, "", err
	}
	sf, err := LoadShard(loc, 0, 0, pp)
	if err != nil {
		return nil, "", err
	}
	defer sf.Close()
	ns, err = sf.Args()
	return ns, sf.Path, err
}
