package megatron

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// Format is a model key layout inside a shard's "model" entry.
type Format int

const (
	// MCore is Megatron-Core's GPTModel with the local layer spec: flat keys equal to our
	// parameter names (decoder.layers.0.input_layernorm.weight, …) and None _extra_state
	// entries for the parallel linears.
	MCore Format = iota
	// MCoreTE is Megatron-Core with the Transformer Engine spec: the norms are fused into
	// the following linear (self_attention.linear_qkv.layer_norm_weight,
	// mlp.linear_fc1.layer_norm_weight), and TE modules carry empty uint8 _extra_state.
	MCoreTE
	// Legacy is megatron/legacy/model's nested GPT: model.language_model.{embedding,
	// encoder, output_layer}, with encoder keys layers.N.input_norm,
	// self_attention.query_key_value, self_attention.dense, post_attention_norm,
	// mlp.dense_h_to_4h, mlp.dense_4h_to_h and final_norm, and
	// model.word_embeddings_for_head on the last stage of a tied pipeline.
	Legacy
)

func (f Format) String() string {
	switch f {
	case MCore:
		return "mcore"
	case MCoreTE:
		return "mcore-te"
	case Legacy:
		return "legacy"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat accepts legacy, mcore (local spec), mcore-te / transformer_engine.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "legacy":
		return Legacy, nil
	case "mcore", "local", "mcore-local":
		return MCore, nil
	case "mcore-te", "mcore_te", "te", "transformer_engine":
		return MCoreTE, nil
	}
	return 0, fmt.Errorf("unknown Megatron checkpoint format %q (want legacy, mcore or mcore-te)", s)
}

var layerRe = regexp.MustCompile(`^decoder\.layers\.(\d+)\.(.+)$`)

// teNames maps local-spec sub-names to TE-spec ones (the norms fused into the linears).
var teNames = map[string]string{
	"input_layernorm.weight":   "self_attention.linear_qkv.layer_norm_weight",
	"input_layernorm.bias":     "self_attention.linear_qkv.layer_norm_bias",
	"pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
	"pre_mlp_layernorm.bias":   "mlp.linear_fc1.layer_norm_bias",
}

// legacyLayer maps local-spec module names inside a layer to the legacy ones.
var legacyLayer = []struct{ ours, legacy string }{
	{"input_layernorm.", "input_norm."},
	{"self_attention.linear_qkv.", "self_attention.query_key_value."},
	{"self_attention.linear_proj.", "self_attention.dense."},
	{"pre_mlp_layernorm.", "post_attention_norm."},
	{"mlp.linear_fc1.", "mlp.dense_h_to_4h."},
	{"mlp.linear_fc2.", "mlp.dense_4h_to_h."},
}

// KeyPath is where a parameter lives in the "model" dict: the nested keys (one key for
// the flat mcore layouts).
func KeyPath(f Format, name string, shared bool) ([]string, error) {
	switch f {
	case MCore:
		return []string{name}, nil
	case MCoreTE:
		if m := layerRe.FindStringSubmatch(name); m != nil {
			if strings.Contains(m[2], "self_attention.linear_kv_down_proj.") {
				return nil, fmt.Errorf("parameter %s: multi-latent attention is stored with the local spec's layout only (Transformer Engine's duplicates the down projections on every TP rank)", name)
			}
			if te, ok := teNames[m[2]]; ok {
				return []string{"decoder.layers." + m[1] + "." + te}, nil
			}
		}
		return []string{name}, nil
	case Legacy:
		if m := layerRe.FindStringSubmatch(name); m != nil {
			for _, r := range legacyLayer {
				if rest, ok := strings.CutPrefix(m[2], r.ours); ok {
					return []string{"language_model", "encoder", "layers." + m[1] + "." + r.legacy + rest}, nil
				}
			}
			return nil, fmt.Errorf("parameter %s has no legacy name: Megatron's legacy GPT has no such module (use Megatron-Core keys)", name)
		}
		if rest, ok := strings.CutPrefix(name, "decoder.final_layernorm."); ok {
			return []string{"language_model", "encoder", "final_norm." + rest}, nil
		}
		if rest, ok := strings.CutPrefix(name, "embedding."); ok {
			// embedding.word_embeddings.weight → language_model/embedding/word_embeddings/weight
			mod, leaf, _ := strings.Cut(rest, ".")
			return []string{"language_model", "embedding", mod, leaf}, nil
		}
		if name == "output_layer.weight" {
			if shared {
				return []string{"word_embeddings_for_head", "weight"}, nil
			}
			return []string{"language_model", "output_layer", "weight"}, nil
		}
		return nil, fmt.Errorf("parameter %s has no legacy name: Megatron's legacy GPT has no such module (use Megatron-Core keys)", name)
	}
	return nil, fmt.Errorf("unknown format %v", f)
}

// ParamKeyPath is KeyPath for a parameter: a norm that stays its own module under
// Transformer Engine (Param.Unfused, MoE layers' pre_mlp_layernorm) keeps its local name.
func ParamKeyPath(f Format, p *layers.Param) ([]string, error) {
	if p.Unfused && f == MCoreTE {
		return []string{p.Name}, nil
	}
	return KeyPath(f, p.Name, p.Shared)
}

// extraStates lists the _extra_state entries Megatron saves for a parameter's module, as
// key paths, with the value (None, or an empty uint8 tensor for TE modules). They are
// attached after the module's last parameter.
func extraStates(f Format, p *layers.Param, last bool) [][]string {
	if !last {
		return nil
	}
	name := p.Name
	mod := name[:strings.LastIndexByte(name, '.')]
	switch {
	case strings.HasSuffix(mod, "linear_qkv"), strings.HasSuffix(mod, "linear_proj"),
		strings.HasSuffix(mod, "linear_fc1"), strings.HasSuffix(mod, "linear_fc2"), mod == "output_layer":
	default:
		return nil
	}
	path, err := KeyPath(f, mod+".weight", p.Shared)
	if err != nil {
		return nil
	}
	leaf := len(path) - 1
	if f == Legacy {
		if path[0] == "word_embeddings_for_head" {
			return nil
		}
		if mod == "output_layer" {
			return [][]string{{"language_model", "output_layer", "_extra_state"}}
		}
		p := append([]string(nil), path...)
		p[leaf] = strings.TrimSuffix(p[leaf], "weight") + "_extra_state"
		return [][]string{p}
	}
	out := [][]string{{mod + "._extra_state"}}
	if f == MCoreTE && strings.HasSuffix(mod, "linear_proj") {
		// core_attention's state precedes linear_proj in module order.
		out = append([][]string{{strings.TrimSuffix(mod, "linear_proj") + "core_attention._extra_state"}}, out...)
	}
	return out
}

// ModelDict builds a shard's "model" entry in format f from its parameters' local
// tensors, keyed by Param.Name. Every parameter must be present with its local shape.
// Module _extra_state entries are added as Megatron saves them (None for Megatron's
// linears, an empty uint8 tensor for Transformer Engine modules) so that strict loading
// finds every key.
func ModelDict(f Format, params layers.Params, tensors map[string]*tensor.Tensor) (*torchpickle.Dict, error) {
	root := torchpickle.NewDict(true)
	for i, p := range params {
		t, ok := tensors[p.Name]
		if !ok {
			return nil, fmt.Errorf("no tensor for parameter %s", p.Name)
		}
		if !tensor.SameShape(t.Shape(), p.Shape) {
			return nil, fmt.Errorf("parameter %s: tensor has shape %v, want %v", p.Name, t.Shape(), p.Shape)
		}
		path, err := ParamKeyPath(f, p)
		if err != nil {
			return nil, err
		}
		setPath(root, path, t)
		mod := p.Name[:strings.LastIndexByte(p.Name, '.')]
		last := i+1 == len(params) || !strings.HasPrefix(params[i+1].Name, mod+".")
		for _, ep := range extraStates(f, p, last) {
			var v any
			if f == MCoreTE && !strings.HasPrefix(ep[0], "output_layer") {
				v = tensor.New(tensor.U8, 0)
			}
			setPath(root, ep, v)
		}
	}
	return root, nil
}

// setPath stores v under nested keys, creating OrderedDicts on the way.
func setPath(d *torchpickle.Dict, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := d.Get(k)
		nd, isDict := next.(*torchpickle.Dict)
		if !ok || !isDict {
			nd = torchpickle.NewDict(true)
			d.Set(k, nd)
		}
		d = nd
	}
	d.Set(path[len(path)-1], v)
}
