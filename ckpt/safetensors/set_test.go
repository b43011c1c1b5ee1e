package safetensors

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// gpt2Tensors loads the committed GPT-2 fixture in file order.
func gpt2Tensors(t *testing.T) ([]Named, *File) {
	f, err := Open(filepath.Join("testdata", "gpt2", "model.safetensors"))
	require.NoError(t, err)
	var ts []Named
	for _, n := range f.Names() {
		tt, err := f.Tensor(n)
		require.NoError(t, err)
		ts = append(ts, Named{n, tt})
	}
	return ts, f
}

// TestShardedRoundTrip writes the GPT-2 fixture in shards and reads it back through
// OpenDir; the index must be exactly what Python's json.dumps(indent=2,
// sort_keys=True) makes of the same dict.
func TestShardedRoundTrip(t *testing.T) {
	ts, src := gpt2Tensors(t)
	defer src.Close()
	const limit = 150_000
	dir := t.TempDir()
	require.NoError(t, WriteSharded(dir, ts, limit, map[string]string{"format": "pt"}))

	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	require.NoError(t, err)
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	require.NoError(t, json.Unmarshal(raw, &idx))
	var total int64
	for _, nt := range ts {
		total += int64(nt.T.Bytes())
	}
	assert.Equal(t, total, idx.Metadata["total_size"])
	require.Len(t, idx.WeightMap, len(ts))

	// Shards are filled in input order, each within the limit.
	shardFiles, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	assert.Len(t, shardFiles, 4, "501 KB of weights in 150 KB shards")
	prev := ""
	for _, nt := range ts {
		sh := idx.WeightMap[nt.Name]
		assert.GreaterOrEqual(t, sh, prev, "shards follow input order")
		prev = sh
	}
	for _, p := range shardFiles {
		st, err := os.Stat(p)
		require.NoError(t, err)
		f, err := Open(p)
		require.NoError(t, err)
		assert.LessOrEqual(t, st.Size()-f.base, int64(limit), p)
		assert.Equal(t, map[string]string{"format": "pt"}, f.Metadata())
		f.Close()
	}

	s, err := OpenDir(dir)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, total, s.TotalSize())
	assert.Len(t, s.Names(), len(ts))
	for _, nt := range ts {
		got, err := s.Tensor(nt.Name)
		require.NoError(t, err)
		assert.Equal(t, nt.T.Shape(), got.Shape())
		assert.Equal(t, nt.T.Data, got.Data, nt.Name)
	}
	_, err = s.Tensor("nope")
	assert.ErrorContains(t, err, `no tensor "nope"`)

	if exec.Command("/usr/bin/python3", "-c", "import json").Run() == nil {
		py := `import json,sys; d=json.load(open(sys.argv[1])); sys.stdout.write(json.dumps(d, indent=2, sort_keys=True) + "\n")`
		out, err := exec.Command("/usr/bin/python3", "-c", py, filepath.Join(dir, IndexFile)).Output()
		require.NoError(t, err)
		assert.Equal(t, string(out), string(raw), "index bytes differ from Python's json.dumps")
	}
}

// TestIndexEncodingMatchesPython checks the index writer's string escaping against
// Python's json module on awkward names.
func TestIndexEncodingMatchesPython(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import json").Run() != nil {
		t.Skip("skipping: /usr/bin/python3 not available")
	}
	wm := map[string]string{"a\"b\\c": "s1", "tab\there\x01\x7f": "s2", "é名🙂": "s1", "plain.weight": "s2"}
	got := encodeIndex(12345, wm)
	in, err := json.Marshal(map[string]any{"metadata": map[string]int{"total_size": 12345}, "weight_map": wm})
	require.NoError(t, err)
	py := `import json,sys; d=json.loads(sys.stdin.read()); sys.stdout.write(json.dumps(d, indent=2, sort_keys=True) + "\n")`
	cmd := exec.Command("/usr/bin/python3", "-c", py)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, string(out), string(got))
}

// TestShardedSingle: weights that fit one shard give model.safetensors and no index,
// as save_pretrained does.
func TestShardedSingle(t *testing.T) {
	ts, src := gpt2Tensors(t)
	defer src.Close()
	dir := t.TempDir()
	require.NoError(t, WriteSharded(dir, ts, 10<<20, map[string]string{"format": "pt"}))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, SingleFile, entries[0].Name())
	want, err := os.ReadFile(filepath.Join("testdata", "gpt2", "model.safetensors"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, SingleFile))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	s, err := OpenDir(dir)
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, int64(-1), s.TotalSize())
	assert.Len(t, s.Names(), len(ts))
}

// TestOpenDirLayouts covers the fallbacks and the errors of OpenDir.
func TestOpenDirLayouts(t *testing.T) {
	a := tensor.FromF32([]float32{1, 2}, 2)
	b := tensor.FromI64([]int64{3}, 1)

	t.Run("glob of loose files", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, Write(filepath.Join(dir, "x.safetensors"), []Named{{"a", a}}, nil))
		require.NoError(t, Write(filepath.Join(dir, "y.safetensors"), []Named{{"b", b}}, nil))
		s, err := OpenDir(dir)
		require.NoError(t, err)
		defer s.Close()
		assert.Equal(t, []string{"a", "b"}, s.Names())
		got, err := s.Tensor("b")
		require.NoError(t, err)
		assert.Equal(t, []int64{3}, got.I64())
	})
	t.Run("duplicate across loose files", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, Write(filepath.Join(dir, "x.safetensors"), []Named{{"a", a}}, nil))
		require.NoError(t, Write(filepath.Join(dir, "y.safetensors"), []Named{{"a", a}}, nil))
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, `tensor "a" is in both`)
	})
	t.Run("empty dir", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, dir)
		assert.ErrorContains(t, err, IndexFile)
	})
	writeIndex := func(t *testing.T, dir, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, IndexFile), []byte(body), 0o644))
	}
	t.Run("missing shard", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Named{{"a", a}}, nil))
		writeIndex(t, dir, `{"metadata":{"total_size":16},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`)
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, "model-00002-of-00002.safetensors, which is missing")
	})
	t.Run("name absent from its shard", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, Write(filepath.Join(dir, "model-00001-of-00001.safetensors"), []Named{{"a", a}}, nil))
		writeIndex(t, dir, `{"metadata":{},"weight_map":{"a":"model-00001-of-00001.safetensors","ghost":"model-00001-of-00001.safetensors"}}`)
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, `tensor "ghost" to model-00001-of-00001.safetensors, which does not contain it`)
	})
	t.Run("bad index JSON", func(t *testing.T) {
		dir := t.TempDir()
		writeIndex(t, dir, `{"weight_map":`)
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, IndexFile)
	})
	t.Run("shard outside the directory", func(t *testing.T) {
		dir := t.TempDir()
		writeIndex(t, dir, `{"weight_map":{"a":"../x.safetensors"}}`)
		_, err := OpenDir(dir)
		assert.ErrorContains(t, err, "plain file name")
	})
	t.Run("bad maxShardBytes", func(t *testing.T) {
		assert.Error(t, WriteSharded(t.TempDir(), []Named{{"a", a}}, 0, nil))
	})
}
