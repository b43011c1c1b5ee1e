package torchpickle

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// pyDescribe is an independent description of a Python object graph as JSON; the Go
// describe below produces the same structure from our values, so comparing the two
// checks every value bit for bit (floats by their IEEE bits, tensors by their bytes).
const pyDescribe = `
import torch, sys, json, struct, collections, argparse, io, enum
import numpy as np
def fb(x): return '%016x' % struct.unpack('<Q', struct.pack('<d', x))[0]
def tbytes(t):
    t = t.detach().contiguous().flatten()
    if t.dtype in (torch.bfloat16, torch.float16): t = t.view(torch.int16)
    if t.dtype == torch.bool: t = t.view(torch.uint8)
    return t.numpy().tobytes().hex()
def d(o):
    if o is None: return None
    if isinstance(o, bool): return {'bool': o}
    if isinstance(o, enum.Enum): return {'enum': type(o).__module__ + '.' + type(o).__qualname__ + '.' + o.name}
    if isinstance(o, int): return {'int': str(o)}
    if isinstance(o, np.generic): return {'npscalar': o.dtype.str, 'data': o.tobytes().hex()}
    if isinstance(o, float): return {'float': fb(o)}
    if isinstance(o, str): return {'str': o}
    if isinstance(o, (bytes, bytearray)): return {'bytes': bytes(o).hex()}
    if isinstance(o, torch.dtype): return {'dtype': str(o)[6:]}
    if isinstance(o, torch.Tensor): return {'tensor': str(o.dtype)[6:], 'shape': list(o.shape), 'data': tbytes(o)}
    if isinstance(o, np.ndarray): return {'ndarray': o.dtype.str, 'shape': list(o.shape), 'data': o.tobytes().hex()}
    if isinstance(o, io.BytesIO): return {'bytesio': o.getvalue().hex(), 'pos': o.tell()}
    if isinstance(o, argparse.Namespace): return {'namespace': [[k, d(v)] for k, v in vars(o).items()]}
    if isinstance(o, collections.OrderedDict): return {'odict': [[d(k), d(v)] for k, v in o.items()]}
    if isinstance(o, dict): return {'dict': [[d(k), d(v)] for k, v in o.items()]}
    if isinstance(o, list): return {'list': [d(x) for x in o]}
    if isinstance(o, tuple): return {'tuple': [d(x) for x in o]}
    if isinstance(o, (set, frozenset)): return {'set': sorted(json.dumps(d(x), sort_keys=True, separators=(',', ':')) for x in o)}
    raise TypeError(type(o))
`

// describe mirrors pyDescribe for Go values.
func describe(t *testing.T, v any) any {
	kv := func(keys, vals []any) []any {
		out := make([]any, len(keys))
		for i := range keys {
			out[i] = []any{describe(t, keys[i]), describe(t, vals[i])}
		}
		return out
	}
	list := func(items []any) []any {
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = describe(t, it)
		}
		return out
	}
	switch x := v.(type) {
	case nil:
		return nil
	case bool:
		return map[string]any{"bool": x}
	case int64:
		return map[string]any{"int": fmt.Sprint(x)}
	case *big.Int:
		return map[string]any{"int": x.String()}
	case float64:
		return map[string]any{"float": fmt.Sprintf("%016x", math.Float64bits(x))}
	case string:
		return map[string]any{"str": x}
	case []byte:
		return map[string]any{"bytes": hex.EncodeToString(x)}
	case tensor.DType:
		return map[string]any{"dtype": x.String()}
	case *tensor.Tensor:
		shape := make([]any, len(x.Shape()))
		for i, s := range x.Shape() {
			shape[i] = float64(s)
		}
		return map[string]any{"tensor": x.DType().String(), "shape": shape, "data": hex.EncodeToString(x.Data)}
	case *NDArray:
		if x.Scalar {
			return map[string]any{"npscalar": x.DType, "data": hex.EncodeToString(x.Data)}
		}
		shape := make([]any, len(x.Shape))
		for i, s := range x.Shape {
			shape[i] = float64(s)
		}
		return map[string]any{"ndarray": x.DType, "shape": shape, "data": hex.EncodeToString(x.Data)}
	case *BytesIO:
		return map[string]any{"bytesio": hex.EncodeToString(x.Data), "pos": float64(x.Pos)}
	case *Enum:
		return map[string]any{"enum": x.String()}
	case *Namespace:
		pairs := make([]any, x.Attrs.Len())
		for i, k := range x.Attrs.Keys {
			pairs[i] = []any{k, describe(t, x.Attrs.Values[i])}
		}
		return map[string]any{"namespace": pairs}
	case *Dict:
		if x.Ordered {
			return map[string]any{"odict": kv(x.Keys, x.Values)}
		}
		return map[string]any{"dict": kv(x.Keys, x.Values)}
	case []any:
		return map[string]any{"list": list(x)}
	case Tuple:
		return map[string]any{"tuple": list(x)}
	case Set:
		var s []string
		for _, it := range x {
			b, err := json.Marshal(describe(t, it))
			require.NoError(t, err)
			s = append(s, string(b))
		}
		sort.Strings(s)
		return map[string]any{"set": toAny(s)}
	}
	t.Fatalf("describe: unexpected %T", v)
	return nil
}

var (
	pyOnce sync.Once
	pyErr  error
)

// pythonTorch returns a command runner for /usr/bin/python3 with torch, numpy and a
// stub megatron.core.enums (so Megatron's enum pickles resolve), or skips the test.
func pythonTorch(t *testing.T) func(script string, args ...string) []byte {
	pyOnce.Do(func() { pyErr = exec.Command("/usr/bin/python3", "-c", "import torch, numpy").Run() })
	if pyErr != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch and numpy not available (%v)", pyErr)
	}
	stub := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(stub, "megatron", "core"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "megatron", "__init__.py"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "megatron", "core", "__init__.py"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "megatron", "core", "enums.py"),
		[]byte("import enum\nclass ModelType(enum.Enum):\n    encoder_or_decoder = 1\n    retro_encoder = 2\n"), 0o644))
	return func(script string, args ...string) []byte {
		cmd := exec.Command("/usr/bin/python3", append([]string{"-c", pyDescribe + script}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+stub)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "python: %s", out)
		return out
	}
}

// patterned fills a host tensor with varied values of its dtype.
func patterned(dt tensor.DType, seed int, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	x := uint32(seed*2654435761 + 1)
	for i := range t.Data {
		x = x*1664525 + 1013904223
		t.Data[i] = byte(x >> 24)
	}
	switch dt {
	case tensor.Bool:
		for i := range t.Data {
			t.Data[i] &= 1
		}
	case tensor.F32:
		for i, v := range t.F32() {
			if v != v { // keep NaN payloads out of torch's round trip
				t.F32()[i] = float32(i)
			}
		}
	case tensor.F64:
		for i, v := range t.F64() {
			if v != v {
				t.F64()[i] = float64(i)
			}
		}
	case tensor.F16, tensor.BF16:
		u := t.U16()
		for i := range u {
			u[i] &= 0x3fff
		}
	}
	return t
}

// torch13DTypes are the dtypes torch 1.13 can store.
var torch13DTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.F64, tensor.I64,
	tensor.I32, tensor.I16, tensor.I8, tensor.U8, tensor.Bool}

// TestTorchLoadsGoFiles saves a checkpoint-like value from Go and loads it with
// torch.load (torch 1.13): every value must come back identical.
func TestTorchLoadsGoFiles(t *testing.T) {
	run := pythonTorch(t)
	ns := NewNamespace()
	ns.Set("lr", 3e-4)
	ns.Set("seed", int64(1234))
	ns.Set("params_dtype", tensor.BF16)
	ns.Set("model_type", &Enum{Class: Global{"megatron.core.enums", "ModelType"}, Name: "encoder_or_decoder"})
	ns.Set("data_path", []any{"1.0", "indexed/a"})
	ns.Set("tokenizer_model", nil)
	model := NewDict(true)
	for i, dt := range torch13DTypes {
		model.Set("w."+dt.String(), patterned(dt, i, 3, 4))
	}
	shared := patterned(tensor.F32, 99, 8)
	model.Set("shared.a", shared)
	model.Set("shared.b", shared)
	model.Set("scalar", tensor.FromF32([]float32{2.5}))
	model.Set("empty", tensor.New(tensor.BF16, 0, 5))
	model.Attrs = NewDict(true)
	model.Attrs.Set("_metadata", NewDict(true))
	two80 := new(big.Int).Lsh(big.NewInt(1), 80)
	top := NewDict(false)
	top.Set("args", ns)
	top.Set("checkpoint_version", 3.0)
	top.Set("iteration", int64(10))
	top.Set("model", model)
	top.Set("ints", []any{int64(0), int64(255), int64(256), int64(65535), int64(65536), int64(-1), int64(-129),
		int64(math.MaxInt32), int64(math.MinInt32), int64(math.MaxInt64), int64(math.MinInt64),
		two80, new(big.Int).Neg(two80), new(big.Int).Sub(new(big.Int).Neg(two80), big.NewInt(1))})
	top.Set("floats", []any{0.0, math.Copysign(0, -1), 1.5, -1e300, math.Inf(1), 5e-324})
	top.Set("str", "héllo\n\"wörld\" 🙂")
	top.Set("bytes", []byte{0, 255, 1, 128})
	top.Set("tuple", Tuple{int64(1), "a", nil, true, Tuple{}, Tuple{false}})
	top.Set(int64(3), "int key")
	top.Set(tensor.F32, NewDict(false)) // distrib_optim.pt keys its buffers by torch dtype
	top.Set("np", &NDArray{DType: "<u4", Shape: []int{3}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0, 255, 255, 255, 255}})
	top.Set("npscalar", &NDArray{DType: "<f8", Scalar: true, Data: []byte{0, 0, 0, 0, 0, 0, 4, 64}})
	top.Set("bytesio", &BytesIO{Data: []byte("abc"), Pos: 1})
	top.Set("set", Set{int64(1), int64(2)})
	path := filepath.Join(t.TempDir(), "model_optim_rng.pt")
	require.NoError(t, Save(path, top))

	out := run(`
obj = torch.load(sys.argv[1])
a, b = obj['model']['shared.a'], obj['model']['shared.b']
assert a.data_ptr() == b.data_ptr(), 'shared tensors lost their shared storage'
assert type(obj['model']) is collections.OrderedDict and hasattr(obj['model'], '_metadata')
print(json.dumps(d(obj)))
import zipfile
z = zipfile.ZipFile(sys.argv[1])
raw = open(sys.argv[1], 'rb').read()
for i in z.infolist():
    h = i.header_offset
    nlen, xlen = struct.unpack('<HH', raw[h+26:h+30])
    data_at = h + 30 + nlen + xlen
    print(i.filename, i.compress_type, data_at % 64)
`, path)
	lines := strings.SplitN(string(out), "\n", 2)
	require.Len(t, lines, 2, "%s", out)
	var got any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &got), "%s", out)
	want, err := json.Marshal(describe(t, top))
	require.NoError(t, err)
	var wantV any
	require.NoError(t, json.Unmarshal(want, &wantV))
	assert.Equal(t, wantV, got)

	// The archive layout: <stem>/... entries, payloads 64-byte aligned.
	out = []byte(lines[1])
	assert.Contains(t, string(out), "model_optim_rng/data.pkl 0 0\n")
	assert.Contains(t, string(out), "model_optim_rng/byteorder 0 0\n")
	assert.Contains(t, string(out), "model_optim_rng/version 0 0\n")
	assert.Contains(t, string(out), "model_optim_rng/data/0 0 0\n")
	assert.NotContains(t, string(out), " 0 1", "every payload is 64-byte aligned")

	// And we read our own file back identically.
	back, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, describe(t, top), describe(t, back))
}

// TestGoLoadsTorchFiles has torch.save write tensors of every dtype (including
// transposed, sliced, expanded and offset views of shared storages), parameters,
// numpy values and containers, and checks the Go reading against Python's.
func TestGoLoadsTorchFiles(t *testing.T) {
	run := pythonTorch(t)
	path := filepath.Join(t.TempDir(), "saved.pt")
	out := run(`
torch.manual_seed(0)
base = torch.randn(6, 8)
obj = {
    'f32': torch.randn(3, 4), 'f16': torch.randn(3, 4).half(), 'bf16': torch.randn(3, 4).bfloat16(),
    'f64': torch.randn(2, 2).double(), 'i64': torch.arange(-5, 5), 'i32': torch.arange(6, dtype=torch.int32).reshape(2, 3),
    'i16': torch.tensor([-300, 7], dtype=torch.int16), 'i8': torch.tensor([-128, 127], dtype=torch.int8),
    'u8': torch.tensor([0, 255], dtype=torch.uint8), 'bool': torch.tensor([True, False, True]),
    'base': base, 'transposed': base.t(), 'cols': base[:, 2:5], 'row': base[3], 'rows': base[2:4],
    'expanded': torch.arange(3.).expand(2, 3), 'strided3d': torch.randn(2, 3, 4).permute(2, 0, 1),
    'scalar': torch.tensor(3.5), 'empty': torch.zeros(0, 3),
    'param': torch.nn.Parameter(torch.ones(2)),
    'od': collections.OrderedDict([('a', 1), ('b', [1, 2.5, None, 'x', True])]),
    'ns': argparse.Namespace(lr=1e-4, dtype=torch.bfloat16, name='x'),
    'np': np.arange(5, dtype=np.int64), 'np2d': np.ones((2, 3), dtype=np.float32), 'npscalar': np.float64(2.5),
    'big': 2**100, 'negbig': -2**65 - 3, 'neg': -7, 'bytes': b'\x00\xffab', 'tuple': (1, (2, 3)),
    'size': torch.Size([2, 3]), 'dtypekey': {torch.float32: 1}, 3: 'int key',
    'bio': io.BytesIO(b'abc'), 'set': {1, 2, 3}, 'fset': frozenset([4]),
}
torch.save(obj, sys.argv[1])
print(json.dumps(d(torch.load(sys.argv[1]))))
`, path)
	var want any
	require.NoError(t, json.Unmarshal(out, &want), "%s", out)
	v, err := Load(path)
	require.NoError(t, err)
	gb, err := json.Marshal(describe(t, v))
	require.NoError(t, err)
	var got any
	require.NoError(t, json.Unmarshal(gb, &got))
	assert.Equal(t, want, got)

	// Contiguous views share the loaded storage; strided ones were gathered.
	top := v.(*Dict)
	get := func(k string) *tensor.Tensor { x, _ := top.Get(k); return x.(*tensor.Tensor) }
	base, rows := get("base"), get("rows")
	assert.Equal(t, unsafe.Pointer(&base.Data[2*8*4]), unsafe.Pointer(&rows.Data[0]), "base[2:4] is a view of base's storage")

}

// TestGoLoadsLegacyTorchFiles reads torch's pre-1.6 (non-zip) format, which old
// pytorch_model.bin files use, and compares with Python's reading.
func TestGoLoadsLegacyTorchFiles(t *testing.T) {
	run := pythonTorch(t)
	path := filepath.Join(t.TempDir(), "legacy.bin")
	out := run(`
torch.manual_seed(1)
base = torch.randn(4, 5)
obj = collections.OrderedDict([('w', base), ('wt', base.t()), ('rows', base[1:3]), ('b16', torch.randn(3).bfloat16()),
    ('i64', torch.arange(7)), ('bool', torch.tensor([True, False])), ('empty', torch.zeros(0)),
    ('meta', {'step': 3, 'name': 'x', 'lr': 0.5, 'ns': argparse.Namespace(a=1)})])
torch.save(obj, sys.argv[1], _use_new_zipfile_serialization=False)
print(json.dumps(d(torch.load(sys.argv[1]))))
`, path)
	var want any
	require.NoError(t, json.Unmarshal(out, &want), "%s", out)
	v, err := Load(path)
	require.NoError(t, err)
	gb, err := json.Marshal(describe(t, v))
	require.NoError(t, err)
	var got any
	require.NoError(t, json.Unmarshal(gb, &got))
	assert.Equal(t, want, got)

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, n := range []int{20, len(raw) / 2, len(raw) - 1} {
		cut := filepath.Join(t.TempDir(), "cut.bin")
		require.NoError(t, os.WriteFile(cut, raw[:n], 0o644))
		_, err := Load(cut)
		require.Error(t, err, "legacy file cut to %d bytes", n)
		assert.Contains(t, err.Error(), cut)
	}
}
