package megatron

import (
	"fmt"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// legacyAliases maps legacy module names inside a layer (current, older and Pai's
// Transformer-Engine-legacy spellings) to ours. Longest prefixes come first.
var legacyAliases = []struct{ legacy, ours string }{
	{"self_attention.layernorm_qkv.layer_norm_", "input_layernorm."},
	{"self_attention.layernorm_qkv.", "self_attention.linear_qkv."},
	{"self_attention.query_key_value.", "self_attention.linear_qkv."},
	{"attention.query_key_value.", "self_attention.linear_qkv."},
	{"self_attention.proj.", "self_attention.linear_proj."},
	{"self_attention.dense.", "self_attention.linear_proj."},
	{"attention.dense.", "self_attention.linear_proj."},
	{"layernorm_mlp.layer_norm_", "pre_mlp_layernorm."},
	{"layernorm_mlp.fc1_", "mlp.linear_fc1."},
	{"layernorm_mlp.fc2_", "mlp.linear_fc2."},
	{"input_norm.", "input_layernorm."},
	{"input_layernorm.", "input_layernorm."},
	{"post_attention_norm.", "pre_mlp_layernorm."},
	{"post_attention_layernorm.", "pre_mlp_layernorm."},
	{"mlp.dense_h_to_4h.", "mlp.linear_fc1."},
	{"mlp.dense_4h_to_h.", "mlp.linear_fc2."},
}

// ignoredKey reports state entries that are not parameters: module _extra_state, RoPE
// inverse frequencies, TE's fp8 buffers.
func ignoredKey(k string) bool {
	return strings.HasSuffix(k, "_extra_state") || strings.HasSuffix(k, "inv_freq")
}

// ModelTensors reads a shard's "model" entry in any supported layout and returns its
// tensors under our parameter names (stage-local layer numbers), with the layout found.
// Keys that name no known module are returned under "?<path>" so that callers checking
// against the expected parameters report them.
func ModelTensors(model any) (map[string]*tensor.Tensor, Format, error) {
	d, ok := model.(*torchpickle.Dict)
	if !ok {
		return nil, 0, fmt.Errorf("model entry is %T, want a dict", model)
	}
	out := map[string]*tensor.Tensor{}
	add := func(name string, v any, path string) error {
		t, ok := v.(*tensor.Tensor)
		if !ok {
			return nil // None / BytesIO _extra_state and other non-tensor leaves
		}
		if _, dup := out[name]; dup {
			return fmt.Errorf("model.%s: a second tensor for parameter %s", path, name)
		}
		out[name] = t
		return nil
	}
	if _, legacy := d.Get("language_model"); legacy {
		flat := torchpickle.Flatten(d)
		untied := false
		for _, nt := range flat {
			untied = untied || nt.Name == "language_model.output_layer.weight"
		}
		for _, nt := range flat {
			if ignoredKey(nt.Name) {
				continue
			}
			name := legacyToOurs(nt.Name)
			if nt.Name == "word_embeddings_for_head.weight" && untied {
				name = "?" + nt.Name // Pai writes this copy next to an untied output layer
			}
			if err := add(name, nt.T, nt.Name); err != nil {
				return nil, Legacy, err
			}
		}
		return out, Legacy, nil
	}
	f := MCore
	keys, err := d.StringKeys()
	if err != nil {
		return nil, 0, fmt.Errorf("model: %w", err)
	}
	for _, k := range keys {
		if strings.Contains(k, ".layer_norm_") || strings.HasSuffix(k, "core_attention._extra_state") {
			f = MCoreTE
		}
	}
	for i, k := range keys {
		if ignoredKey(k) {
			continue
		}
		name := k
		if m := layerRe.FindStringSubmatch(k); m != nil {
			for ours, te := range teNames {
				if m[2] == te {
					name = "decoder.layers." + m[1] + "." + ours
				}
			}
		}
		if err := add(name, d.Values[i], k); err != nil {
			return nil, f, err
		}
	}
	return out, f, nil
}

// legacyToOurs translates a flattened legacy path (language_model.encoder.layers.0.…).
func legacyToOurs(path string) string {
	switch {
	case strings.HasPrefix(path, "language_model.embedding."):
		return "embedding." + strings.TrimPrefix(path, "language_model.embedding.")
	case path == "language_model.output_layer.weight":
		return "output_layer.weight"
	case path == "word_embeddings_for_head.weight":
		return "output_layer.weight"
	case strings.HasPrefix(path, "lm_head."):
		return "?" + path // Pai's extra copy, see ignoredPai
	}
	rest, ok := strings.CutPrefix(path, "language_model.encoder.")
	if !ok {
		rest, ok = strings.CutPrefix(path, "language_model.transformer.")
	}
	if !ok {
		return "?" + path
	}
	for _, fin := range []string{"final_norm.", "final_layernorm."} {
		if leaf, ok := strings.CutPrefix(rest, fin); ok {
			return "decoder.final_layernorm." + leaf
		}
	}
	layer, ok := strings.CutPrefix(rest, "layers.")
	if !ok {
		return "?" + path
	}
	num, sub, ok := strings.Cut(layer, ".")
	if !ok {
		return "?" + path
	}
	for _, a := range legacyAliases {
		if leaf, ok := strings.CutPrefix(sub, a.legacy); ok {
			return "decoder.layers." + num + "." + a.ours + leaf
		}
	}
	return "?" + path
}

// ignoredPai reports tensors Pai's convertor writes but Megatron never loads: the
// lm_head copy in every stage's dict, and word_embeddings_for_head beside an untied
// output layer.
func ignoredPai(name string) bool {
	return strings.HasPrefix(name, "?lm_head.") || name == "?word_embeddings_for_head.weight"
}
