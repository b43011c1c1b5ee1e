package torchpickle

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// NamedTensor is a tensor found in a pickled structure, with its dotted path.
type NamedTensor struct {
	Name string
	T    *tensor.Tensor
}

// Flatten walks dicts (by key), lists and tuples (by index) depth-first in pickled
// order and returns every tensor under its path joined with dots, the naming Megatron's
// tools use for nested legacy state dicts (model → language_model → encoder →
// "layers.0.input_norm.weight" becomes "language_model.encoder.layers.0.input_norm.weight"
// when v is the "model" entry). Non-tensor leaves (None _extra_state, BytesIO, ...)
// are skipped.
func Flatten(v any) []NamedTensor {
	var out []NamedTensor
	var walk func(prefix string, v any)
	join := func(prefix string, k any) string {
		s := fmt.Sprint(k)
		if prefix == "" {
			return s
		}
		return prefix + "." + s
	}
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case *tensor.Tensor:
			out = append(out, NamedTensor{prefix, x})
		case *Dict:
			for i, k := range x.Keys {
				walk(join(prefix, k), x.Values[i])
			}
		case []any:
			for i, it := range x {
				walk(join(prefix, i), it)
			}
		case Tuple:
			for i, it := range x {
				walk(join(prefix, i), it)
			}
		}
	}
	walk("", v)
	return out
}
