package torchpickle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// manifest is the part of shared/fixtures/megatron/checkpoints/manifest.json used here.
type manifest struct {
	Checkpoints map[string]struct {
		Files []struct {
			File              string                     `json:"file"`
			TopLevelKeys      []string                   `json:"top_level_keys"`
			CheckpointVersion float64                    `json:"checkpoint_version"`
			Iteration         int64                      `json:"iteration"`
			NumFlops          int64                      `json:"num_floating_point_operations_so_far"`
			Args              map[string]json.RawMessage `json:"args"`
			Storages          map[string]int64           `json:"storages"`
			Tensors           []struct {
				Path          []any     `json:"path"`
				Shape         []int     `json:"shape"`
				DType         string    `json:"dtype"`
				Sum           float64   `json:"sum"`
				SumSq         float64   `json:"sum_sq"`
				SHA256        string    `json:"sha256_contiguous_le_bytes"`
				First8        []float64 `json:"first8"`
				StorageOffset int64     `json:"storage_offset"`
			} `json:"tensors"`
			NonTensorLeaves []struct {
				Path       []any  `json:"path"`
				PythonType string `json:"python_type"`
				Value      any    `json:"value"`
			} `json:"non_tensor_leaves"`
		} `json:"files"`
	} `json:"checkpoints"`
}

// fixtureRoot prefers the shared fixture tree and falls back to the committed copy.
func fixtureRoot(t *testing.T) string {
	shared := filepath.Join("..", "..", "..", "shared", "fixtures", "megatron", "checkpoints")
	if root := os.Getenv("GOMEGATRON_FIXTURES"); root != "" {
		shared = filepath.Join(root, "megatron", "checkpoints")
	}
	if _, err := os.Stat(filepath.Join(shared, "manifest.json")); err == nil {
		return shared
	}
	return filepath.Join("testdata", "checkpoints")
}

// walk follows a manifest path (dict keys and list indices) from the top-level value.
func walk(t *testing.T, v any, path []any) any {
	for _, p := range path {
		switch x := v.(type) {
		case *Dict:
			var ok bool
			v, ok = x.Get(p)
			require.True(t, ok, "key %v of path %v", p, path)
		case []any:
			v = x[int(p.(float64))]
		case Tuple:
			v = x[int(p.(float64))]
		default:
			t.Fatalf("path %v: cannot index %T", path, v)
		}
	}
	return v
}

// TestMegatronFixtures loads every checkpoint of the Megatron fixture set and checks
// it against manifest.json: top-level keys, scalars, every args field, and every
// tensor's dtype, shape, SHA-256 of its C-order bytes, sums and first values.
func TestMegatronFixtures(t *testing.T) {
	root := fixtureRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	require.NoError(t, err)
	var m manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Len(t, m.Checkpoints, 3)
	for name, ck := range m.Checkpoints {
		for _, f := range ck.Files {
			path := filepath.Join(root, f.File)
			for _, mode := range []string{"Load", "Open"} {
				t.Run(name+"/"+filepath.Base(filepath.Dir(path))+"/"+mode, func(t *testing.T) {
					var v any
					if mode == "Load" {
						v, err = Load(path)
						require.NoError(t, err)
					} else {
						fh, err := Open(path)
						require.NoError(t, err)
						defer fh.Close()
						v = fh.Value
					}
					top, ok := v.(*Dict)
					require.True(t, ok, "top level is %T", v)
					assert.False(t, top.Ordered)
					keys, err := top.StringKeys()
					require.NoError(t, err)
					assert.Equal(t, f.TopLevelKeys, keys)
					assert.Equal(t, f.CheckpointVersion, walk(t, v, []any{"checkpoint_version"}))
					assert.Equal(t, f.Iteration, walk(t, v, []any{"iteration"}))
					assert.Equal(t, f.NumFlops, walk(t, v, []any{"num_floating_point_operations_so_far"}))
					checkArgs(t, walk(t, v, []any{"args"}), f.Args)
					for _, tm := range f.Tensors {
						tt, ok := walk(t, v, tm.Path).(*tensor.Tensor)
						require.True(t, ok, "%v is not a tensor", tm.Path)
						assert.Equal(t, tm.DType, tt.DType().String(), "%v", tm.Path)
						assert.True(t, tensor.SameShape(tm.Shape, tt.Shape()), "%v: shape %v, want %v", tm.Path, tt.Shape(), tm.Shape)
						h := sha256.Sum256(tt.Data)
						assert.Equal(t, tm.SHA256, hex.EncodeToString(h[:]), "%v", tm.Path)
						vals := tt.ToF32()
						var sum, sq float64
						for _, x := range vals {
							sum += float64(x)
							sq += float64(x) * float64(x)
						}
						assert.InDelta(t, tm.Sum, sum, 1e-9*math.Max(1, math.Abs(tm.Sum)), "%v sum", tm.Path)
						assert.InDelta(t, tm.SumSq, sq, 1e-9*math.Max(1, tm.SumSq), "%v sum_sq", tm.Path)
						for i, want := range tm.First8 {
							assert.Equal(t, want, float64(vals[i]), "%v[%d]", tm.Path, i)
						}
					}
					for _, leaf := range f.NonTensorLeaves {
						got := walk(t, v, leaf.Path)
						switch leaf.PythonType {
						case "builtins.NoneType":
							assert.Nil(t, got, "%v", leaf.Path)
						case "builtins.tuple":
							assert.IsType(t, Tuple{}, got, "%v", leaf.Path)
						}
					}
					rng := walk(t, v, []any{"rng_state", 0.0, "random_rng_state"}).(Tuple)
					require.Len(t, rng, 3)
					assert.Equal(t, int64(3), rng[0])
					assert.Len(t, rng[1], 625)
					np := walk(t, v, []any{"rng_state", 0.0, "np_rng_state"}).(Tuple)
					assert.Equal(t, "MT19937", np[0])
					arr := np[1].(*NDArray)
					assert.Equal(t, "<u4", arr.DType)
					assert.Equal(t, []int{624}, arr.Shape)
					assert.Len(t, arr.Data, 624*4)
				})
			}
		}
	}
}

// checkArgs compares the Namespace against the manifest's args: plain JSON values
// exactly, dtypes and enums by their Python names.
func checkArgs(t *testing.T, v any, want map[string]json.RawMessage) {
	ns, ok := v.(*Namespace)
	require.True(t, ok, "args is %T", v)
	assert.Equal(t, "argparse.Namespace", ns.Class.String())
	require.Equal(t, len(want), ns.Attrs.Len())
	for k, raw := range want {
		got, ok := ns.Get(k)
		require.True(t, ok, "args.%s missing", k)
		var special struct {
			PickledAs string `json:"pickled_as"`
			Value     string `json:"value"`
		}
		if json.Unmarshal(raw, &special) == nil && special.PickledAs != "" {
			switch g := got.(type) {
			case tensor.DType:
				assert.Equal(t, special.Value, "torch."+g.String(), "args.%s", k)
			case *Enum:
				assert.Equal(t, special.Value, "ModelType."+g.Name, "args.%s", k)
				assert.Equal(t, "megatron.core.enums.ModelType", g.Class.String())
			default:
				t.Errorf("args.%s is %T", k, got)
			}
			continue
		}
		// Round-trip our value through JSON and compare with the manifest's.
		gb, err := json.Marshal(got)
		require.NoError(t, err, "args.%s", k)
		assert.JSONEq(t, string(raw), string(gb), "args.%s", k)
	}
}

// TestFlattenMatchesManifestPaths: Flatten names every tensor of each fixture by its
// manifest path joined with dots, in pickled order.
func TestFlattenMatchesManifestPaths(t *testing.T) {
	root := fixtureRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	require.NoError(t, err)
	var m manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	for _, ck := range m.Checkpoints {
		for _, f := range ck.Files {
			v, err := Load(filepath.Join(root, f.File))
			require.NoError(t, err)
			var want []string
			for _, tm := range f.Tensors {
				s := ""
				for i, p := range tm.Path {
					if i > 0 {
						s += "."
					}
					s += fmt.Sprint(p)
				}
				want = append(want, s)
			}
			var got []string
			for _, nt := range Flatten(v) {
				got = append(got, nt.Name)
			}
			assert.ElementsMatch(t, want, got, f.File)
			model, _ := v.(*Dict).Get("model")
			for _, nt := range Flatten(model) {
				assert.False(t, strings.HasPrefix(nt.Name, "model."), "%s: paths are relative to the value given", nt.Name)
			}
		}
	}
}
