package torchpickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/gomegatron/gomegatron/tensor"
)

// outStorage is one storage written to <archive>/data/<key>.
type outStorage struct {
	key   string
	dt    tensor.DType
	data  []byte
	numel int64
	lazy  *LazyTensor // when set, the bytes come from lazy.Fill at write time (data is nil)
}

// storageID identifies tensors that share exactly the same bytes.
type storageID struct {
	ptr uintptr
	n   int
	dt  tensor.DType
}

// pickler writes pickle protocol 2 the way Python's pickle and torch.save do.
type pickler struct {
	b        bytes.Buffer
	memo     map[any]int // pointer or global name → memo slot
	storages []*outStorage
	byID     map[storageID]*outStorage
}

func newPickler() *pickler {
	return &pickler{memo: map[any]int{}, byID: map[storageID]*outStorage{}}
}

func (p *pickler) op(b ...byte) { p.b.Write(b) }

// put memoizes the object just written under key.
func (p *pickler) put(key any) {
	i := len(p.memo)
	p.memo[key] = i
	if i < 256 {
		p.op(opBinPut, byte(i))
		return
	}
	p.op(opLongBinPut)
	binary.Write(&p.b, binary.LittleEndian, uint32(i))
}

// get writes a reference to a memoized object; false if key was never written.
func (p *pickler) get(key any) bool {
	i, ok := p.memo[key]
	if !ok {
		return false
	}
	if i < 256 {
		p.op(opBinGet, byte(i))
	} else {
		p.op(opLongBinGet)
		binary.Write(&p.b, binary.LittleEndian, uint32(i))
	}
	return true
}

func (p *pickler) global(mod, name string) {
	key := "global:" + mod + "\n" + name
	if p.get(key) {
		return
	}
	p.op(opGlobal)
	p.b.WriteString(mod + "\n" + name + "\n")
	p.put(key)
}

func (p *pickler) str(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("string %q is not valid UTF-8", s)
	}
	p.op(opBinUnicode)
	binary.Write(&p.b, binary.LittleEndian, uint32(len(s)))
	p.b.WriteString(s)
	return nil
}

// int writes an integer with the smallest opcode, as Python's save_long does.
func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v <= 0xff:
		p.op(opBinInt1, byte(v))
	case v >= 0 && v <= 0xffff:
		p.op(opBinInt2, byte(v), byte(v>>8))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.op(opBinInt)
		binary.Write(&p.b, binary.LittleEndian, int32(v))
	default:
		p.bigInt(big.NewInt(v))
	}
}

// bigInt writes LONG1/LONG4 with Python's encode_long: minimal little-endian two's
// complement.
func (p *pickler) bigInt(v *big.Int) {
	if v.IsInt64() && v.Int64() >= math.MinInt32 && v.Int64() <= math.MaxInt32 {
		p.int(v.Int64())
		return
	}
	n := v.BitLen()/8 + 1
	mod := new(big.Int).Lsh(big.NewInt(1), uint(8*n))
	u := new(big.Int).Set(v)
	if v.Sign() < 0 {
		u.Add(u, mod)
	}
	be := u.FillBytes(make([]byte, n))
	le := make([]byte, n)
	for i := range be {
		le[n-1-i] = be[i]
	}
	if v.Sign() < 0 && n > 1 && le[n-1] == 0xff && le[n-2]&0x80 != 0 {
		le = le[:n-1]
	}
	if len(le) < 256 {
		p.op(opLong1, byte(len(le)))
	} else {
		p.op(opLong4)
		binary.Write(&p.b, binary.LittleEndian, uint32(len(le)))
	}
	p.b.Write(le)
}

// bytesVal writes bytes as protocol 2 does: _codecs.encode(latin-1 text, 'latin1').
func (p *pickler) bytesVal(b []byte) {
	p.global("_codecs", "encode")
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	p.str(string(r))
	p.str("latin1")
	p.op(opTuple2, opReduce)
}

func (p *pickler) tuple(items []any) error {
	switch len(items) {
	case 0:
		p.op(opEmptyTuple)
		return nil
	case 1, 2, 3:
		for _, it := range items {
			if err := p.save(it); err != nil {
				return err
			}
		}
		p.op(opTuple1 + byte(len(items)-1))
		return nil
	}
	p.op(opMark)
	for _, it := range items {
		if err := p.save(it); err != nil {
			return err
		}
	}
	p.op(opTuple)
	return nil
}

// batchSize is Python's pickler batch for APPENDS/SETITEMS.
const batchSize = 1000

func (p *pickler) listItems(items []any) error {
	for i := 0; i < len(items); i += batchSize {
		chunk := items[i:min(i+batchSize, len(items))]
		if len(chunk) == 1 {
			if err := p.save(chunk[0]); err != nil {
				return err
			}
			p.op(opAppend)
			continue
		}
		p.op(opMark)
		for _, it := range chunk {
			if err := p.save(it); err != nil {
				return err
			}
		}
		p.op(opAppends)
	}
	return nil
}

func (p *pickler) dictItems(d *Dict) error {
	for i := 0; i < len(d.Keys); i += batchSize {
		end := min(i+batchSize, len(d.Keys))
		if end-i > 1 {
			p.op(opMark)
		}
		for j := i; j < end; j++ {
			if err := p.save(d.Keys[j]); err != nil {
				return err
			}
			if err := p.save(d.Values[j]); err != nil {
				return fmt.Errorf("%v: %w", d.Keys[j], err)
			}
		}
		if end-i > 1 {
			p.op(opSetItems)
		} else {
			p.op(opSetItem)
		}
	}
	return nil
}

func (p *pickler) dict(d *Dict) error {
	if p.get(d) {
		return nil
	}
	if d.Ordered {
		p.global("collections", "OrderedDict")
		p.op(opEmptyTuple, opReduce)
	} else {
		p.op(opEmptyDict)
	}
	p.put(d)
	if err := p.dictItems(d); err != nil {
		return err
	}
	if d.Attrs != nil {
		if err := p.dict(d.Attrs); err != nil {
			return err
		}
		p.op(opBuild)
	}
	return nil
}

// save writes any supported Go value (see the package comment for the mapping).
func (p *pickler) save(v any) error {
	switch x := v.(type) {
	case nil:
		p.op(opNone)
	case bool:
		if x {
			p.op(opNewTrue)
		} else {
			p.op(opNewFalse)
		}
	case int:
		p.int(int64(x))
	case int8:
		p.int(int64(x))
	case int16:
		p.int(int64(x))
	case int32:
		p.int(int64(x))
	case int64:
		p.int(x)
	case uint8:
		p.int(int64(x))
	case uint16:
		p.int(int64(x))
	case uint32:
		p.int(int64(x))
	case uint64:
		p.bigInt(new(big.Int).SetUint64(x))
	case *big.Int:
		p.bigInt(x)
	case float32:
		return p.save(float64(x))
	case float64:
		p.op(opBinFloat)
		binary.Write(&p.b, binary.BigEndian, math.Float64bits(x))
	case string:
		return p.str(x)
	case []byte:
		p.bytesVal(x)
	case []any:
		p.op(opEmptyList)
		return p.listItems(x)
	case []string:
		return p.save(toAny(x))
	case []int:
		return p.save(toAny(x))
	case []int64:
		return p.save(toAny(x))
	case []float64:
		return p.save(toAny(x))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := NewDict(false)
		for _, k := range keys {
			d.Set(k, x[k])
		}
		return p.dict(d)
	case Tuple:
		return p.tuple(x)
	case Set:
		p.global("__builtin__", "set")
		if err := p.save([]any(x)); err != nil {
			return err
		}
		p.op(opTuple1, opReduce)
	case *Dict:
		return p.dict(x)
	case *Namespace:
		return p.namespace(x)
	case *tensor.Tensor:
		return p.tensor(x)
	case *LazyTensor:
		return p.lazyTensor(x)
	case tensor.DType:
		if _, ok := torchDTypes[x.String()]; !ok {
			return fmt.Errorf("dtype %v has no torch equivalent", x)
		}
		p.global("torch", x.String())
	case Global:
		p.global(x.Module, x.Name)
	case *Enum:
		p.global("__builtin__", "getattr")
		p.global(x.Class.Module, x.Class.Name)
		p.str(x.Name)
		p.op(opTuple2, opReduce)
	case *Object:
		return p.object(x)
	case *NDArray:
		return p.ndarray(x)
	case *BytesIO:
		p.global("_io", "BytesIO")
		p.op(opEmptyTuple, opNewObj)
		p.bytesVal(x.Data)
		p.int(x.Pos)
		p.op(opNone, opTuple3, opBuild)
	default:
		return fmt.Errorf("cannot pickle a Go %T", v)
	}
	return nil
}

func toAny[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (p *pickler) namespace(n *Namespace) error {
	if p.get(n) {
		return nil
	}
	cls := n.Class
	if cls == (Global{}) {
		cls = Global{"argparse", "Namespace"}
	}
	p.global(cls.Module, cls.Name)
	if cls.String() == "types.SimpleNamespace" {
		p.op(opEmptyTuple, opReduce)
	} else {
		p.op(opEmptyTuple, opNewObj)
	}
	p.put(n)
	attrs := n.Attrs
	if attrs == nil {
		attrs = NewDict(false)
	}
	p.op(opEmptyDict)
	if err := p.dictItems(attrs); err != nil {
		return err
	}
	p.op(opBuild)
	return nil
}

func (p *pickler) object(o *Object) error {
	if p.get(o) {
		return nil
	}
	p.global(o.Class.Module, o.Class.Name)
	if err := p.tuple(o.Args); err != nil {
		return err
	}
	if o.NewObj {
		p.op(opNewObj)
	} else {
		p.op(opReduce)
	}
	p.put(o)
	if o.State != nil {
		if err := p.save(o.State); err != nil {
			return err
		}
		p.op(opBuild)
	}
	return nil
}

// numpyDType writes numpy.dtype(kind, False, True) with its __setstate__ tuple.
func (p *pickler) numpyDType(s string) error {
	if len(s) < 2 || (s[0] != '<' && s[0] != '>' && s[0] != '|' && s[0] != '=') {
		return fmt.Errorf("numpy dtype %q needs a byte-order prefix (<, >, |, =)", s)
	}
	p.global("numpy", "dtype")
	p.str(s[1:])
	p.op(opNewFalse, opNewTrue, opTuple3, opReduce)
	p.op(opMark)
	p.int(3)
	p.str(s[:1])
	p.op(opNone, opNone, opNone)
	p.int(-1)
	p.int(-1)
	p.int(0)
	p.op(opTuple, opBuild)
	return nil
}

func (p *pickler) ndarray(a *NDArray) error {
	if a.Scalar {
		p.global("numpy.core.multiarray", "scalar")
		if err := p.numpyDType(a.DType); err != nil {
			return err
		}
		p.bytesVal(a.Data)
		p.op(opTuple2, opReduce)
		return nil
	}
	p.global("numpy.core.multiarray", "_reconstruct")
	p.global("numpy", "ndarray")
	p.int(0)
	p.op(opTuple1)
	p.bytesVal([]byte("b"))
	p.op(opTuple3, opReduce)
	p.op(opMark)
	p.int(1)
	shape := make([]any, len(a.Shape))
	for i, s := range a.Shape {
		shape[i] = int64(s)
	}
	if err := p.tuple(shape); err != nil {
		return err
	}
	if err := p.numpyDType(a.DType); err != nil {
		return err
	}
	p.save(a.Fortran)
	p.bytesVal(a.Data)
	p.op(opTuple, opBuild)
	return nil
}

// tensor writes _rebuild_tensor_v2((persistent storage id), 0, size, stride, False,
// OrderedDict()). Tensors with identical storage (same bytes, same dtype) share one
// storage entry, as views of one torch storage do.
func (p *pickler) tensor(t *tensor.Tensor) error {
	if t.Device.Type != tensor.CPU {
		return fmt.Errorf("tensor %v is on %v; copy it to the host first", t, t.Device)
	}
	cls, ok := storageClass(t.DType())
	if !ok {
		return fmt.Errorf("tensor %v: dtype %v has no torch storage class", t, t.DType())
	}
	if len(t.Data) != t.Bytes() {
		return fmt.Errorf("tensor %v has %d bytes of storage, want %d", t, len(t.Data), t.Bytes())
	}
	if p.get(t) {
		return nil
	}
	var st *outStorage
	var id storageID
	if len(t.Data) > 0 {
		id = storageID{uintptr(unsafe.Pointer(&t.Data[0])), len(t.Data), t.DType()}
		st = p.byID[id]
	}
	if st == nil {
		st = &outStorage{key: strconv.Itoa(len(p.storages)), dt: t.DType(), data: t.Data, numel: int64(t.Numel())}
		p.storages = append(p.storages, st)
		if len(t.Data) > 0 {
			p.byID[id] = st
		}
	}
	p.rebuildTensor(cls, st, t.Shape())
	p.put(t)
	return nil
}

// rebuildTensor writes the _rebuild_tensor_v2 call of a contiguous tensor of shape over
// storage st (torch class cls), without memoizing it.
func (p *pickler) rebuildTensor(cls string, st *outStorage, shape []int) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op(opMark)
	p.op(opMark)
	p.str("storage")
	p.global("torch", cls)
	p.str(st.key)
	p.str("cpu")
	p.int(st.numel)
	p.op(opTuple, opBinPersID)
	p.int(0)
	size := make([]any, len(shape))
	stride := make([]any, len(shape))
	s := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		size[i] = int64(shape[i])
		stride[i] = s
		s *= int64(shape[i])
	}
	p.tuple(size)
	p.tuple(stride)
	p.op(opNewFalse)
	p.global("collections", "OrderedDict")
	p.op(opEmptyTuple, opReduce)
	p.op(opTuple, opReduce)
}
