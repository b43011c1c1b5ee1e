package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// allDTypes is every dtype the writer supports.
var allDTypes = []tensor.DType{tensor.F64, tensor.I64, tensor.F32, tensor.I32, tensor.BF16, tensor.F16,
	tensor.U16, tensor.I16, tensor.F8E4M3, tensor.F8E5M2, tensor.I8, tensor.U8, tensor.Bool}

// patterned returns a host tensor of dt with deterministic, varied bit patterns (every
// byte pattern for 1-byte types, so FP8 NaN/inf/subnormal codes are all exercised).
func patterned(dt tensor.DType, seed int, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	x := uint32(seed*2654435761 + 12345)
	for i := range t.Data {
		x = x*1664525 + 1013904223
		t.Data[i] = byte(x >> 24)
	}
	switch dt {
	case tensor.Bool:
		for i := range t.Data {
			t.Data[i] &= 1
		}
	case tensor.F8E4M3, tensor.F8E5M2, tensor.U8, tensor.I8:
		for i := range t.Data {
			t.Data[i] = byte(i + seed)
		}
	case tensor.F32:
		v := t.F32()
		for i := range v {
			v[i] = float32(math.Sin(float64(i+seed))) * 3
		}
	case tensor.F64:
		v := t.F64()
		for i := range v {
			v[i] = math.Cos(float64(i+seed)) * 1e3
		}
	case tensor.BF16, tensor.F16:
		// Avoid NaN codes, whose payload torch may not keep in tolist().
		u := t.U16()
		for i := range u {
			u[i] &= 0x3fff
		}
	}
	return t
}

// intAt decodes element i of an integer tensor from its little-endian bytes.
func intAt(t *tensor.Tensor, i int) int64 {
	b := t.Data[i*t.DType().Size():]
	switch t.DType() {
	case tensor.I64:
		return int64(binary.LittleEndian.Uint64(b))
	case tensor.I32:
		return int64(int32(binary.LittleEndian.Uint32(b)))
	case tensor.I16:
		return int64(int16(binary.LittleEndian.Uint16(b)))
	case tensor.I8:
		return int64(int8(b[0]))
	}
	return int64(b[0])
}

func digest(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// pyReader is an independent safetensors reader written with json+struct: it checks
// the layout rules (8-byte length, header padded to 8, __metadata__ first, contiguous
// offsets in header order, data ending at EOF) and decodes each tensor with torch
// where torch 1.13 has the dtype.
const pyReader = `
import json, struct, sys, hashlib
import torch
p = sys.argv[1]
b = open(p, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert n % 8 == 0, 'header not padded to 8'
hdr = b[8:8+n].decode('utf-8')
pairs = json.loads(hdr, object_pairs_hook=lambda kv: kv)
keys = [k for k, _ in pairs]
if '__metadata__' in keys:
    assert keys[0] == '__metadata__', 'metadata not first'
data = b[8+n:]
off = 0
out = {'order': [], 'tensors': {}, 'metadata': None}
TORCH = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
         'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
         'U8': torch.uint8, 'BOOL': torch.bool}
for k, v in pairs:
    if k == '__metadata__':
        out['metadata'] = dict(v)
        continue
    v = dict(v)
    s, e = v['data_offsets']
    assert s == off, (k, s, off)
    off = e
    raw = data[s:e]
    ent = {'dtype': v['dtype'], 'shape': v['shape'], 'sha256': hashlib.sha256(raw).hexdigest()}
    dt = TORCH.get(v['dtype'])
    if dt is not None and len(raw) > 0:
        t = torch.frombuffer(bytearray(raw), dtype=dt)
        if dt in (torch.float16, torch.bfloat16):
            t = t.double()
        if dt == torch.bool:
            t = t.to(torch.uint8)
        ent['values'] = t.tolist()
    out['order'].append(k)
    out['tensors'][k] = ent
assert off == len(data), 'data does not end at EOF'
print(json.dumps(out))
`

func havePythonTorch(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v)", err)
	}
}

// TestWriteCrossCheckPython writes one tensor of every dtype and reads the file with
// the independent Python reader: layout, shapes, raw bytes and decoded values agree.
func TestWriteCrossCheckPython(t *testing.T) {
	havePythonTorch(t)
	var ts []Named
	for i, dt := range allDTypes {
		ts = append(ts, Named{fmt.Sprintf("w.%s", dt), patterned(dt, i, 3, 5)})
	}
	ts = append(ts, Named{"scalar", patterned(tensor.F32, 99)}, Named{"empty", tensor.New(tensor.F16, 0, 4)},
		Named{"名前\n\"quoted\"", patterned(tensor.I32, 7, 2)})
	path := filepath.Join(t.TempDir(), "all.safetensors")
	meta := map[string]string{"format": "pt", "z": "ü\t"}
	require.NoError(t, Write(path, ts, meta))

	cmd := exec.Command("/usr/bin/python3", "-c", pyReader, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var got struct {
		Order    []string          `json:"order"`
		Metadata map[string]string `json:"metadata"`
		Tensors  map[string]struct {
			DType  string        `json:"dtype"`
			Shape  []int         `json:"shape"`
			SHA256 string        `json:"sha256"`
			Values []json.Number `json:"values"`
		} `json:"tensors"`
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	require.NoError(t, d.Decode(&got))
	assert.Equal(t, meta, got.Metadata)

	// Order: Rust's dtype rank descending, then name.
	wantOrder := make([]string, len(ts))
	sorted := append([]Named(nil), ts...)
	sort.SliceStable(sorted, func(i, j int) bool {
		ri, rj := alignRank[sorted[i].T.DType()], alignRank[sorted[j].T.DType()]
		if ri != rj {
			return ri > rj
		}
		return sorted[i].Name < sorted[j].Name
	})
	for i, nt := range sorted {
		wantOrder[i] = nt.Name
	}
	assert.Equal(t, wantOrder, got.Order)
	assert.Equal(t, "w.int64", got.Order[0], "I64 ranks first, as in the Rust Dtype enum")

	for _, nt := range ts {
		g, ok := got.Tensors[nt.Name]
		require.True(t, ok, nt.Name)
		assert.Equal(t, nt.T.DType().SafetensorsName(), g.DType, nt.Name)
		assert.True(t, tensor.SameShape(nt.T.Shape(), g.Shape), "%s: shape %v, python read %v", nt.Name, nt.T.Shape(), g.Shape)
		assert.Equal(t, digest(nt.T.Data), g.SHA256, nt.Name)
		if g.Values == nil {
			continue
		}
		require.Len(t, g.Values, nt.T.Numel(), nt.Name)
		for i, v := range g.Values {
			switch nt.T.DType() {
			case tensor.I64, tensor.I32, tensor.I16, tensor.I8, tensor.U8:
				assert.Equal(t, strconv.FormatInt(intAt(nt.T, i), 10), v.String(), "%s[%d]", nt.Name, i)
			case tensor.F64:
				f, err := v.Float64()
				require.NoError(t, err)
				assert.Equal(t, nt.T.F64()[i], f, "%s[%d]", nt.Name, i)
			case tensor.Bool:
				assert.Equal(t, strconv.Itoa(int(nt.T.Data[i])), v.String(), "%s[%d]", nt.Name, i)
			default:
				f, err := v.Float64()
				require.NoError(t, err)
				assert.Equal(t, float64(nt.T.ToF32()[i]), f, "%s[%d]", nt.Name, i)
			}
		}
	}

	// And our reader agrees with what we wrote.
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	for _, nt := range ts {
		tt, err := f.Tensor(nt.Name)
		require.NoError(t, err)
		assert.Equal(t, nt.T.DType(), tt.DType())
		assert.True(t, tensor.SameShape(nt.T.Shape(), tt.Shape()), nt.Name)
		assert.Equal(t, nt.T.Data, tt.Data, nt.Name)
	}
}

// TestFP8RoundTrip writes every FP8 bit pattern (NaN, inf, subnormals included) and
// reads the same bytes and values back.
func TestFP8RoundTrip(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F8E4M3, tensor.F8E5M2} {
		t.Run(dt.String(), func(t *testing.T) {
			src := tensor.New(dt, 16, 16)
			for i := range src.Data {
				src.Data[i] = byte(i)
			}
			path := filepath.Join(t.TempDir(), "fp8.safetensors")
			require.NoError(t, Write(path, []Named{{"x", src}, {"scale", tensor.FromF32([]float32{0.5}, 1)}}, nil))
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Contains(t, string(raw), `"x":{"dtype":"`+dt.SafetensorsName()+`","shape":[16,16]`)
			f, err := Open(path)
			require.NoError(t, err)
			defer f.Close()
			assert.Nil(t, f.Metadata())
			got, err := f.Tensor("x")
			require.NoError(t, err)
			assert.Equal(t, dt, got.DType())
			assert.Equal(t, src.Data, got.Data)
			a, b := src.ToF32(), got.ToF32()
			for i := range a {
				assert.Equal(t, math.Float32bits(a[i]), math.Float32bits(b[i]), "code %#x", i)
			}
		})
	}
}

// TestWriteRejects checks the writer's input validation.
func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	x := tensor.New(tensor.F32, 2)
	dev := tensor.New(tensor.F32, 2)
	dev.Device = tensor.Device{Type: tensor.CUDA}
	for name, c := range map[string]struct {
		ts   []Named
		want string
	}{
		"duplicate": {[]Named{{"a", x}, {"a", x}}, `"a" given twice`},
		"nil":       {[]Named{{"a", nil}}, `"a" is nil`},
		"device":    {[]Named{{"a", dev}}, "cuda:0"},
		"reserved":  {[]Named{{"__metadata__", x}}, "reserved"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".safetensors")
			err := Write(path, c.ts, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), path)
			_, statErr := os.Stat(path)
			assert.True(t, os.IsNotExist(statErr), "no file left behind")
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no temp files left behind")
}
