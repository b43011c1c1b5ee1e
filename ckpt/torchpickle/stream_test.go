package torchpickle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// lazyOf returns a LazyTensor producing t's bytes in chunks of chunk bytes, counting
// its Fill calls in calls[name].
func lazyOf(name string, t *tensor.Tensor, chunk int, calls map[string]int, order *[]string) *LazyTensor {
	return &LazyTensor{Name: name, DType: t.DType(), Shape: t.Shape(), Fill: func(w io.Writer) error {
		calls[name]++
		*order = append(*order, name)
		for b := t.Data; len(b) > 0; {
			n := min(chunk, len(b))
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}}
}

// streamCase builds the same checkpoint-like value twice: with materialised tensors
// (for Save) and with some or all of them lazy (for SaveStream).
func streamCase(allLazy bool, calls map[string]int, order *[]string) (eager, lazy *Dict, lazyNames []string) {
	eager, lazy = NewDict(false), NewDict(false)
	em, lm := NewDict(true), NewDict(true)
	// 13 tensors so storage keys 10, 11, 12 sort between 1 and 2 (torch's order).
	for i, dt := range torch13DTypes {
		t := patterned(dt, i, 3, 5)
		name := "w." + dt.String()
		em.Set(name, t)
		if allLazy || i%2 == 0 {
			lm.Set(name, lazyOf(name, t, 7, calls, order))
			lazyNames = append(lazyNames, name)
		} else {
			lm.Set(name, t)
		}
	}
	big := patterned(tensor.BF16, 50, 300, 7) // spans several fill chunks
	em.Set("big", big)
	lm.Set("big", lazyOf("big", big, 1000, calls, order))
	empty := tensor.New(tensor.F16, 0, 4)
	em.Set("empty", empty)
	lm.Set("empty", lazyOf("empty", empty, 8, calls, order))
	scalar := tensor.FromF32([]float32{2.5})
	em.Set("scalar", scalar)
	lm.Set("scalar", lazyOf("scalar", scalar, 8, calls, order))
	shared := patterned(tensor.F32, 99, 6)
	sharedLazy := lazyOf("shared", shared, 5, calls, order)
	em.Set("shared.a", shared)
	em.Set("shared.b", shared)
	lm.Set("shared.a", sharedLazy)
	lm.Set("shared.b", sharedLazy)
	lazyNames = append(lazyNames, "big", "empty", "scalar", "shared")
	for _, d := range []*Dict{eager, lazy} {
		d.Set("iteration", int64(7))
		d.Set("checkpoint_version", 3.0)
	}
	eager.Set("model", em)
	lazy.Set("model", lm)
	return eager, lazy, lazyNames
}

// TestSaveStreamMatchesSave: a file written with lazy tensors is byte-identical to Save's
// with the materialised tensors, each Fill runs once, in storage-key order, and Load
// reads it back (CRCs checked) with the same values.
func TestSaveStreamMatchesSave(t *testing.T) {
	for _, allLazy := range []bool{true, false} {
		t.Run(fmt.Sprintf("allLazy=%v", allLazy), func(t *testing.T) {
			calls := map[string]int{}
			var order []string
			eager, lazy, names := streamCase(allLazy, calls, &order)
			dir := t.TempDir()
			want := filepath.Join(dir, "a", "model_optim_rng.pt")
			got := filepath.Join(dir, "b", "model_optim_rng.pt")
			require.NoError(t, os.MkdirAll(filepath.Dir(want), 0o755))
			require.NoError(t, os.MkdirAll(filepath.Dir(got), 0o755))
			require.NoError(t, Save(want, eager))
			require.NoError(t, SaveStream(got, lazy))

			wb, err := os.ReadFile(want)
			require.NoError(t, err)
			gb, err := os.ReadFile(got)
			require.NoError(t, err)
			require.Equal(t, len(wb), len(gb))
			assert.True(t, bytes.Equal(wb, gb), "streamed file differs from Save's")

			for _, n := range names {
				assert.Equal(t, 1, calls[n], "Fill calls of %s", n)
			}
			// Fills run in the archive's entry order: storage keys (numbered in pickling
			// order, one per distinct tensor) sorted as strings.
			keys := map[string]string{}
			storage := 0
			m, _ := lazy.Get("model")
			for _, v := range m.(*Dict).Values {
				switch x := v.(type) {
				case *LazyTensor:
					if _, seen := keys[x.Name]; !seen {
						keys[x.Name] = strconv.Itoa(storage)
						storage++
					}
				case *tensor.Tensor:
					storage++
				}
			}
			wantOrder := append([]string(nil), names...)
			sort.Slice(wantOrder, func(i, j int) bool { return keys[wantOrder[i]] < keys[wantOrder[j]] })
			assert.Equal(t, wantOrder, order)

			back, err := Load(got)
			require.NoError(t, err)
			assert.Equal(t, describe(t, eager), describe(t, back))
		})
	}
}

// TestTorchLoadsStreamedFile: torch.load (torch 1.13) reads a SaveStream file with the
// same values, and Python's zipfile finds every CRC correct.
func TestTorchLoadsStreamedFile(t *testing.T) {
	run := pythonTorch(t)
	calls := map[string]int{}
	var order []string
	eager, lazy, _ := streamCase(true, calls, &order)
	path := filepath.Join(t.TempDir(), "model_optim_rng.pt")
	require.NoError(t, SaveStream(path, lazy))
	out := run(`
import zipfile
assert zipfile.ZipFile(sys.argv[1]).testzip() is None, 'bad CRC'
obj = torch.load(sys.argv[1])
m = obj['model']
assert m['shared.a'].data_ptr() == m['shared.b'].data_ptr(), 'shared tensors lost their shared storage'
print(json.dumps(d(obj)))
`, path)
	var got any
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	want, err := json.Marshal(describe(t, eager))
	require.NoError(t, err)
	var wantV any
	require.NoError(t, json.Unmarshal(want, &wantV))
	assert.Equal(t, wantV, got)
}

// TestSaveStreamErrors: a Fill that writes too few or too many bytes, or fails, gives an
// error naming the tensor, and neither the file nor a temporary file is left (an existing
// file keeps its content); bad lazy tensors are refused before anything is written.
func TestSaveStreamErrors(t *testing.T) {
	fill := func(n int, err error) func(io.Writer) error {
		return func(w io.Writer) error {
			if _, werr := w.Write(make([]byte, n)); werr != nil {
				return werr
			}
			return err
		}
	}
	cases := []struct {
		name string
		lazy *LazyTensor
		want []string
	}{
		{"too few", &LazyTensor{Name: "decoder.layers.0.mlp.linear_fc1.weight", DType: tensor.BF16, Shape: []int{4, 3}, Fill: fill(23, nil)},
			[]string{"decoder.layers.0.mlp.linear_fc1.weight", "wrote 23 bytes", "needs 24"}},
		{"too many", &LazyTensor{Name: "embedding.word_embeddings.weight", DType: tensor.F32, Shape: []int{2, 2}, Fill: fill(17, nil)},
			[]string{"embedding.word_embeddings.weight", "more than 16 bytes"}},
		{"fill fails", &LazyTensor{Name: "output_layer.weight", DType: tensor.F16, Shape: []int{2}, Fill: fill(2, errors.New("source shard missing"))},
			[]string{"output_layer.weight", "source shard missing"}},
		{"unnamed", &LazyTensor{DType: tensor.F16, Shape: []int{2}, Fill: fill(0, nil)},
			[]string{"tensor x/data/1", "wrote 0 bytes"}},
		{"no fill", &LazyTensor{Name: "final_layernorm.weight", DType: tensor.F16, Shape: []int{2}},
			[]string{"final_layernorm.weight", "no Fill"}},
		{"negative dim", &LazyTensor{Name: "bad.shape", DType: tensor.F16, Shape: []int{-1}, Fill: fill(0, nil)},
			[]string{"bad.shape", "negative dimension"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.pt")
			d := NewDict(true)
			d.Set("ok", patterned(tensor.F32, 1, 3)) // storage 0, written before the bad one
			d.Set("bad", c.lazy)
			err := SaveStream(path, d)
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, err.Error(), path)
			ents, rerr := os.ReadDir(dir)
			require.NoError(t, rerr)
			assert.Empty(t, ents, "files left after a failed write")

			// An existing file is untouched by a failed write.
			require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
			require.Error(t, SaveStream(path, d))
			b, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			assert.Equal(t, "old", string(b))
			ents, rerr = os.ReadDir(dir)
			require.NoError(t, rerr)
			assert.Len(t, ents, 1)
		})
	}
}

// TestEncodeRefusesLazy: Encode (any io.Writer) cannot patch CRCs, so it refuses lazy
// tensors by name instead of writing a file torch would reject.
func TestEncodeRefusesLazy(t *testing.T) {
	d := NewDict(true)
	d.Set("w", &LazyTensor{Name: "w", DType: tensor.F32, Shape: []int{1}, Fill: func(w io.Writer) error { return nil }})
	var b bytes.Buffer
	err := Encode(&b, "x", d)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tensor w")
	assert.Contains(t, err.Error(), "SaveStream")
	assert.Zero(t, b.Len())
	err = Save(filepath.Join(t.TempDir(), "x.pt"), d)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SaveStream")
}
