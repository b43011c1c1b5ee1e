package torchpickle

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/tensor"
)

// storageDTypes maps torch's typed-storage classes to element types.
// UntypedStorage holds bytes.
var storageDTypes = map[string]tensor.DType{
	"FloatStorage": tensor.F32, "HalfStorage": tensor.F16, "BFloat16Storage": tensor.BF16,
	"DoubleStorage": tensor.F64, "LongStorage": tensor.I64, "IntStorage": tensor.I32,
	"ShortStorage": tensor.I16, "CharStorage": tensor.I8, "ByteStorage": tensor.U8,
	"BoolStorage": tensor.Bool, "Float8_e4m3fnStorage": tensor.F8E4M3,
	"Float8_e5m2Storage": tensor.F8E5M2, "UntypedStorage": tensor.U8,
}

// storageClass returns the typed-storage class name torch writes for dt.
func storageClass(dt tensor.DType) (string, bool) {
	for name, d := range storageDTypes {
		if d == dt && name != "UntypedStorage" {
			return name, true
		}
	}
	return "", false
}

// torchDTypes maps the attribute names of torch's dtype objects (torch.float32,
// torch.half, ...) to element types.
var torchDTypes = map[string]tensor.DType{
	"float32": tensor.F32, "float": tensor.F32, "float16": tensor.F16, "half": tensor.F16,
	"bfloat16": tensor.BF16, "float64": tensor.F64, "double": tensor.F64,
	"int64": tensor.I64, "long": tensor.I64, "int32": tensor.I32, "int": tensor.I32,
	"int16": tensor.I16, "short": tensor.I16, "int8": tensor.I8, "uint8": tensor.U8,
	"bool": tensor.Bool, "float8_e4m3fn": tensor.F8E4M3, "float8_e5m2": tensor.F8E5M2,
}

// allowedGlobals is every global the reader accepts besides torch dtypes, storage
// classes and Megatron's own classes. Module names are normalised (see canonical).
var allowedGlobals = map[string]bool{
	"collections.OrderedDict":                    true,
	"torch._utils._rebuild_tensor_v2":            true,
	"torch._utils._rebuild_parameter":            true,
	"torch._utils._rebuild_parameter_with_state": true,
	"torch._tensor._rebuild_from_type_v2":        true,
	"torch.Tensor":                               true,
	"torch.nn.parameter.Parameter":               true,
	"torch.Size":                                 true,
	"torch.device":                               true,
	"torch.torch_version.TorchVersion":           true,
	"argparse.Namespace":                         true,
	"types.SimpleNamespace":                      true,
	"io.BytesIO":                                 true,
	"_codecs.encode":                             true,
	"numpy.core.multiarray._reconstruct":         true,
	"numpy.core.multiarray.scalar":               true,
	"numpy.ndarray":                              true,
	"numpy.dtype":                                true,
	"builtins.set":                               true,
	"builtins.frozenset":                         true,
	"builtins.bytearray":                         true,
	"builtins.getattr":                           true,
	"signal.Signals":                             true, // newer Megatron's args.exit_signal
}

// canonical maps Python 2 and numpy 2 module spellings to the ones used above.
func canonical(mod string) string {
	switch mod {
	case "__builtin__":
		return "builtins"
	case "_io":
		return "io"
	case "numpy._core.multiarray":
		return "numpy.core.multiarray"
	}
	return mod
}

// AllowedGlobals lists the globals the reader accepts (besides torch.<dtype>,
// torch.<T>Storage and megatron.* classes), for documentation and error messages.
func AllowedGlobals() []string {
	out := make([]string, 0, len(allowedGlobals))
	for g := range allowedGlobals {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// findGlobal resolves a GLOBAL: a torch dtype becomes a tensor.DType, an allowed
// class or function a Global; anything else is an error naming it.
func findGlobal(mod, name string) (any, error) {
	cm := canonical(mod)
	if cm == "torch" {
		if dt, ok := torchDTypes[name]; ok {
			return dt, nil
		}
		if _, ok := storageDTypes[name]; ok {
			return Global{cm, name}, nil
		}
	}
	if cm == "torch.storage" && name == "UntypedStorage" {
		return Global{"torch", name}, nil
	}
	g := cm + "." + name
	if allowedGlobals[g] {
		return Global{cm, name}, nil
	}
	// Megatron's enums and config classes appear in args, and PyTorch's distributed
	// checkpoint metadata (.metadata) is made of dataclasses; they stay inert values.
	if inertModule(cm) || g == "torch.serialization._get_layout" {
		return Global{mod, name}, nil
	}
	return nil, fmt.Errorf("global %s.%s is not allowed: torchpickle only rebuilds tensors, containers, "+
		"argparse.Namespace, numpy arrays, megatron.* values and distributed-checkpoint metadata, and never runs code", mod, name)
}

// inertModule reports whether a module's classes are rebuilt as inert Objects: Megatron's,
// and torch.distributed.checkpoint's metadata dataclasses.
func inertModule(mod string) bool {
	return mod == "megatron" || strings.HasPrefix(mod, "megatron.") || strings.HasPrefix(mod, "torch.distributed.checkpoint.")
}

// NumpyDType is a numpy dtype object: kind and size ("u4", "f8") and byte order
// ("<", ">", "|", "=").
type NumpyDType struct {
	Kind, Order string
}

func (d *NumpyDType) String() string { return d.Order + d.Kind }

// call applies an allowed callable (REDUCE).
func (u *unpickler) call(fn any, args Tuple) (any, error) {
	g, ok := fn.(Global)
	if !ok {
		return nil, fmt.Errorf("cannot call %s", typeName(fn))
	}
	if u.probe && (g.Module == "torch._utils" || g.Module == "torch._tensor") {
		return nil, nil
	}
	switch g.String() {
	case "collections.OrderedDict":
		d := NewDict(true)
		if len(args) == 1 {
			pairs, ok := args[0].(*pyList)
			if !ok {
				return nil, fmt.Errorf("OrderedDict(%s) not supported", typeName(args[0]))
			}
			for _, p := range pairs.items {
				t, ok := p.(Tuple)
				if !ok || len(t) != 2 {
					return nil, fmt.Errorf("OrderedDict item is %s, want a pair", typeName(p))
				}
				d.Set(t[0], t[1])
			}
		} else if len(args) > 1 {
			return nil, fmt.Errorf("OrderedDict with %d arguments", len(args))
		}
		return d, nil
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensor(args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 1 {
			return nil, fmt.Errorf("%s without arguments", g)
		}
		if _, ok := args[0].(*tensor.Tensor); !ok {
			return nil, fmt.Errorf("%s of %s", g, typeName(args[0]))
		}
		return args[0], nil
	case "torch._tensor._rebuild_from_type_v2":
		// (func, type, args, state): rebuild with func, then the subclass is dropped.
		if len(args) < 3 {
			return nil, fmt.Errorf("%s with %d arguments", g, len(args))
		}
		inner, ok := args[2].(Tuple)
		if !ok {
			return nil, fmt.Errorf("%s arguments are %s", g, typeName(args[2]))
		}
		if cls, ok := args[1].(Global); !ok || (cls.String() != "torch.Tensor" && cls.String() != "torch.nn.parameter.Parameter") {
			return nil, fmt.Errorf("%s of tensor subclass %v is not supported", g, args[1])
		}
		return u.call(args[0], inner)
	case "torch.Size":
		if len(args) != 1 {
			return nil, fmt.Errorf("torch.Size with %d arguments", len(args))
		}
		switch l := args[0].(type) {
		case *pyList:
			return Tuple(append([]any(nil), l.items...)), nil
		case Tuple:
			return append(Tuple(nil), l...), nil
		}
		return nil, fmt.Errorf("torch.Size(%s)", typeName(args[0]))
	case "torch.torch_version.TorchVersion":
		if len(args) == 1 {
			if s, ok := args[0].(string); ok {
				return s, nil
			}
		}
		return nil, fmt.Errorf("TorchVersion%v", args)
	case "_codecs.encode":
		return codecsEncode(args)
	case "builtins.set", "builtins.frozenset":
		if len(args) == 0 {
			return Set{}, nil
		}
		l, ok := args[0].(*pyList)
		if !ok {
			return nil, fmt.Errorf("%s(%s)", g, typeName(args[0]))
		}
		return Set(append([]any(nil), l.items...)), nil
	case "builtins.bytearray":
		switch {
		case len(args) == 0:
			return []byte{}, nil
		case len(args) == 1:
			if b, ok := args[0].([]byte); ok {
				return b, nil
			}
		case len(args) == 2:
			return codecsEncode(args)
		}
		return nil, fmt.Errorf("bytearray%v", args)
	case "builtins.getattr":
		if len(args) == 2 {
			cls, ok1 := args[0].(Global)
			name, ok2 := args[1].(string)
			if ok1 && ok2 && (cls.Module == "megatron" || strings.HasPrefix(cls.Module, "megatron.")) {
				return &Enum{Class: cls, Name: name}, nil
			}
		}
		return nil, fmt.Errorf("getattr%v is only allowed on megatron.* classes", args)
	case "numpy.core.multiarray._reconstruct":
		return &NDArray{}, nil
	case "numpy.dtype":
		if len(args) < 1 {
			return nil, fmt.Errorf("numpy.dtype without arguments")
		}
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("numpy.dtype(%s)", typeName(args[0]))
		}
		return &NumpyDType{Kind: s, Order: "|"}, nil
	case "numpy.core.multiarray.scalar":
		if len(args) != 2 {
			return nil, fmt.Errorf("numpy scalar with %d arguments", len(args))
		}
		dt, ok1 := args[0].(*NumpyDType)
		b, ok2 := args[1].([]byte)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("numpy scalar(%s, %s)", typeName(args[0]), typeName(args[1]))
		}
		return &NDArray{DType: dt.String(), Data: b, Scalar: true}, nil
	case "types.SimpleNamespace":
		return &Namespace{Class: g, Attrs: NewDict(false)}, nil
	case "argparse.Namespace":
		if len(args) == 0 {
			return NewNamespace(), nil
		}
	}
	return &Object{Class: g, Args: args}, nil
}

// codecsEncode implements _codecs.encode(str, "latin1"), protocol 2's spelling of bytes.
func codecsEncode(args Tuple) (any, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("_codecs.encode with %d arguments", len(args))
	}
	s, ok1 := args[0].(string)
	enc, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("_codecs.encode(%s, %s)", typeName(args[0]), typeName(args[1]))
	}
	switch strings.ToLower(strings.ReplaceAll(enc, "_", "-")) {
	case "latin1", "latin-1", "iso-8859-1":
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, fmt.Errorf("_codecs.encode: %U is not latin1", r)
			}
			b = append(b, byte(r))
		}
		return b, nil
	case "utf-8", "utf8":
		return []byte(s), nil
	}
	return nil, fmt.Errorf("_codecs.encode: unsupported encoding %q", enc)
}

// newObject implements NEWOBJ: cls.__new__(cls, *args).
func newObject(cls any, args Tuple) (any, error) {
	g, ok := cls.(Global)
	if !ok {
		return nil, fmt.Errorf("NEWOBJ of %s", typeName(cls))
	}
	switch g.String() {
	case "argparse.Namespace", "types.SimpleNamespace":
		return &Namespace{Class: g, Attrs: NewDict(false)}, nil
	case "io.BytesIO":
		return &BytesIO{}, nil
	case "collections.OrderedDict":
		return NewDict(true), nil
	}
	if inertModule(g.Module) || g.String() == "torch.device" {
		return &Object{Class: g, Args: args, NewObj: true}, nil
	}
	return nil, fmt.Errorf("NEWOBJ of %s is not supported", g)
}

// build implements BUILD: obj.__setstate__(state) or obj.__dict__.update(state).
func build(obj, state any) (any, error) {
	switch o := obj.(type) {
	case *Dict:
		if t, ok := state.(Tuple); ok && len(t) == 2 {
			state = t[0]
		}
		switch s := state.(type) {
		case nil:
		case *Dict:
			o.Attrs = s
		default:
			return nil, fmt.Errorf("BUILD of a dict with %s", typeName(state))
		}
		return o, nil
	case *Namespace:
		s, ok := state.(*Dict)
		if !ok {
			return nil, fmt.Errorf("BUILD of %s with %s", o.Class, typeName(state))
		}
		for i, k := range s.Keys {
			o.Attrs.Set(k, s.Values[i])
		}
		return o, nil
	case *BytesIO:
		t, ok := state.(Tuple)
		if !ok || len(t) < 2 {
			return nil, fmt.Errorf("BUILD of io.BytesIO with %s", typeName(state))
		}
		b, ok1 := t[0].([]byte)
		pos, ok2 := AsInt64(t[1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("BUILD of io.BytesIO with (%s, %s)", typeName(t[0]), typeName(t[1]))
		}
		o.Data, o.Pos = b, pos
		return o, nil
	case *NumpyDType:
		t, ok := state.(Tuple)
		if !ok || len(t) < 2 {
			return nil, fmt.Errorf("BUILD of numpy.dtype with %s", typeName(state))
		}
		order, ok := t[1].(string)
		if !ok {
			return nil, fmt.Errorf("numpy.dtype byte order is %s", typeName(t[1]))
		}
		if len(t) > 3 && (t[2] != nil || t[3] != nil) {
			return nil, fmt.Errorf("structured or sub-array numpy dtypes are not supported")
		}
		o.Order = order
		return o, nil
	case *NDArray:
		return o, buildNDArray(o, state)
	case *Object:
		o.State = state
		return o, nil
	case *tensor.Tensor:
		if d, ok := state.(*Dict); ok && d.Len() == 0 || state == nil {
			return o, nil
		}
		return nil, fmt.Errorf("BUILD of a tensor with %s", typeName(state))
	}
	return nil, fmt.Errorf("BUILD of %s", typeName(obj))
}

// buildNDArray applies ndarray.__setstate__((version, shape, dtype, is_fortran, data)).
func buildNDArray(a *NDArray, state any) error {
	t, ok := state.(Tuple)
	if !ok || len(t) != 5 {
		return fmt.Errorf("BUILD of numpy.ndarray with %s", typeName(state))
	}
	shape, ok := t[1].(Tuple)
	if !ok {
		return fmt.Errorf("numpy.ndarray shape is %s", typeName(t[1]))
	}
	dt, ok := t[2].(*NumpyDType)
	if !ok {
		return fmt.Errorf("numpy.ndarray dtype is %s", typeName(t[2]))
	}
	fortran, ok := t[3].(bool)
	if !ok {
		return fmt.Errorf("numpy.ndarray is_fortran is %s", typeName(t[3]))
	}
	data, ok := t[4].([]byte)
	if !ok {
		return fmt.Errorf("numpy.ndarray data is %s (object arrays are not supported)", typeName(t[4]))
	}
	a.Shape = make([]int, len(shape))
	n := 1
	for i, s := range shape {
		v, ok := AsInt64(s)
		if !ok || v < 0 {
			return fmt.Errorf("numpy.ndarray dimension %v", s)
		}
		a.Shape[i] = int(v)
		n *= int(v)
	}
	if sz := numpyItemSize(dt.Kind); sz > 0 && n*sz != len(data) {
		return fmt.Errorf("numpy.ndarray %s%v has %d bytes of data, want %d", dt, a.Shape, len(data), n*sz)
	}
	a.DType, a.Fortran, a.Data = dt.String(), fortran, data
	return nil
}

// numpyItemSize parses the size of a numpy kind string like "u4" ("b1", "f8"); 0 if unknown.
func numpyItemSize(kind string) int {
	if len(kind) < 2 {
		return 0
	}
	n := 0
	for _, c := range kind[1:] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
