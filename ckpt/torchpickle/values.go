// Package torchpickle reads and writes PyTorch checkpoints (torch.save's zip format,
// the format of Megatron's model_optim_rng.pt and distrib_optim.pt) without Python.
//
// The reader is a pickle virtual machine restricted to an allow-list of globals: it
// rebuilds tensors, dicts, OrderedDicts, argparse.Namespace, numpy arrays and the
// few other types torch checkpoints contain, represents Megatron's enums and classes
// as inert values, and rejects everything else by name. It never runs code.
//
// Python values map to Go as follows:
//
//	None → nil, bool → bool, int → int64 (or *big.Int beyond 64 bits), float → float64,
//	str → string, bytes/bytearray → []byte, list → []any, tuple → Tuple,
//	dict / collections.OrderedDict → *Dict (insertion-ordered),
//	torch.Tensor / nn.Parameter → *tensor.Tensor, torch.float32 … → tensor.DType,
//	argparse.Namespace / types.SimpleNamespace → *Namespace, numpy arrays and scalars
//	→ *NDArray, set/frozenset → Set, io.BytesIO → *BytesIO, other allowed classes →
//	*Object, enum members → *Enum.
package torchpickle

import (
	"fmt"
	"math/big"
	"reflect"
	"strings"
)

// Tuple is a Python tuple.
type Tuple []any

// Set is a Python set or frozenset (element order as pickled).
type Set []any

// Global names a Python class or function: module and qualified name.
type Global struct {
	Module, Name string
}

func (g Global) String() string { return g.Module + "." + g.Name }

// Dict is an insertion-ordered Python dict or collections.OrderedDict.
// Keys are strings, int64, bool, float64, nil, tensor.DType or Tuples. Keys and
// Values may be read and values replaced in place; add or remove entries only
// through Set (or build a new Dict), since lookups keep an index of the keys.
type Dict struct {
	Keys   []any
	Values []any
	// Ordered marks a collections.OrderedDict (written back as one).
	Ordered bool
	// Attrs holds instance attributes set by BUILD, e.g. the _metadata torch attaches
	// to state dicts (nil when none).
	Attrs *Dict
	index map[any]int // hashable keys → position
}

// NewDict returns an empty dict; ordered selects collections.OrderedDict.
func NewDict(ordered bool) *Dict { return &Dict{Ordered: ordered} }

// hashable reports whether k can serve as a Go map key.
func hashable(k any) bool {
	if k == nil {
		return true
	}
	return reflect.TypeOf(k).Comparable()
}

func (d *Dict) find(k any) int {
	if hashable(k) {
		if d.index == nil {
			d.index = make(map[any]int, len(d.Keys))
			for i, key := range d.Keys {
				if hashable(key) {
					d.index[key] = i
				}
			}
		}
		if i, ok := d.index[k]; ok {
			return i
		}
		return -1
	}
	for i, key := range d.Keys {
		if !hashable(key) && reflect.DeepEqual(key, k) {
			return i
		}
	}
	return -1
}

// Set stores v under k, keeping the position of an existing key as Python does.
// int keys are stored as int64.
func (d *Dict) Set(k, v any) {
	if i, ok := k.(int); ok {
		k = int64(i)
	}
	if i := d.find(k); i >= 0 {
		d.Values[i] = v
		return
	}
	d.Keys = append(d.Keys, k)
	d.Values = append(d.Values, v)
	if d.index != nil && hashable(k) {
		d.index[k] = len(d.Keys) - 1
	}
}

// Get returns the value stored under k.
func (d *Dict) Get(k any) (any, bool) {
	if i, ok := k.(int); ok {
		k = int64(i)
	}
	if i := d.find(k); i >= 0 {
		return d.Values[i], true
	}
	return nil, false
}

// Len is the number of entries.
func (d *Dict) Len() int { return len(d.Keys) }

// StringKeys returns the keys when they are all strings (as in state dicts).
func (d *Dict) StringKeys() ([]string, error) {
	out := make([]string, len(d.Keys))
	for i, k := range d.Keys {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("dict key %d is %T, not a string", i, k)
		}
		out[i] = s
	}
	return out, nil
}

// Namespace is an argparse.Namespace (Megatron's args) or types.SimpleNamespace:
// attributes in pickled order.
type Namespace struct {
	Class Global // argparse.Namespace or types.SimpleNamespace
	Attrs *Dict
}

// NewNamespace returns an empty argparse.Namespace.
func NewNamespace() *Namespace {
	return &Namespace{Class: Global{"argparse", "Namespace"}, Attrs: NewDict(false)}
}

// Get returns attribute name.
func (n *Namespace) Get(name string) (any, bool) { return n.Attrs.Get(name) }

// Set sets attribute name.
func (n *Namespace) Set(name string, v any) { n.Attrs.Set(name, v) }

// NDArray is a numpy array or (with Shape nil and Scalar set) a numpy scalar: the
// dtype string in numpy's notation with byte order ("<u4", "<f8", "|b1"), the shape,
// and the raw C-order (or Fortran-order when Fortran) bytes.
type NDArray struct {
	DType   string
	Shape   []int
	Fortran bool
	Data    []byte
	Scalar  bool // a numpy scalar (numpy.core.multiarray.scalar), shape ()
}

// BytesIO is an io.BytesIO (old Transformer Engine _extra_state): its bytes and
// stream position.
type BytesIO struct {
	Data []byte
	Pos  int64
}

// Object is an instance of an allowed class without a dedicated Go type, kept inert:
// the arguments it was created with and the state BUILD gave it.
type Object struct {
	Class Global
	Args  Tuple
	State any
	// NewObj marks creation by NEWOBJ (cls.__new__) rather than by calling cls.
	NewObj bool
}

// Enum is a member of an enum class pickled by name, getattr(Class, Name), as
// Python ≥ 3.11 does (e.g. megatron.core.enums.ModelType.encoder_or_decoder).
type Enum struct {
	Class Global
	Name  string
}

func (e *Enum) String() string { return e.Class.String() + "." + e.Name }

// AsInt64 converts a pickled integer (int64 or a *big.Int that fits) to int64.
func AsInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case *big.Int:
		if x.IsInt64() {
			return x.Int64(), true
		}
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// AsFloat64 converts a pickled number (float, or an integer AsInt64 takes) to float64, as
// Python compares them.
func AsFloat64(v any) (float64, bool) {
	if x, ok := v.(float64); ok {
		return x, true
	}
	n, ok := AsInt64(v)
	return float64(n), ok
}

// typeName describes a value for error messages.
func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case *Object:
		return x.Class.String() + " object"
	case Global:
		return "class " + x.String()
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*torchpickle.")
}
