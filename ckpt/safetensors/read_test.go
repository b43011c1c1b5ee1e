package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// fixtureDirs returns the HF fixture directories: the committed copy in testdata and,
// when the shared fixture tree is present, every directory there.
func fixtureDirs(t *testing.T) []string {
	dirs := []string{filepath.Join("testdata", "gpt2")}
	shared := filepath.Join("..", "..", "..", "shared", "fixtures", "hf")
	if root := os.Getenv("GOMEGATRON_FIXTURES"); root != "" {
		shared = filepath.Join(root, "hf")
	}
	more, _ := filepath.Glob(filepath.Join(shared, "*", "fixture.json"))
	if len(more) == 0 {
		t.Logf("shared fixtures not found under %s; using testdata only", shared)
	}
	for _, m := range more {
		dirs = append(dirs, filepath.Dir(m))
	}
	return dirs
}

// fixtureJSON is the part of fixture.json these tests use.
type fixtureJSON struct {
	Batch      int      `json:"batch"`
	SeqLen     int      `json:"seq_len"`
	Dropped    []string `json:"dropped_tied_keys"`
	Parameters [][2]json.RawMessage
}

func readFixture(t *testing.T, dir string) (fx fixtureJSON, params map[string][]int) {
	raw, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	require.NoError(t, err)
	var top struct {
		Batch      int               `json:"batch"`
		SeqLen     int               `json:"seq_len"`
		Dropped    []string          `json:"dropped_tied_keys"`
		Parameters []json.RawMessage `json:"parameters"`
	}
	require.NoError(t, json.Unmarshal(raw, &top))
	fx.Batch, fx.SeqLen, fx.Dropped = top.Batch, top.SeqLen, top.Dropped
	params = map[string][]int{}
	for _, p := range top.Parameters {
		var pair []json.RawMessage
		require.NoError(t, json.Unmarshal(p, &pair))
		var name string
		var shape []int
		require.NoError(t, json.Unmarshal(pair[0], &name))
		require.NoError(t, json.Unmarshal(pair[1], &shape))
		params[name] = shape
	}
	return fx, params
}

// TestFixtureModels checks every fixture's model.safetensors against the parameter
// list HF's named_parameters() gave (minus the tied keys save_pretrained drops), and
// inputs.safetensors against inputs.json.
func TestFixtureModels(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		t.Run(dir, func(t *testing.T) {
			fx, params := readFixture(t, dir)
			for _, k := range fx.Dropped {
				delete(params, k)
			}
			f, err := Open(filepath.Join(dir, "model.safetensors"))
			require.NoError(t, err)
			defer f.Close()
			assert.Equal(t, map[string]string{"format": "pt"}, f.Metadata())
			require.Len(t, f.Names(), len(params))
			var total int
			for _, name := range f.Names() {
				want, ok := params[name]
				require.True(t, ok, "tensor %s not among the fixture's parameters", name)
				tt, err := f.Tensor(name)
				require.NoError(t, err)
				assert.Equal(t, tensor.F32, tt.DType(), name)
				assert.Equal(t, want, tt.Shape(), name)
				total += tt.Numel()
			}
			// The data section ends exactly at the end of the file.
			st, err := os.Stat(filepath.Join(dir, "model.safetensors"))
			require.NoError(t, err)
			infos := f.Infos()
			assert.Equal(t, st.Size(), f.base+infos[len(infos)-1].End)

			in, err := Open(filepath.Join(dir, "inputs.safetensors"))
			require.NoError(t, err)
			defer in.Close()
			var ij struct {
				InputIDs [][]int64 `json:"input_ids"`
			}
			raw, err := os.ReadFile(filepath.Join(dir, "inputs.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(raw, &ij))
			var flat []int64
			for _, row := range ij.InputIDs {
				flat = append(flat, row...)
			}
			for _, name := range []string{"input_ids", "labels"} {
				tt, err := in.Tensor(name)
				require.NoError(t, err)
				assert.Equal(t, tensor.I64, tt.DType())
				assert.Equal(t, []int{fx.Batch, fx.SeqLen}, tt.Shape())
				assert.Equal(t, flat, tt.I64(), name)
			}

			out, err := Open(filepath.Join(dir, "outputs.safetensors"))
			require.NoError(t, err)
			defer out.Close()
			for name, want := range map[string]struct {
				dt    tensor.DType
				shape []int
			}{
				"loss":       {tensor.F32, []int{}},
				"loss_f64":   {tensor.F64, []int{}},
				"logits_f64": {tensor.F64, []int{fx.Batch, fx.SeqLen, 256}},
				"logits":     {tensor.F32, []int{fx.Batch, fx.SeqLen, 256}},
			} {
				in, ok := out.Info(name)
				require.True(t, ok, name)
				assert.Equal(t, want.dt, in.DType, name)
				assert.Equal(t, want.shape, in.Shape, name)
			}
			for name := range params {
				in, ok := out.Info("grad." + name)
				require.True(t, ok, "grad.%s", name)
				assert.Equal(t, params[name], in.Shape)
			}
		})
	}
}

// TestByteIdenticalRoundTrip reads every fixture file and writes its tensors back:
// the bytes must equal the original exactly (layout, header text, padding).
func TestByteIdenticalRoundTrip(t *testing.T) {
	for _, dir := range fixtureDirs(t) {
		for _, file := range []string{"model.safetensors", "inputs.safetensors", "outputs.safetensors"} {
			path := filepath.Join(dir, file)
			t.Run(path, func(t *testing.T) {
				f, err := Open(path)
				require.NoError(t, err)
				defer f.Close()
				var ts []Named
				// Shuffle the input order: the writer must impose the layout itself.
				names := f.Names()
				for i := len(names) - 1; i >= 0; i-- {
					tt, err := f.Tensor(names[i])
					require.NoError(t, err)
					ts = append(ts, Named{names[i], tt})
				}
				out := filepath.Join(t.TempDir(), "rt.safetensors")
				require.NoError(t, Write(out, ts, f.Metadata()))
				want, err := os.ReadFile(path)
				require.NoError(t, err)
				got, err := os.ReadFile(out)
				require.NoError(t, err)
				require.Equal(t, len(want), len(got))
				require.True(t, bytes.Equal(want, got), "round trip of %s differs", path)
			})
		}
	}
}

// stFile builds a safetensors file from a raw header string and data.
func stFile(hdr string, data []byte) []byte {
	var b bytes.Buffer
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	b.Write(n[:])
	b.WriteString(hdr)
	b.Write(data)
	return b.Bytes()
}

// TestMalformed feeds broken files to Open; each must fail with an error that names
// the file and the problem (and the tensor, when one is at fault).
func TestMalformed(t *testing.T) {
	good := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<40)
	past := make([]byte, 8)
	binary.LittleEndian.PutUint64(past, 1000)
	cases := []struct {
		name string
		file []byte
		want []string
	}{
		{"empty file", nil, []string{"too short"}},
		{"truncated length", []byte{1, 2, 3}, []string{"too short"}},
		{"header length beyond EOF", append(past, []byte(good)...), []string{"header length 1000 runs past the end"}},
		{"header length too large", append(huge, []byte(good)...), []string{"exceeds"}},
		{"truncated header", stFile(good, make([]byte, 8))[:20], []string{"runs past the end"}},
		{"bad JSON", stFile(`{"a":{"dtype":"F32",`, nil), []string{"not a JSON object"}},
		{"JSON array", stFile(`[1,2]`, nil), []string{"not a JSON object"}},
		{"trailing garbage", stFile(good+"xx", make([]byte, 8)), []string{"trailing bytes"}},
		{"offsets out of range", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)),
			[]string{`tensor "a"`, "out of range"}},
		{"offsets reversed", stFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "out of range"}},
		{"overlapping", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)),
			[]string{`"a"`, `"b"`, "overlap"}},
		{"wrong size for shape", stFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "needs 12"}},
		{"unknown dtype", stFile(`{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, `unknown dtype "F17"`}},
		{"torch dtype name", stFile(`{"a":{"dtype":"float32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "unknown dtype"}},
		{"unsupported U32", stFile(`{"a":{"dtype":"U32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "U32", "not supported"}},
		{"negative dim", stFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "negative"}},
		{"overflowing shape", stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "overflows"}},
		{"missing dtype", stFile(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "missing dtype"}},
		{"unknown field", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, make([]byte, 8)),
			[]string{`tensor "a"`, "unknown field"}},
		{"bad metadata", stFile(`{"__metadata__":{"format":1}}`, nil), []string{"__metadata__"}},
		{"invalid UTF-8", stFile("{\"\xff\":1}", nil), []string{"UTF-8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			require.NoError(t, os.WriteFile(path, c.file, 0o644))
			f, err := Open(path)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.Contains(t, err.Error(), path)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	_, err := Open(filepath.Join(t.TempDir(), "absent.safetensors"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "absent.safetensors")
}

// TestUnalignedTensorIsCopied: a hand-made file with an F32 tensor at an odd offset
// still yields correct values (a copy rather than a misaligned view).
func TestUnalignedTensorIsCopied(t *testing.T) {
	data := []byte{7, 0, 0, 128, 63, 0, 0, 0, 64} // u8 7, then f32 1.0 and 2.0
	hdr := `{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}`
	path := filepath.Join(t.TempDir(), "odd.safetensors")
	require.NoError(t, os.WriteFile(path, stFile(hdr, data), 0o644))
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []string{"b", "a"}, f.Names())
	a, err := f.Tensor("a")
	require.NoError(t, err)
	assert.Equal(t, []float32{1, 2}, a.F32())
	_, err = f.Tensor("zzz")
	assert.ErrorContains(t, err, `no tensor "zzz"`)
	require.NoError(t, f.Close())
	_, err = f.Tensor("a")
	assert.ErrorContains(t, err, "after Close")
}
